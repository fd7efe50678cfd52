"""Every edit that can change a route, a key's validity or what a key may do (model access, budgets, rate
limits, group membership) bumps the config token, after the commit."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from routing.models import (
    ConfigState,
    GroupPolicy,
    KeyPolicy,
    ModelAlias,
    PathPrefix,
    ProxyKey,
    Upstream,
    UserPolicy,
)


def _bump(update_fields: frozenset[str] | None = None, **_: Any) -> None:
    # A login only stamps last_login: nothing a route or key check reads.
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    transaction.on_commit(ConfigState.bump)


def _membership_changed(action: str, **_: Any) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        transaction.on_commit(ConfigState.bump)


for _model in (Upstream, ModelAlias, PathPrefix, ProxyKey, get_user_model(), Group, KeyPolicy, UserPolicy, GroupPolicy):
    post_save.connect(_bump, sender=_model, dispatch_uid=f"config-bump-save-{_model.__name__}")
    post_delete.connect(_bump, sender=_model, dispatch_uid=f"config-bump-delete-{_model.__name__}")
m2m_changed.connect(
    _membership_changed, sender=get_user_model().groups.through, dispatch_uid="config-bump-group-membership"
)
