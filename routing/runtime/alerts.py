"""Alerts for the operators: a budget reaching 80 % and 100 % of its period, an upstream target's circuit opening,
its error rate over ALERT_ERROR_RATE. Sent as JSON to the ALERT_WEBHOOK_URLS (with a Slack-compatible `text`) and
by email to the ALERT_EMAILS through the mail server of EMAIL_URL; off when neither is set.

Nothing here runs on a request. A job of the process's background worker looks at what the worker already keeps
in memory, each pass: the budgets' spend (routing.access.budgets, grown by the ledger writer and re-read from the
rollups), and the circuits and recent outcomes of the upstream targets (routing.upstream.health). An event is
claimed in the database before it is sent (`usage.Alert`, one row per unique key, on the database thread), so
with several replicas on one database exactly one sends it: a budget threshold's key names its period and amount
(sent once per period), an upstream event's key names the target and kind, claimed again only ALERT_QUIET_SECONDS
after the last (a flapping circuit or an error rate that hovers about the threshold does not send a storm). Each
process also keeps what it saw at its last look, so a circuit that stays open or an error rate that stays high is
one event.

A delivery is a task of its own: each webhook is posted up to ALERT_ATTEMPTS times with a doubling pause after
ALERT_RETRY_SECONDS (a 4xx other than 408 and 429 is final), the email likewise, and the outcome is written on the
alert's row. A receiver that is down therefore holds up nothing: not a request, not another job.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F

from routing.access.budgets import spend_book
from routing.access.policy import PERIOD_WORDS, Budget, period_bounds
from routing.runtime.database import run_db
from routing.runtime.worker import worker
from routing.upstream.health import Circuit, CircuitState, health
from usage.formatting import fmt_usd
from usage.models import Alert, AlertKind

logger = logging.getLogger(__name__)

# The fractions of a budget that raise an alert (the issue fixes them).
BUDGET_THRESHOLDS = (80, 100)
# How long one webhook post may take.
POST_TIMEOUT_SECONDS = 10.0
# How long a stopping server lets deliveries under way finish.
STOP_GRACE_SECONDS = 3.0
# Statuses worth trying again (the rest of 4xx means the request itself is wrong).
_RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Event:
    kind: AlertKind
    key: str  # the claim: unique per alert
    subject: str
    text: str
    payload: dict[str, Any]
    repeat_after: float | None = None  # seconds after which the same key may be claimed again; None: never
    send: bool = True  # False: only claimed (an 80 % threshold passed in the same look as 100 %)


def _emails() -> list[str]:
    """The recipients, when there is a mail server to send through (EMAIL_URL, shared with the invitations)."""
    return list(settings.ALERT_EMAILS) if settings.EMAIL_CONFIGURED else []


def enabled() -> bool:
    return bool(settings.ALERT_WEBHOOK_URLS or _emails())


def _iso(moment: float | datetime | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.isoformat(timespec="seconds")


def _plain(amount: Decimal) -> str:
    """Dollars as a JSON string, exact and without trailing zeros ("0.05", "12")."""
    return f"{amount.normalize():f}"


def _link(path: str) -> str:
    return settings.ALERT_LINK_BASE_URL.rstrip("/") + path


# --- budgets ----------------------------------------------------------------------------------------------


def budget_events(standings: list[tuple[Budget, Decimal]], now: float) -> list[Event]:
    """The thresholds each budget has reached in its current period (claimed or not: the caller knows)."""
    events = []
    for budget, spent in standings:
        if budget.amount <= 0:
            continue  # a budget of 0 blocks everything by design: nothing to warn about
        percent = spent / budget.amount * 100
        reached = [threshold for threshold in BUDGET_THRESHOLDS if percent >= threshold]
        if not reached:
            continue
        start, end = period_bounds(budget.period, datetime.fromtimestamp(now, tz=UTC))
        for threshold in reached:
            events.append(_budget_event(budget, spent, percent, threshold, start, end, send=threshold == reached[-1]))
    return events


def _budget_event(
    budget: Budget,
    spent: Decimal,
    percent: Decimal,
    threshold: int,
    start: datetime | None,
    end: datetime | None,
    *,
    send: bool,
) -> Event:
    period = start.date().isoformat() if start is not None else "all-time"
    # The amount is part of the key: a budget raised after its alert warns again at its new thresholds.
    key = f"budget:{budget.scope}:{budget.subject_id}:{budget.period}:{period}:{_plain(budget.amount)}:{threshold}"
    words = PERIOD_WORDS.get(budget.period, "")
    state = "is spent" if threshold >= 100 else f"has reached {threshold} %"
    text = (
        f"llmproxy: the budget of {budget.who} {state}: {fmt_usd(spent)} of {fmt_usd(budget.amount)} {words}"
        f" ({percent:.0f} %)."
    )
    if threshold >= 100:
        text += " Its requests are refused until " + (f"{end:%Y-%m-%d %H:%M} UTC." if end else "it is raised.")
    payload = {
        "kind": AlertKind.BUDGET.value,
        "threshold_percent": threshold,
        "budget": {
            "scope": budget.scope,
            "id": budget.subject_id,
            "who": budget.who,
            "period": budget.period,
            "period_start": _iso(start),
            "period_end": _iso(end),
            "limit_usd": _plain(budget.amount),
            "spent_usd": _plain(spent),
            "percent": round(float(percent), 1),
        },
        "dashboard_url": _link("/dashboard/"),
    }
    return Event(AlertKind.BUDGET, key, f"{budget.who}, {budget.period}", text, payload, send=send)


# --- upstreams --------------------------------------------------------------------------------------------


@dataclass
class _Rate:
    attempts: int
    failures: int

    @property
    def rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


def _recent_rate(circuit: Circuit, now: float) -> _Rate:
    outcomes = [ok for at, ok in circuit.recent if now - at <= settings.ALERT_ERROR_RATE_WINDOW]
    return _Rate(len(outcomes), outcomes.count(False))


def _upstream_facts(target: str, circuit: Circuit, now: float) -> dict[str, Any]:
    upstream, _, model = target.partition("/")
    rate = _recent_rate(circuit, now)
    return {
        "target": target,
        "upstream": upstream,
        "model": model,
        "circuit": circuit.state(now).value,
        "open_until": _iso(circuit.open_until) if circuit.open_until else None,
        "consecutive_failures": circuit.failures,
        "last_error": circuit.last_error[:300],
        "error_rate": round(rate.rate, 3),
        "attempts": rate.attempts,
        "failures": rate.failures,
        "window_seconds": settings.ALERT_ERROR_RATE_WINDOW,
    }


def _upstream_event(kind: AlertKind, target: str, text: str, facts: dict[str, Any]) -> Event:
    upstream = facts["upstream"]
    payload = {
        "kind": kind.value,
        "upstream": facts,
        "dashboard_url": _link(f"/admin/routing/upstream/?q={quote(upstream)}"),
    }
    return Event(kind, f"{kind.value}:{target}", target, text, payload, repeat_after=settings.ALERT_QUIET_SECONDS)


@dataclass
class UpstreamWatch:
    """What this process saw at its last look, so that a state that lasts is one event, not one per pass."""

    troubled: set[str] = field(default_factory=set)  # circuit not closed
    high: set[str] = field(default_factory=set)  # error rate over the threshold

    def events(self, circuits: dict[str, Circuit], now: float) -> list[Event]:
        events = []
        troubled, high = set(), set()
        for target, circuit in list(circuits.items()):
            facts: dict[str, Any] | None = None
            if circuit.state(now) is not CircuitState.CLOSED:
                troubled.add(target)
                if target not in self.troubled:
                    facts = _upstream_facts(target, circuit, now)
                    text = (
                        f"llmproxy: the circuit of {target} opened after {circuit.failures} failure(s); it rests "
                        f"until {datetime.fromtimestamp(circuit.open_until, tz=UTC):%H:%M:%S} UTC. Last error: "
                        f"{circuit.last_error[:200] or 'none recorded'}"
                    )
                    events.append(_upstream_event(AlertKind.CIRCUIT_OPEN, target, text, facts))
            rate = _recent_rate(circuit, now)
            if rate.attempts >= settings.ALERT_ERROR_RATE_MIN_REQUESTS and rate.rate >= settings.ALERT_ERROR_RATE:
                high.add(target)
                if target not in self.high:
                    facts = facts or _upstream_facts(target, circuit, now)
                    facts["threshold"] = settings.ALERT_ERROR_RATE
                    text = (
                        f"llmproxy: {target} failed {rate.failures} of its last {rate.attempts} attempts "
                        f"({rate.rate:.0%}) in {settings.ALERT_ERROR_RATE_WINDOW:.0f} s, over the "
                        f"{settings.ALERT_ERROR_RATE:.0%} threshold. Last error: {circuit.last_error[:200] or 'none'}"
                    )
                    events.append(_upstream_event(AlertKind.ERROR_RATE, target, text, facts))
        self.troubled, self.high = troubled, high
        return events


# --- claiming (the database thread) -----------------------------------------------------------------------


def claim(event: Event, now: datetime) -> bool:
    """True if this process is the one to send `event`: its row is new, or the last one is older than the event's
    repeat interval (one conditional UPDATE, so two replicas never both succeed)."""
    fields = {"kind": event.kind, "subject": event.subject[:300], "text": event.text, "payload": event.payload}
    delivery = "" if event.send else "not sent: a higher threshold was reached at the same time"
    try:
        with transaction.atomic():
            Alert.objects.create(key=event.key[:255], raised_at=now, delivery=delivery, **fields)
        return True
    except IntegrityError:
        if event.repeat_after is None:
            return False
    again = Alert.objects.filter(key=event.key[:255], raised_at__lt=now - timedelta(seconds=event.repeat_after))
    return bool(again.update(raised_at=now, times=F("times") + 1, delivery="", delivered_at=None, **fields))


def _record_delivery(key: str, outcome: str, delivered: bool) -> None:
    Alert.objects.filter(key=key[:255]).update(
        delivery=outcome[:500], delivered_at=datetime.now(UTC) if delivered else None
    )


# --- delivering -------------------------------------------------------------------------------------------


def _host(url: str) -> str:
    """A webhook URL's host alone: the path of a Slack or Teams webhook is its secret, never logged."""
    return urlsplit(url).hostname or "?"


class _Final(Exception):
    """An answer that retrying cannot change."""


class _Retryable(Exception):
    """A failure worth another try (its message is the whole story)."""


async def _with_retries(what: str, attempt: Callable[[], Awaitable[None]]) -> tuple[bool, str]:
    """Run `attempt` until it succeeds or ALERT_ATTEMPTS are spent; returns whether it did, and how, in words."""
    pause = settings.ALERT_RETRY_SECONDS
    attempts = max(1, settings.ALERT_ATTEMPTS)
    last = ""
    for number in range(1, attempts + 1):
        try:
            await attempt()
            return True, f"{what}: delivered" + (f" (attempt {number})" if number > 1 else "")
        except _Final as exc:
            last = str(exc)
            break
        except _Retryable as exc:
            last = str(exc)
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"[:200]
        logger.warning("alert to %s not delivered (attempt %d of %d): %s", what, number, attempts, last)
        if number < attempts:
            await asyncio.sleep(pause)
            pause *= 2
    return False, f"{what}: failed after {number} attempt(s) ({last})"


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> None:
    try:
        response = await client.post(url, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:  # its message may quote the URL, whose path is a secret
        raise _Retryable(f"{type(exc).__name__}: {str(exc).replace(url, _host(url))}") from None
    if response.is_success:
        return
    message = f"HTTP {response.status_code}"
    if 400 <= response.status_code < 500 and response.status_code not in _RETRY_STATUSES:
        raise _Final(message)
    raise _Retryable(message)


def _send_email(event: Event, body: str) -> None:
    subject = event.text if len(event.text) <= 150 else event.text[:149] + "…"
    send_mail(subject, body, None, _emails(), fail_silently=False)


async def deliver(event: Event, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    outcomes: list[Awaitable[tuple[bool, str]]] = []
    async with httpx.AsyncClient(timeout=POST_TIMEOUT_SECONDS) as client:
        for url in settings.ALERT_WEBHOOK_URLS:

            async def post(url: str = url) -> None:
                await _post(client, url, body)

            outcomes.append(_with_retries(f"webhook {_host(url)}", post))
        if _emails():
            text = f"{event.text}\n\n{json.dumps(payload, indent=2)}"

            async def email() -> None:
                await asyncio.to_thread(_send_email, event, text)

            outcomes.append(_with_retries(f"email to {len(_emails())} recipient(s)", email))
        results = await asyncio.gather(*outcomes)
    delivered = all(ok for ok, _ in results)
    summary = "; ".join(words for _, words in results)
    if delivered:
        logger.info("alert sent: %s", event.text)
    else:
        logger.error("alert not delivered everywhere (%s): %s", summary, event.text)
    await run_db(lambda: _record_delivery(event.key, summary, delivered))


# --- the job ----------------------------------------------------------------------------------------------


class Alerts:
    def __init__(self) -> None:
        self.upstreams = UpstreamWatch()
        self._claimed: set[str] = set()  # budget keys known claimed (here or by another replica)
        self._deliveries: set[asyncio.Task[None]] = set()

    async def check(self) -> None:
        """The worker's job: find the new events, claim each, and send the ones claimed here (in the background)."""
        if not enabled():
            return
        now = time.time()
        events = [e for e in budget_events(spend_book.standings(now), now) if e.key not in self._claimed]
        events += self.upstreams.events(health.circuits, now)
        moment = datetime.fromtimestamp(now, tz=UTC)
        for event in events:
            try:
                claimed = await run_db(functools.partial(claim, event, moment))
            except Exception:
                logger.exception("alert %s could not be claimed; it is looked at again next pass", event.key)
                if event.kind is not AlertKind.BUDGET:
                    self.upstreams = UpstreamWatch()  # forget the last look, so the event comes again
                continue
            if event.repeat_after is None:
                self._claimed.add(event.key)
            if claimed and event.send:
                self._start(event, {"text": event.text, "time": _iso(moment), **event.payload})

    def _start(self, event: Event, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver_logged(event, payload))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver_logged(self, event: Event, payload: dict[str, Any]) -> None:
        try:
            await deliver(event, payload)
        except Exception:
            logger.exception("alert %s: delivery failed", event.key)

    async def at_stop(self) -> None:
        """Let the deliveries under way finish for a moment (a receiver that is down does not hold the stop)."""
        if self._deliveries:
            await asyncio.wait(list(self._deliveries), timeout=STOP_GRACE_SECONDS)

    def reset(self) -> None:
        """Forget what was seen (tests)."""
        self.upstreams = UpstreamWatch()
        self._claimed.clear()


alerts = Alerts()
worker.register("alerts", alerts.check, at_stop=alerts.at_stop)
