"""The audit log: who changed which configuration or access object, when, and from what to what.

A model joins with one call, made while the apps load (routing.apps imports this module; another app calls it
from its own `AppConfig.ready`):

    audit.track(Budget, secret_fields=("webhook_token",), masked_mapping_fields=("headers",))

Every save and delete of a tracked model (and every change to its listed many-to-many fields) then writes one
`AuditEntry` in the same transaction as the change, so a change without its entry cannot be committed.
`changes` is {field: [before, after]}; a secret field's value is one word instead — "set", "changed" or
"cleared" — and a secret-looking key inside a masked mapping (a header named Authorization, x-api-key…) has its
value replaced by "***". Changes made with `QuerySet.update()` send no signals and are not recorded; the
project saves instances for config edits anyway (routing.signals needs that too).

The actor comes from a context variable: `audit_actor_middleware` sets it for every Django request (admin,
dashboards, /me/), `BaseCommand.execute` sets it for every management command (`command:importconfig`), and
anything else is `system`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from routing.models import (
    AuditEntry,
    GroupPolicy,
    KeyPolicy,
    ModelAlias,
    PathPrefix,
    ProxyKey,
    Upstream,
    UserPolicy,
)
from translation.redaction import SECRET_NAME  # names of headers and parameters that hold credentials

MASK = "***"
# Commands that serve requests rather than change anything: their requests carry their own actors.
UNATTRIBUTED_COMMANDS = frozenset({"runserver"})


# --- actors -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    name: str
    user_id: int | None = None
    via: str = ""


SYSTEM = Actor("system")

# An Actor, or a callable making one (a request's user is looked up only when something is recorded).
_actor: ContextVar[Actor | Callable[[], Actor] | None] = ContextVar("audit_actor", default=None)


def current_actor() -> Actor:
    value = _actor.get()
    if value is None:
        return SYSTEM
    return value if isinstance(value, Actor) else value()


@contextmanager
def acting_as(actor: Actor | Callable[[], Actor]) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _request_actor(request: HttpRequest) -> Actor:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Actor("anonymous", via=request.path[:200])
    return Actor(user.get_username(), user.pk, via=request.path[:200])


@sync_and_async_middleware
def audit_actor_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Django requests act as their logged-in user. Both sync and async, so it adds no thread hop."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            with acting_as(functools.partial(_request_actor, request)):
                response: HttpResponseBase = await get_response(request)
                return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        with acting_as(functools.partial(_request_actor, request)):
            response: HttpResponseBase = get_response(request)
            return response

    return middleware


def _attribute_commands() -> None:
    """Management commands act as `command:NAME` (importconfig, createkey, rotatesecrets, createsuperuser,
    shell…), whether run by manage.py or call_command. Django has no hook that runs around every command, so
    `BaseCommand.execute` is wrapped once; a command run by another keeps the outer one's name."""
    original = BaseCommand.execute
    if getattr(original, "audit_wrapped", False):
        return

    @functools.wraps(original)
    def execute(self: BaseCommand, *args: Any, **options: Any) -> Any:
        name = type(self).__module__.rpartition(".")[2]
        outer = _actor.get()
        if name in UNATTRIBUTED_COMMANDS or (isinstance(outer, Actor) and outer.name.startswith("command:")):
            return original(self, *args, **options)
        with acting_as(Actor(f"command:{name}", via=f"manage.py {name}")):
            return original(self, *args, **options)

    execute.audit_wrapped = True  # type: ignore[attr-defined]
    BaseCommand.execute = execute  # type: ignore[method-assign]


# --- what is tracked --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracking:
    label: str
    fields: tuple[models.Field[Any, Any], ...]
    secret_fields: frozenset[str]
    masked_mapping_fields: frozenset[str]


_tracked: dict[type[models.Model], Tracking] = {}
# Set on an instance between pre_save and post_save (its row as it was), and between m2m pre_ and post_.
_BEFORE = "_audit_before"
_M2M_BEFORE = "_audit_m2m_before"


def track(
    model: type[models.Model],
    *,
    secret_fields: Iterable[str] = (),
    masked_mapping_fields: Iterable[str] = (),
    ignore_fields: Iterable[str] = (),
    m2m_fields: Iterable[str] = (),
) -> None:
    """Record every create, update and delete of `model` in the audit log.

    `secret_fields`: never shown, recorded as "set"/"changed"/"cleared". `masked_mapping_fields`: JSON objects
    (headers, query parameters) whose secret-looking keys (SECRET_NAME) have their values masked.
    `ignore_fields`: not recorded, and a save that changes only them writes no entry (auto_now and
    auto_now_add timestamps are always ignored). `m2m_fields`: many-to-many fields whose membership changes
    are recorded as {field: [before names, after names]}.
    """
    ignored = set(ignore_fields)
    fields = tuple(
        f
        for f in model._meta.concrete_fields
        if not f.primary_key
        and f.name not in ignored
        and not getattr(f, "auto_now", False)
        and not getattr(f, "auto_now_add", False)
    )
    names = {f.name for f in fields}
    unknown = (set(secret_fields) | set(masked_mapping_fields)) - names
    unknown |= ignored - {f.name for f in model._meta.concrete_fields}
    if unknown:
        raise ValueError(f"audit.track({model.__name__}): no such field(s) {sorted(unknown)}")
    _tracked[model] = Tracking(
        model._meta.label_lower, fields, frozenset(secret_fields), frozenset(masked_mapping_fields)
    )
    uid = f"audit-{model._meta.label_lower}"
    pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}-pre-save")
    post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}-post-save")
    post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}-post-delete")
    for name in m2m_fields:
        through = getattr(model, name).through
        m2m_changed.connect(
            functools.partial(_m2m_changed, model, name), sender=through, dispatch_uid=f"{uid}-m2m-{name}", weak=False
        )


# --- recording --------------------------------------------------------------------------------------------


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        # As a number reads, whatever its scale: 15.000000 from the database and 15 from a form are one value.
        return format(value.normalize(), "f")
    return json.loads(json.dumps(value, cls=_Encoder))


def _snapshot(spec: Tracking, instance: models.Model) -> dict[str, Any]:
    return {f.name: _jsonable(f.value_from_object(instance)) for f in spec.fields}


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _mask_secret(before: Any, after: Any) -> str:
    if _is_empty(before):
        return "set"
    return "cleared" if _is_empty(after) else "changed"


def _mask_mapping(value: Any, other: Any) -> Any:
    """`value` with secret-looking keys' values hidden; "*** (changed)" where `other` has another value."""
    if not isinstance(value, dict):
        return value
    other_map = other if isinstance(other, dict) else {}
    masked = {}
    for key, item in value.items():
        if not SECRET_NAME.search(str(key)):
            masked[key] = item
        elif key in other_map and other_map[key] != item:
            masked[key] = f"{MASK} (changed)"
        else:
            masked[key] = MASK
    return masked


def _diff(spec: Tracking, before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for f in spec.fields:
        old = before.get(f.name) if before is not None else None
        new = after.get(f.name) if after is not None else None
        if before is not None and after is not None and old == new:
            continue
        if (before is None or after is None) and _is_empty(old) and _is_empty(new):
            continue  # creation or deletion: only the fields that hold something
        if f.name in spec.secret_fields:
            changes[f.name] = _mask_secret(old, new)
        elif f.name in spec.masked_mapping_fields:
            # The "changed" marker goes on the newer side only, so the two sides never read alike.
            changes[f.name] = [_mask_mapping(old, None), _mask_mapping(new, old)]
        else:
            changes[f.name] = [old, new]
    return changes


def _repr(instance: models.Model) -> str:
    try:
        return str(instance)[:200]
    except Exception:  # a __str__ following a relation that a cascade is deleting must not block the delete
        return f"{type(instance).__name__} {instance.pk}"


def _write(instance: models.Model, action: str, changes: dict[str, Any], using: str) -> None:
    actor = current_actor()
    user_id = actor.user_id
    if user_id is not None and isinstance(instance, get_user_model()) and instance.pk in (None, user_id):
        user_id = None  # a user deleting their own account: the entry keeps the name, not a dangling link
    AuditEntry.objects.using(using).create(
        actor=actor.name[:150],
        actor_user_id=user_id,
        via=actor.via[:200],
        action=action,
        model=instance._meta.label_lower,
        object_id=str(instance.pk)[:64],
        object_repr=_repr(instance),
        changes=changes,
    )


def _skips(spec: Tracking, update_fields: frozenset[str] | None) -> bool:
    """A save limited to fields nobody audits (a login's last_login) costs no query and writes nothing."""
    if update_fields is None:
        return False
    return not any(f.name in update_fields or f.attname in update_fields for f in spec.fields)


def _before_save(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    using: str = "default",
    update_fields: frozenset[str] | None = None,
    **_: Any,
) -> None:
    spec = _tracked[sender]
    if raw or _skips(spec, update_fields):
        return
    before = None
    if not instance._state.adding and instance.pk is not None:
        old = sender._base_manager.using(using).filter(pk=instance.pk).first()
        before = _snapshot(spec, old) if old is not None else None
    setattr(instance, _BEFORE, before)


def _after_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool = False,
    raw: bool = False,
    using: str = "default",
    update_fields: frozenset[str] | None = None,
    **_: Any,
) -> None:
    spec = _tracked[sender]
    if raw or _skips(spec, update_fields):
        return
    before = instance.__dict__.pop(_BEFORE, None)
    if created or before is None:
        _write(instance, AuditEntry.Action.CREATE, _diff(spec, None, _snapshot(spec, instance)), using)
        return
    changes = _diff(spec, before, _snapshot(spec, instance))
    if update_fields is not None:
        # Only these were written; a stale in-memory value of any other field changed nothing in the row.
        written = {f.name for f in spec.fields if f.name in update_fields or f.attname in update_fields}
        changes = {name: change for name, change in changes.items() if name in written}
    if changes:
        _write(instance, AuditEntry.Action.UPDATE, changes, using)


def _after_delete(sender: type[models.Model], instance: models.Model, using: str = "default", **_: Any) -> None:
    if isinstance(instance, get_user_model()):
        # Entries this same deletion wrote (its keys, cascaded) name the user as actor when they delete
        # themselves; the deleted row cannot stay referenced.
        AuditEntry.objects.using(using).filter(actor_user_id=instance.pk).update(actor_user=None)
    spec = _tracked[sender]
    _write(instance, AuditEntry.Action.DELETE, _diff(spec, _snapshot(spec, instance), None), using)


# Many-to-many: the instances whose membership changes, and their member names before the change.


def _m2m_members(instance: models.Model, field: str) -> list[str]:
    return sorted(str(member) for member in getattr(instance, field).all())


def _m2m_changed(
    tracked: type[models.Model],
    field: str,
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    pk_set: set[Any] | None,
    using: str = "default",
    **_: Any,
) -> None:
    stage = action.partition("_")[0]
    if stage == "pre":
        if not reverse:
            affected = [instance]
        elif pk_set is not None:
            affected = list(tracked._base_manager.using(using).filter(pk__in=pk_set))
        else:  # clearing from the other side (group.user_set.clear()): everyone who was a member
            affected = list(tracked._base_manager.using(using).filter(**{field: instance.pk}))
        setattr(instance, _M2M_BEFORE, [(obj, _m2m_members(obj, field)) for obj in affected])
        return
    for obj, before in instance.__dict__.pop(_M2M_BEFORE, []):
        after = _m2m_members(obj, field)
        if after != before:
            _write(obj, AuditEntry.Action.UPDATE, {field: [before, after]}, using)


# --- what this project tracks -----------------------------------------------------------------------------

track(
    Upstream,
    secret_fields=("api_key_encrypted", "proxy_auth_encrypted"),
    masked_mapping_fields=("headers", "query_params"),
)
track(ModelAlias)
track(PathPrefix)
track(ProxyKey, secret_fields=("key_hash",), ignore_fields=("last_used_at",))
track(
    get_user_model(),
    secret_fields=("password",),
    ignore_fields=("last_login",),
    m2m_fields=("groups", "user_permissions"),
)
track(Group, m2m_fields=("permissions",))
track(KeyPolicy)
track(UserPolicy)
track(GroupPolicy)
_attribute_commands()
