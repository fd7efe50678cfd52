"""Rollups of the ledger: what the dashboards read instead of a million rows.

`apply_rollups(rows)` adds a batch of new ledger rows to `UsageRollup` (sums per period, user, key, alias, upstream
model, client program, upstream, outcome and, for exchanges that matched no route, the model asked for) and
`LatencyRollup` (speed histograms of the exchanges that worked, per period, user, key, alias, upstream model, client
program, upstream and metric), each row both to its hour and to its UTC day: every filter of the dashboard is a
column of both. The ledger's write path calls it in the transaction that inserts the
rows, so the rollups always agree with the ledger. The groups a batch touches are written with one
`INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n` (SQLite ≥ 3.24 and PostgreSQL) per table, in a fixed
order so that two processes writing at once never deadlock on PostgreSQL.

The histograms use quarter-octave buckets: bucket 0 holds values below the metric's base, bucket i ≥ 1 holds
[base·2^((i-1)/4), base·2^(i/4)), the last one everything above. A percentile read from them lies in the bucket
of the exact value (interpolated inside it), so it is off by less than one bucket's width, a factor 2^(1/4)
(19 %), and usually by much less.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connections, router, transaction

from usage.models import LATENCY_BUCKETS, LatencyRollup, LedgerEntry, Outcome, Period, UsageRollup

Metric = LatencyRollup.Metric

# The smallest value each metric's bucket 1 starts at (ms, ms, tokens/s).
BASE: dict[int, float] = {Metric.DURATION: 1.0, Metric.TTFT: 1.0, Metric.TOKENS_PER_SECOND: 0.01}
BUCKET_COLUMNS = [f"b{i}" for i in range(LATENCY_BUCKETS)]
_STEPS_PER_OCTAVE = 4

USAGE_KEY = (
    "hours",
    "period",
    "user_id",
    "key_id",
    "alias",
    "upstream_model",
    "client_program",
    "upstream",
    "outcome",
    "unrouted_model",
)
USAGE_SUMS = (
    "requests",
    "errors",
    "client_errors",
    "upstream_errors",
    "timeouts",
    "cancelled",
    "no_usage",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced",
)
LATENCY_KEY = (*USAGE_KEY[:8], "metric")  # the same names as the usage rollups' up to the upstream
LATENCY_SUMS = ("count", *BUCKET_COLUMNS)
# Not errors: the exchange worked, or the client itself went away.
NOT_ERRORS = frozenset({Outcome.OK, Outcome.CANCELLED})
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def bucket_of(value: float, metric: int) -> int:
    base = BASE[metric]
    if value < base:
        return 0
    return min(LATENCY_BUCKETS - 1, 1 + math.floor(_STEPS_PER_OCTAVE * math.log2(value / base)))


def bucket_bounds(index: int, metric: int) -> tuple[float, float]:
    """[low, high) of a bucket; the last bucket's high is infinite."""
    base = BASE[metric]
    if index == 0:
        return 0.0, base
    low = base * 2 ** ((index - 1) / _STEPS_PER_OCTAVE)
    high = math.inf if index == LATENCY_BUCKETS - 1 else base * 2 ** (index / _STEPS_PER_OCTAVE)
    return low, high


def hour_of(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(slots=True)
class _UsageSums:
    counts: list[int] = field(default_factory=lambda: [0] * (len(USAGE_SUMS) - 2))
    cost: Decimal = Decimal(0)
    unpriced: int = 0


def unrouted_model(row: LedgerEntry) -> str:
    """The model a client asked for, when it matched no route (the row names no alias and no upstream model)."""
    return "" if row.alias or row.upstream_model else row.requested_model


def _row_counts(row: LedgerEntry) -> list[int]:
    """One row's contribution to the counting sums (USAGE_SUMS without the cost and the unpriced count)."""
    outcome = row.outcome
    tokens = [getattr(row, name) for name in _TOKEN_FIELDS]
    return [
        1,
        outcome not in NOT_ERRORS,
        outcome == Outcome.CLIENT_ERROR,
        outcome == Outcome.UPSTREAM_ERROR,
        outcome == Outcome.TIMEOUT,
        outcome == Outcome.CANCELLED,
        all(value is None for value in tokens),
        *(value or 0 for value in tokens),
    ]


def _usage_groups(
    rows: Iterable[LedgerEntry],
) -> tuple[dict[tuple[Any, ...], _UsageSums], dict[tuple[Any, ...], list[int]]]:
    usage: dict[tuple[Any, ...], _UsageSums] = defaultdict(_UsageSums)
    latency: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        hour = hour_of(row.started_at)
        periods = ((int(Period.HOUR), hour), (int(Period.DAY), hour.replace(hour=0)))
        names = (row.user_id or 0, row.key_id or 0, row.alias, row.upstream_model, row.client_program, row.upstream)
        counts = _row_counts(row)
        # Speed is that of exchanges that worked: a refusal's 8 ms or a failure's 0 ms is not how fast a model is
        # (failures are counted apart, in the usage sums).
        buckets = [
            (int(metric), bucket_of(value, metric))
            for metric, value in (
                (Metric.DURATION, row.duration_ms),
                (Metric.TTFT, row.ttft_ms),
                (Metric.TOKENS_PER_SECOND, row.tokens_per_second),
            )
            if value is not None and row.outcome == Outcome.OK
        ]
        for hours, period in periods:
            sums = usage[(hours, period, *names, row.outcome, unrouted_model(row))]
            sums.counts = [a + b for a, b in zip(sums.counts, counts, strict=True)]
            if row.cost_usd is None:
                sums.unpriced += 1
            else:
                sums.cost += Decimal(row.cost_usd)
            for metric, bucket in buckets:
                key = (hours, period, *names, metric)
                histogram = latency.get(key)
                if histogram is None:
                    histogram = latency[key] = [0] * (LATENCY_BUCKETS + 1)
                histogram[0] += 1
                histogram[1 + bucket] += 1
    return usage, latency


# Groups per statement (keeps a statement well under SQLite's 1 MB limit on SQL text).
ROWS_PER_STATEMENT = 500


def _upsert(
    cursor: Any, q: Callable[[str], str], table: str, key: Sequence[str], sums: Sequence[str], rows: list[list[Any]]
) -> None:
    """Many groups per statement: one round trip for a batch instead of one per group. A statement never names
    one group twice (they were summed before), which `ON CONFLICT DO UPDATE` requires.

    Integers (most of the values: counts, ids, histogram buckets) are written into the SQL text; only the others
    (times, names, costs) are bound parameters. psycopg rewrites every placeholder of a statement this long on
    each call (its cache takes short statements only), which cost 50-100 ms for a 50-row batch with a
    placeholder per value; `str(int(...))` can only produce digits and a sign."""
    columns = [*key, *sums]
    updates = ", ".join(f"{q(name)} = {q(table)}.{q(name)} + excluded.{q(name)}" for name in sums)
    head = f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES "
    tail = f" ON CONFLICT ({', '.join(q(c) for c in key)}) DO UPDATE SET {updates}"
    for first in range(0, len(rows), ROWS_PER_STATEMENT):
        values: list[str] = []
        params: list[Any] = []
        for row in rows[first : first + ROWS_PER_STATEMENT]:
            cells = []
            for value in row:
                if isinstance(value, int):
                    cells.append(str(int(value)))
                else:
                    cells.append("%s")
                    params.append(value)
            values.append(f"({', '.join(cells)})")
        cursor.execute(head + ", ".join(values) + tail, params)


def apply_rollups(rows: Iterable[LedgerEntry], using: str | None = None) -> None:
    """Add new ledger rows to the hourly rollups. Call it in the transaction that inserts the rows."""
    usage, latency = _usage_groups(rows)
    if not usage:
        return
    alias = using or router.db_for_write(LedgerEntry)
    connection = connections[alias]
    ops = connection.ops
    cost_field = UsageRollup._meta.get_field("cost_usd")

    def when(period: object) -> object:
        assert isinstance(period, datetime)
        return ops.adapt_datetimefield_value(period)

    usage_params: list[list[Any]] = []
    for group in sorted(usage, key=_sort_key):
        sums = usage[group]
        cost = ops.adapt_decimalfield_value(sums.cost, cost_field.max_digits, cost_field.decimal_places)
        usage_params.append([group[0], when(group[1]), *group[2:], *sums.counts, cost, sums.unpriced])
    latency_params: list[list[Any]] = [
        [group[0], when(group[1]), *group[2:], *latency[group]] for group in sorted(latency, key=_sort_key)
    ]
    with transaction.atomic(using=alias, savepoint=False), connection.cursor() as cursor:
        _upsert(cursor, ops.quote_name, UsageRollup._meta.db_table, USAGE_KEY, USAGE_SUMS, usage_params)
        _upsert(cursor, ops.quote_name, LatencyRollup._meta.db_table, LATENCY_KEY, LATENCY_SUMS, latency_params)


def _sort_key(group: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(part) for part in group)


ROLLUP_SOURCE_FIELDS = (
    "started_at",
    "user_id",
    "key_id",
    "alias",
    "upstream_model",
    "client_program",
    "requested_model",
    "upstream",
    "outcome",
    *_TOKEN_FIELDS,
    "cost_usd",
    "duration_ms",
    "ttft_ms",
    "tokens_per_second",
)


def rebuild_rollups(using: str | None = None, chunk_size: int = 5000) -> int:
    """Recompute every rollup from the ledger (after rows were deleted or edited outside the write path)."""
    alias = using or router.db_for_write(LedgerEntry)
    count = 0
    with transaction.atomic(using=alias):
        UsageRollup.objects.using(alias).all().delete()
        LatencyRollup.objects.using(alias).all().delete()
        batch: list[LedgerEntry] = []
        rows = LedgerEntry.objects.using(alias).order_by().only(*ROLLUP_SOURCE_FIELDS)
        for row in rows.iterator(chunk_size=chunk_size):
            batch.append(row)
            if len(batch) == chunk_size:
                apply_rollups(batch, using=alias)
                count += len(batch)
                batch = []
        apply_rollups(batch, using=alias)
        count += len(batch)
    return count
