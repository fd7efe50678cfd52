"""Monthly partitions of the usage ledger on PostgreSQL, so that retention drops a month's table instead of
deleting its rows one by one (SQLite keeps the plain table; every function here does nothing there).

The ledger table is partitioned by range of `started_at`, one partition per UTC month, named
`usage_ledgerentry_pYYYY_MM`, plus a default partition that catches a row no month partition takes (a spool
replayed long after its exchange, a clock far off): an insert never fails for want of a partition.
`ensure_partitions` creates the current month's partition and the next MONTHS_AHEAD ones, and moves any row
the default partition holds into its month; the background worker runs it every hour, `manage.py prepare` and
the migration that partitions the table run it too. `drop_months_before` detaches and drops the month
partitions that end before a cut-off (usage.retention).

PostgreSQL asks that a partitioned table's primary key and unique constraints include the partition key: the
primary key is (id, started_at) and the exchange id's uniqueness is (exchange_id, started_at). Neither changes
what the ledger promises: ids come from one sequence, and a replayed exchange keeps its `started_at`.
Creating or dropping a partition takes a short exclusive lock on the table: each change runs under an advisory
lock (several replicas run the job) and a lock timeout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from usage.models import LedgerEntry

TABLE = LedgerEntry._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
MONTHS_AHEAD = 2
# A partition change waits for the table's running queries, and new queries queue behind it while it waits: it
# gives up after this long (and is tried again at the job's next run) rather than hold up the ledger's writers.
LOCK_TIMEOUT = "1s"
# pg_advisory_xact_lock's key for partition changes ("llmparts" in ASCII).
LOCK_KEY = 0x6C6C6D7061727473

_MONTH_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})_(\d{{2}})$")


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, moment: datetime) -> Month:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    @property
    def table(self) -> str:
        return f"{TABLE}_p{self.year:04d}_{self.month:02d}"


def is_partitioned() -> bool:
    """Whether the ledger table is partitioned here (PostgreSQL, after usage's migration 0008)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [TABLE],
        )
        return cursor.fetchone() is not None


def month_partitions() -> list[Month]:
    """The month partitions the ledger table has, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s AND pg_table_is_visible(p.oid)",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    return sorted(Month(int(m[1]), int(m[2])) for name in names if (m := _MONTH_NAME.match(name)))


def ensure_partitions(now: datetime | None = None) -> list[Month]:
    """Create the month partitions from this month to MONTHS_AHEAD ahead, and one for each month of the rows
    the default partition holds (moving those rows into it). Returns the months created."""
    if not is_partitioned():
        return []
    this_month = Month.of(now or datetime.now(UTC))
    wanted = [this_month]
    for _ in range(MONTHS_AHEAD):
        wanted.append(wanted[-1].next())
    created: list[Month] = []
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(cursor)
        cursor.execute(f"SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') FROM {DEFAULT_PARTITION}")
        stray = {Month(row[0].year, row[0].month) for row in cursor.fetchall()}
        have = set(month_partitions())
        for month in sorted(set(wanted) | stray):
            if month not in have:
                _create(cursor, month, move_from_default=month in stray)
                created.append(month)
    return created


def drop_months_before(cutoff: datetime) -> int:
    """Detach and drop every month partition that ends at or before `cutoff`; returns the rows they held."""
    if not is_partitioned():
        return 0
    dropped = 0
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(cursor)
        for month in month_partitions():
            if month.next().start > cutoff:
                break
            cursor.execute(f"SELECT count(*) FROM {month.table}")
            dropped += cursor.fetchone()[0]
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {month.table}")
            cursor.execute(f"DROP TABLE {month.table}")
    return dropped


def _lock(cursor: CursorWrapper) -> None:
    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def _create(cursor: CursorWrapper, month: Month, *, move_from_default: bool) -> None:
    execute = cursor.execute
    bounds = "FOR VALUES FROM (%s) TO (%s)"
    params = [month.start, month.next().start]
    if not move_from_default:
        execute(f"CREATE TABLE {month.table} PARTITION OF {TABLE} {bounds}", params)
        return
    # PostgreSQL refuses a new partition while the default one holds rows of its range: build the month's table
    # apart, move those rows into it, then attach it (its range is then free in the default partition).
    execute(f"CREATE TABLE {month.table} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE started_at >= %s AND started_at < %s RETURNING *) "
        f"INSERT INTO {month.table} SELECT * FROM moved",
        params,
    )
    execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {month.table} {bounds}", params)
