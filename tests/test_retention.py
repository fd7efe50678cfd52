"""Ledger retention (issue 15): old raw rows go, in batches, while the rollups keep what the dashboards show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from usage import retention
from usage.bulk import insert
from usage.models import LedgerEntry, UsageRollup
from usage.rollups import apply_rollups

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def entry(days_ago: float, number: int) -> LedgerEntry:
    started = NOW - timedelta(days=days_ago)
    return LedgerEntry(
        exchange_id=f"test-{number}",
        started_at=started,
        finished_at=started + timedelta(seconds=1),
        dialect="anthropic",
        endpoint="/v1/messages",
        operation="generate",
        requested_model="m",
        alias="m",
        upstream="up",
        upstream_model="real",
        outcome="ok",
        status=200,
        input_tokens=10,
        output_tokens=5,
        duration_ms=1000,
    )


@pytest.mark.django_db
def test_old_rows_are_deleted_in_batches_and_the_rollups_keep_the_history(monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 7)
    rows = [entry(100 + i / 10, i) for i in range(20)] + [entry(5, 100 + i) for i in range(3)]
    insert(LedgerEntry, rows)
    apply_rollups(rows)
    totals_before = sorted(UsageRollup.objects.values_list("requests", flat=True))

    assert retention.prune(timedelta(days=90), max_batches=2, now=NOW) == 14  # two batches of seven
    assert retention.prune(timedelta(days=90), now=NOW) == 6
    assert retention.prune(timedelta(days=90), now=NOW) == 0
    assert LedgerEntry.objects.count() == 3
    assert min(LedgerEntry.objects.values_list("started_at", flat=True)) == NOW - timedelta(days=5)
    assert sorted(UsageRollup.objects.values_list("requests", flat=True)) == totals_before


@pytest.mark.django_db
def test_the_command_takes_an_age_and_says_what_it_did():
    insert(LedgerEntry, [entry(400, 1), entry(1, 2)])
    out = StringIO()
    call_command("pruneledger", "--older-than", "52w", stdout=out)
    assert out.getvalue().strip() == "Deleted 1 ledger row(s) older than 52w."
    with pytest.raises(CommandError, match="such as 90d"):
        call_command("pruneledger", "--older-than", "ninety days")


@pytest.mark.django_db
def test_percentiles_past_the_retention_come_from_the_rollups(settings):
    from usage.queries import Filters, speed

    rows = [entry(100 + i / 10, i) for i in range(5)]
    insert(LedgerEntry, rows)
    apply_rollups(rows)
    old = Filters.from_params({"from": "2026-08-20T00:00", "to": "2026-08-30T00:00"}, now=NOW)
    exact = speed(old)
    assert exact and not exact[0].approximate
    settings.LEDGER_RETENTION_DAYS = 90
    retention.prune(timedelta(days=90), now=NOW)
    kept = speed(old)
    assert kept and kept[0].approximate and kept[0].count == 5
