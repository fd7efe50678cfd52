"""The ledger's month partitions on PostgreSQL (issue 15): rows land in their month, a row no month takes waits in
the default partition until its month is made, and retention drops whole months instead of deleting rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from usage import partitions, retention
from usage.bulk import insert
from usage.models import LedgerEntry, UsageRollup
from usage.partitions import Month
from usage.rollups import apply_rollups

from .test_retention import entry

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="PostgreSQL only: on SQLite the ledger is one plain table"
    ),
]


def rows_per_table() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text, count(*) FROM {partitions.TABLE} GROUP BY 1")
        return dict(cursor.fetchall())


def table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def test_rows_land_in_their_month_and_strays_move_out_of_the_default_partition():
    assert partitions.is_partitioned()
    created = partitions.ensure_partitions(now=NOW)
    assert {Month(2026, 12), Month(2027, 1), Month(2027, 2)} <= set(partitions.month_partitions())
    assert all(month >= Month(2026, 12) for month in created)

    # Two rows of this month, three of a year ago (a spool replayed late): those have no month yet.
    rows = [entry(1, 1), entry(2, 2)] + [entry(365 + i, 10 + i) for i in range(3)]
    insert(LedgerEntry, rows)
    ids_before = sorted(LedgerEntry.objects.values_list("id", flat=True))
    assert rows_per_table() == {"usage_ledgerentry_p2026_12": 2, partitions.DEFAULT_PARTITION: 3}

    assert partitions.ensure_partitions(now=NOW) == [Month(2025, 12)]
    assert rows_per_table() == {"usage_ledgerentry_p2026_12": 2, "usage_ledgerentry_p2025_12": 3}
    assert sorted(LedgerEntry.objects.values_list("id", flat=True)) == ids_before
    assert partitions.ensure_partitions(now=NOW) == []  # nothing left to do

    # Ids keep coming from one sequence, whatever the partition.
    insert(LedgerEntry, [entry(0.5, 20)])
    assert max(LedgerEntry.objects.values_list("id", flat=True)) > max(ids_before)


def test_retention_drops_whole_months_and_deletes_the_rest_in_batches(monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 2)
    # August (dropped whole), September both sides of the cut-off (5 September), and this month.
    rows = [entry(100 + i, i) for i in range(4)] + [entry(93 - i / 2, 10 + i) for i in range(5)]
    rows += [entry(85, 20), entry(3, 21)]
    insert(LedgerEntry, rows)
    apply_rollups(rows)
    partitions.ensure_partitions(now=NOW)
    assert {Month(2026, 8), Month(2026, 9)} <= set(partitions.month_partitions())
    requests_before = sorted(UsageRollup.objects.values_list("requests", flat=True))

    cutoff = NOW - timedelta(days=90)
    early_september = LedgerEntry.objects.filter(started_at__gte=datetime(2026, 9, 1, tzinfo=UTC))
    expected_batched = early_september.filter(started_at__lt=cutoff).count()
    assert expected_batched == 5

    assert retention.prune(timedelta(days=90), now=NOW) == 4 + expected_batched
    assert not table_exists("usage_ledgerentry_p2026_08")
    assert table_exists("usage_ledgerentry_p2026_09")
    assert LedgerEntry.objects.count() == 2
    assert min(LedgerEntry.objects.values_list("started_at", flat=True)) >= cutoff
    assert sorted(UsageRollup.objects.values_list("requests", flat=True)) == requests_before


def test_prepare_makes_the_coming_months():
    with connection.cursor() as cursor:
        for month in partitions.month_partitions():
            cursor.execute(f"ALTER TABLE {partitions.TABLE} DETACH PARTITION {month.table}")
            cursor.execute(f"DROP TABLE {month.table}")
    call_command("prepare", verbosity=0)
    this_month = Month.of(datetime.now(UTC))
    assert partitions.month_partitions() == [this_month, this_month.next(), this_month.next().next()]
