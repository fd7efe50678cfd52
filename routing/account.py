"""A person's own page, /me/: their proxy keys (create, relabel, revoke) and their usage and cost.

Any active user may use it, for their own keys and ledger rows only: a key id that is not theirs is a 404.
A new key's plaintext is shown once, on the page the creation redirects to. Between the POST and that GET
it waits in the session encrypted (`routing.config.secrets`), and the GET removes it, so no later render (a reload,
the back button) can show it again. Pages carrying it are marked uncacheable.

The staff live view's page (`usage.live.live_page`) is routed from here too, so that the site's URL list
needs one line for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from routing.access.overview import overview
from routing.client_setup import client_snippets
from routing.config.secrets import decrypt, encrypt
from routing.invitations import AcceptInvitationView
from routing.models import ModelAlias, ProxyKey
from usage import live
from usage.models import LedgerEntry, Outcome

USAGE_DAYS = 30
RECENT_FAILURES = 10
# The session entry holding a just-created key (encrypted) until the next render of the page.
NEW_KEY_SESSION = "account_new_key"
LABEL_MAX = ProxyKey._meta.get_field("label").max_length or 100


class CreateKeyForm(forms.Form):
    label = forms.CharField(max_length=LABEL_MAX, required=False, strip=True)
    expires = forms.DateField(required=False, help_text="The key works until the end of this day (UTC).")

    def clean_expires(self) -> date | None:
        expires: date | None = self.cleaned_data.get("expires")
        if expires is not None and expires < timezone.now().astimezone(UTC).date():
            raise forms.ValidationError("The expiry date is in the past.")
        return expires


class RelabelForm(forms.Form):
    label = forms.CharField(max_length=LABEL_MAX, required=False, strip=True)


def end_of_day(day: date) -> datetime:
    """The moment a key valid "until `day`" stops working: midnight UTC after that day."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


# --- views ------------------------------------------------------------------------------------------------


@never_cache
@require_safe
@login_required
def my_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, AbstractBaseUser)
    now = timezone.now()
    keys = list(ProxyKey.objects.filter(user=user).order_by("-created_at"))
    new_key = _pop_new_key(request, keys)
    rows = [_key_row(key, now) for key in keys]
    allowed = overview(user.pk, user.get_username(), [row.key for row in rows if row.status == "active"], now)
    plaintext = new_key["plaintext"] if new_key else None
    context: dict[str, Any] = {
        "keys": rows,
        "new_key": new_key,
        "setup": client_snippets(request.build_absolute_uri("/"), plaintext, allowed.example_model),
        "allowed": allowed,
        "failures": recent_failures(user.pk, now),
        "create_form": CreateKeyForm(),
        "usage": usage_summary(user.pk, now),
        "usage_days": USAGE_DAYS,
        "today": now.astimezone(UTC).date(),
        "captured": _captured(rows),
    }
    return render(request, "account/me.html", context)


def _captured(rows: list[KeyRow]) -> dict[str, Any] | None:
    """What of the person's traffic has its bodies kept (usage.captures): people are told, not left to guess."""
    keys = [row.key for row in rows if row.status == "active" and row.key.capture_bodies]
    aliases = list(
        ModelAlias.objects.filter(capture_bodies=True, enabled=True).order_by("name").values_list("name", flat=True)
    )
    if not keys and not aliases:
        return None
    return {"keys": keys, "aliases": aliases, "days": settings.CAPTURE_RETENTION_DAYS}


@require_POST
@login_required
def create_key(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert not isinstance(user, AnonymousUser)
    form = CreateKeyForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"No key created: {error}")
        return redirect("account")
    expires: date | None = form.cleaned_data["expires"]
    key, plaintext = ProxyKey.issue(
        user, label=form.cleaned_data["label"], expires_at=end_of_day(expires) if expires else None
    )
    request.session[NEW_KEY_SESSION] = {"id": key.pk, "secret": encrypt(plaintext)}
    return redirect("account")


@require_POST
@login_required
def relabel_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ProxyKey, pk=key_id, user_id=request.user.pk)
    form = RelabelForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Label not changed: the label is limited to {LABEL_MAX} characters.")
        return redirect("account")
    if key.label != form.cleaned_data["label"]:
        key.label = form.cleaned_data["label"]
        key.save(update_fields=["label"])
        messages.success(request, f"Key {key.prefix}… relabelled.")
    return redirect("account")


@require_POST
@login_required
def revoke_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ProxyKey, pk=key_id, user_id=request.user.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        # A save (not a queryset update) so that the routing signals tell every worker at once.
        key.save(update_fields=["revoked_at"])
        messages.success(request, f"Key {key.prefix}… revoked: it stops working within a second or so.")
    return redirect("account")


def _pop_new_key(request: HttpRequest, keys: list[ProxyKey]) -> dict[str, Any] | None:
    """The key created just before this render, with its plaintext; removed from the session for good."""
    stored = request.session.pop(NEW_KEY_SESSION, None)
    if not isinstance(stored, dict):
        return None
    key = next((k for k in keys if k.pk == stored.get("id")), None)
    if key is None:
        return None
    try:
        plaintext = decrypt(str(stored.get("secret", "")))
    except ValueError:
        return None  # the encryption keys changed in between: the key exists, its secret is lost
    return {"key": key, "plaintext": plaintext}


@dataclass(frozen=True)
class KeyRow:
    key: ProxyKey
    status: str  # "active", "revoked", "expired"


def _key_row(key: ProxyKey, now: datetime) -> KeyRow:
    if key.revoked_at is not None:
        return KeyRow(key, "revoked")
    if key.expires_at is not None and key.expires_at <= now:
        return KeyRow(key, "expired")
    return KeyRow(key, "active")


# --- usage ------------------------------------------------------------------------------------------------


def _figures() -> dict[str, Any]:
    return {
        "requests": Count("id"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cache_read_tokens": Sum("cache_read_tokens"),
        "cache_write_tokens": Sum("cache_write_tokens"),
        "cost": Sum("cost_usd"),
        "unpriced": Count("id", filter=Q(cost_usd__isnull=True)),
        "errors": Count("id", filter=~Q(outcome="ok")),
    }


def user_rows(user_id: int, since: datetime) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(user_id=user_id, started_at__gte=since)


def usage_summary(user_id: int, now: datetime) -> dict[str, Any]:
    """One user's usage over the last `USAGE_DAYS` days (UTC days, today included): totals, per model, and per
    day and model. One aggregate query (per day and model; the other two are its sums: each extra pass over a
    busy user's rows cost ~200 ms on a 10M-row ledger); a cost of None means every row in it was unpriced."""
    since = datetime.combine(now.astimezone(UTC).date() - timedelta(days=USAGE_DAYS - 1), time.min, tzinfo=UTC)
    model = ("requested_model", "upstream", "upstream_model")
    per_day = list(
        user_rows(user_id, since)
        .annotate(day=TruncDate("started_at", tzinfo=UTC))
        .values("day", *model)
        .annotate(**_figures())
        .order_by("-day", F("cost").desc(nulls_last=True), "-requests", *model)
    )
    by_model: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in per_day:
        _add(by_model.setdefault(tuple(row[name] for name in model), dict.fromkeys(model)), row)
    for names, figures in by_model.items():
        figures.update(zip(model, names, strict=True))
    totals: dict[str, Any] = {}
    for row in per_day:
        _add(totals, row)
    if not per_day:
        totals = {name: (0 if name in COUNTED else None) for name in _figures()}
    ordered = sorted(
        by_model.values(),
        key=lambda f: (f["cost"] is None, -(f["cost"] or 0), -f["requests"], *(f[name] for name in model)),
    )
    return {"since": since, "totals": totals, "by_model": ordered, "per_day": per_day}


# Figures that are counts (0 when there is nothing); the others are sums (None when nothing was reported).
COUNTED = frozenset({"requests", "unpriced", "errors"})


def _add(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Add a row's figures to `into`, as SQL's SUM would: None only while every value was None."""
    for name in _figures():
        value, total = row[name], into.get(name)
        into[name] = value if total is None else total if value is None else total + value


def recent_failures(user_id: int, now: datetime) -> list[LedgerEntry]:
    """The user's latest exchanges that did not end well (in the usage window), newest first: one query."""
    since = now - timedelta(days=USAGE_DAYS)
    rows = user_rows(user_id, since).exclude(outcome=Outcome.OK).select_related("key")
    return list(rows.order_by("-started_at")[:RECENT_FAILURES])


# The user's own page and key actions, and the staff live view's page (its view lives in usage.live).
urlpatterns = [
    path("me/", my_page, name="account"),
    path("me/keys/", create_key, name="account-create-key"),
    path("me/keys/<int:key_id>/label/", relabel_key, name="account-relabel-key"),
    path("me/keys/<int:key_id>/revoke/", revoke_key, name="account-revoke-key"),
    path("dashboard/live/", live.live_page, name="live"),
    path("accounts/invitation/<uidb64>/<token>/", AcceptInvitationView.as_view(), name="invitation"),
]
