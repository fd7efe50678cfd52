"""The alert rules without a server: which events a budget's spend and a target's circuit raise, and the claim that
lets one replica of many send each (tests/test_alerts.py sends them through a real server)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from routing.access.policy import Budget
from routing.runtime.alerts import UpstreamWatch, budget_events, claim
from routing.upstream.health import Circuit
from usage.models import Alert, AlertKind

NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC).timestamp()


def budget(amount: str = "10") -> Budget:
    return Budget(scope="user", subject_id=7, who="user 'alice'", amount=Decimal(amount), period="day")


def test_a_budget_raises_each_threshold_it_has_reached_in_its_period():
    assert budget_events([(budget(), Decimal("7.99"))], NOW) == []
    (at_80,) = budget_events([(budget(), Decimal(8))], NOW)
    assert at_80.key == "budget:user:7:day:2026-12-04:10:80"
    assert at_80.send and at_80.repeat_after is None
    assert at_80.payload["budget"]["period_end"] == "2026-12-05T00:00:00+00:00"
    # Past both at once: 80 % is claimed (so it never comes later) but only 100 % is sent.
    at_80, at_100 = budget_events([(budget(), Decimal(12))], NOW)
    assert (at_80.send, at_100.send) == (False, True)
    assert at_100.key == "budget:user:7:day:2026-12-04:10:100"
    # The next day is another period: other keys.
    (tomorrow,) = budget_events([(budget(), Decimal(9))], NOW + 86400)
    assert tomorrow.key == "budget:user:7:day:2026-12-05:10:80"
    # A budget raised since: its new thresholds are new alerts.
    (raised,) = budget_events([(budget("15"), Decimal(12))], NOW)
    assert raised.key == "budget:user:7:day:2026-12-04:15:80"
    # A budget of 0 blocks by design: nothing to warn about.
    assert budget_events([(budget("0"), Decimal(1))], NOW) == []


def test_a_circuit_that_stays_open_or_flaps_is_one_event_until_it_closes(settings):
    settings.ALERT_ERROR_RATE_MIN_REQUESTS = 1000  # error rates apart
    watch = UpstreamWatch()
    now = time.time()
    circuit = Circuit(failures=3, open_until=now + 30, opened_at=now, last_error="answered 503")
    (opened,) = watch.events({"up/m": circuit}, now)
    assert (opened.kind, opened.key, opened.subject) == (AlertKind.CIRCUIT_OPEN, "circuit_open:up/m", "up/m")
    assert watch.events({"up/m": circuit}, now + 1) == []  # still open
    assert watch.events({"up/m": circuit}, now + 31) == []  # half-open
    circuit.open_until = now + 61  # the trial failed: open again, the same incident
    assert watch.events({"up/m": circuit}, now + 32) == []
    circuit.open_until = 0.0  # closed
    assert watch.events({"up/m": circuit}, now + 70) == []
    circuit.open_until = now + 100  # a new opening
    (again,) = watch.events({"up/m": circuit}, now + 71)
    assert again.kind is AlertKind.CIRCUIT_OPEN


def test_an_error_rate_counts_within_its_window_and_needs_enough_attempts(settings):
    settings.ALERT_ERROR_RATE = 0.5
    settings.ALERT_ERROR_RATE_WINDOW = 60
    settings.ALERT_ERROR_RATE_MIN_REQUESTS = 4
    now = time.time()
    circuit = Circuit()
    circuit.recent.extend([(now - 120, False)] * 10)  # outside the window
    circuit.recent.extend([(now - 5, True), (now - 4, False), (now - 3, False)])
    watch = UpstreamWatch()
    assert watch.events({"up/m": circuit}, now) == []  # 2 of 3: too few attempts
    circuit.recent.append((now - 2, True))
    (high,) = watch.events({"up/m": circuit}, now)  # 2 of 4
    assert high.kind is AlertKind.ERROR_RATE
    assert (high.payload["upstream"]["attempts"], high.payload["upstream"]["failures"]) == (4, 2)
    assert watch.events({"up/m": circuit}, now) == []  # still high: the same incident
    circuit.recent.extend([(now - 1, True)] * 4)  # 2 of 8: below
    assert watch.events({"up/m": circuit}, now) == []
    circuit.recent.extend([(now, False)] * 8)  # 10 of 16: over again
    (again,) = watch.events({"up/m": circuit}, now)
    assert again.kind is AlertKind.ERROR_RATE


@pytest.mark.django_db
def test_a_claim_is_won_once_per_budget_period_and_once_per_quiet_period_for_an_upstream(settings):
    """What lets several replicas look for the same alerts and send each once."""
    settings.ALERT_QUIET_SECONDS = 600
    moment = datetime.fromtimestamp(NOW, tz=UTC)
    (threshold,) = budget_events([(budget(), Decimal(8))], NOW)
    assert claim(threshold, moment) is True
    assert claim(threshold, moment + timedelta(days=3)) is False  # a budget threshold's key is claimed for good

    now = time.time()
    watch = UpstreamWatch()
    (opened,) = watch.events({"up/m": Circuit(failures=3, open_until=now + 30, opened_at=now)}, now)
    assert claim(opened, moment) is True
    assert claim(opened, moment) is False  # another replica saw the same opening
    assert claim(opened, moment + timedelta(seconds=599)) is False  # within the quiet period
    assert claim(opened, moment + timedelta(seconds=601)) is True
    row = Alert.objects.get(key="circuit_open:up/m")
    assert (row.times, row.raised_at) == (2, moment + timedelta(seconds=601))
    assert Alert.objects.count() == 2
