"""Every edit that can change a route or a key's validity bumps the config token, after the commit."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from routing.models import ConfigState, ModelAlias, ProxyKey, Upstream


def _bump(update_fields: frozenset[str] | None = None, **_: Any) -> None:
    # A login only stamps last_login: nothing a route or key check reads.
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    transaction.on_commit(ConfigState.bump)


for _model in (Upstream, ModelAlias, ProxyKey, get_user_model()):
    post_save.connect(_bump, sender=_model, dispatch_uid=f"config-bump-save-{_model.__name__}")
    post_delete.connect(_bump, sender=_model, dispatch_uid=f"config-bump-delete-{_model.__name__}")
