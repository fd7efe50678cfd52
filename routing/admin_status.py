"""What the upstream list and form say about an upstream before anyone sends a request: whether its credential
can be read (an environment variable set, a stored secret present; never the value), and when it last worked and
last failed, from the usage ledger.

Environment variables are read by the process showing the page, as the route table reads them when it loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Q
from django.utils import timezone

from routing.config.secrets import credential_variable_problem, decrypt, own_variable_problem
from routing.config.targets import key_variables
from routing.models import BEDROCK, VERTEX, Upstream

# The ledger is read over this window for the last success and the last error (the dashboards' longest range).
LAST_SEEN_DAYS = 30
# Failures that say something about the upstream (a 400 of a client's making does not).
UPSTREAM_FAILURES = ("upstream_error", "timeout")


@dataclass(frozen=True)
class CredentialStatus:
    usable: bool
    parts: tuple[str, ...]  # e.g. "$OPENAI_API_KEY set", "$OTHER_KEY NOT SET", "stored key set"

    @property
    def text(self) -> str:
        return ", ".join(self.parts)


def _variable(name: str, *, credential: bool = True) -> tuple[bool, str]:
    problem = credential_variable_problem(name) if credential else own_variable_problem(name)
    if problem is not None:
        return False, f"${name} refused ({problem})"
    if os.environ.get(name):
        return True, f"${name} set"
    return False, f"${name} NOT SET"


def _stored(token: str, what: str) -> tuple[bool, str]:
    try:
        decrypt(token)
    except ValueError:
        return False, f"stored {what} cannot be decrypted"
    return True, f"stored {what} set"


def credential_status(upstream: Upstream) -> CredentialStatus:
    """Whether each credential the upstream names can be read now (in this process), without the values."""
    found: list[tuple[bool, str]] = []
    if upstream.format == VERTEX:
        if upstream.credentials_env:
            found.append(_variable(upstream.credentials_env, credential=False))
        elif upstream.api_key_encrypted:
            found.append(_stored(upstream.api_key_encrypted, "service-account key"))
        else:
            found.append((True, "application default credentials"))
    elif upstream.format == BEDROCK:
        if upstream.aws_access_key_id_env:
            for name in (upstream.aws_access_key_id_env, upstream.aws_secret_access_key_env):
                found.append(_variable(name, credential=False))
            if upstream.aws_session_token_env:
                found.append(_variable(upstream.aws_session_token_env, credential=False))
        elif upstream.api_key_env:
            found.append(_variable(upstream.api_key_env))
        elif upstream.api_key_encrypted:
            found.append(_stored(upstream.api_key_encrypted, "key"))
        else:
            found.append((True, "AWS credential chain"))
    elif upstream.api_key_env:
        found.extend(_variable(name) for name in key_variables(upstream.api_key_env))
    elif upstream.api_key_encrypted:
        found.append(_stored(upstream.api_key_encrypted, "key"))
    else:
        found.append((True, "clients' own keys" if upstream.forward_client_key else "none"))
    if upstream.proxy_url and upstream.proxy_auth_env:
        usable, text = _variable(upstream.proxy_auth_env, credential=False)
        found.append((usable, f"proxy: {text}"))
    elif upstream.proxy_url and upstream.proxy_auth_encrypted:
        usable, text = _stored(upstream.proxy_auth_encrypted, "credentials")
        found.append((usable, f"proxy: {text}"))
    return CredentialStatus(all(usable for usable, _ in found), tuple(text for _, text in found))


def missing_variables(upstream: Upstream) -> list[str]:
    """The environment variables the upstream names that this process does not have."""
    names: list[str] = []
    if upstream.format == VERTEX:
        names = [upstream.credentials_env]
    elif upstream.format == BEDROCK:
        if upstream.aws_access_key_id_env:
            names = [upstream.aws_access_key_id_env, upstream.aws_secret_access_key_env, upstream.aws_session_token_env]
        else:
            names = [upstream.api_key_env]
    else:
        names = key_variables(upstream.api_key_env)
    if upstream.proxy_url:
        names.append(upstream.proxy_auth_env)
    return [name for name in names if name and not os.environ.get(name)]


@dataclass(frozen=True)
class LastSeen:
    ok_at: datetime | None = None
    error_at: datetime | None = None
    error_status: int | None = None
    error_message: str = ""


def last_seen(names: Iterable[str]) -> dict[str, LastSeen]:
    """Per upstream name, its latest successful exchange and its latest upstream failure (with the error) in the
    last LAST_SEEN_DAYS days: two queries whatever the number of upstreams."""
    from usage.models import LedgerEntry

    wanted: Sequence[str] = sorted(set(names))
    if not wanted:
        return {}
    since = timezone.now() - timedelta(days=LAST_SEEN_DAYS)
    rows = (
        LedgerEntry.objects.filter(upstream__in=wanted, started_at__gte=since)
        .values("upstream")
        .annotate(
            ok_at=Max("started_at", filter=Q(outcome="ok")),
            error_at=Max("started_at", filter=Q(outcome__in=UPSTREAM_FAILURES)),
        )
    )
    latest = {row["upstream"]: (row["ok_at"], row["error_at"]) for row in rows}
    errors: dict[str, tuple[int, str]] = {}
    failed = [(name, at) for name, (_, at) in latest.items() if at is not None]
    if failed:
        which = Q()
        for name, at in failed:
            which |= Q(upstream=name, started_at=at)
        for entry in (
            LedgerEntry.objects.filter(which, outcome__in=UPSTREAM_FAILURES)
            .order_by("started_at")
            .values("upstream", "status", "error_message")
        ):
            errors[entry["upstream"]] = (entry["status"], entry["error_message"])
    result = {}
    for name, (ok_at, error_at) in latest.items():
        status, message = errors.get(name, (None, ""))
        result[name] = LastSeen(ok_at, error_at, status, message)
    return result
