"""Ledger retention: raw rows older than a cut-off are deleted, while the hourly and daily rollups (usage.rollups),
which the dashboards and budgets read, keep the history.

On PostgreSQL the months that end before the cut-off are dropped whole (usage.partitions); the rest, and every
row on SQLite, go in small batches: one short transaction on the oldest rows (by the `started_at` index), so
pruning never holds the table for long. The background worker prunes a few batches a minute when
`LEDGER_RETENTION_DAYS` is set, and `manage.py pruneledger` does it all at once. Several replicas pruning at the
same time only find less to delete.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from routing.runtime.database import run_db
from routing.runtime.worker import worker
from usage import partitions
from usage.models import LedgerEntry

BATCH_ROWS = 5000
# The background job's share: at most this many batches per run, so the database thread stays free for the
# ledger writes and the configuration refresh between runs.
BATCHES_PER_RUN = 10
RUN_EVERY_SECONDS = 60.0

_AGE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w` as a timedelta; ValueError otherwise."""
    match = _AGE.match(text)
    if match is None or int(match[1]) <= 0:
        raise ValueError(f"{text!r}: give a positive number of hours, days or weeks, such as 90d, 12h or 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def prune(older_than: timedelta, *, max_batches: int | None = None, now: datetime | None = None) -> int:
    """Delete the ledger rows that started before `now - older_than`, oldest first, BATCH_ROWS at a time (at most
    `max_batches` batches). Returns how many were deleted (synchronous ORM: the database thread, or a command)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    dropped = partitions.drop_months_before(cutoff)
    oldest = LedgerEntry.objects.filter(started_at__lt=cutoff).order_by("started_at")
    return dropped + delete_oldest(oldest, BATCH_ROWS, max_batches)


def delete_oldest(oldest_first: QuerySet[Any], batch: int, max_batches: int | None) -> int:
    """Delete the rows of `oldest_first` (ordered oldest first by an indexed column), `batch` rows to a short
    transaction, at most `max_batches` of them (None: all). Returns how many were deleted."""
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(oldest_first.values_list("id", flat=True)[:batch])
        if not ids:
            break
        with transaction.atomic():
            oldest_first.model._default_manager.filter(id__in=ids).delete()
        deleted += len(ids)
        batches += 1
    return deleted


async def prune_in_background() -> None:
    days = settings.LEDGER_RETENTION_DAYS
    if days > 0:
        await run_db(lambda: prune(timedelta(days=days), max_batches=BATCHES_PER_RUN))


async def ensure_partitions_in_background() -> None:
    await run_db(partitions.ensure_partitions)


worker.register("ledger retention", prune_in_background, every=lambda: RUN_EVERY_SECONDS)
# Months are created MONTHS_AHEAD ahead: an hourly look (and one at each start) is plenty.
worker.register("ledger partitions", ensure_partitions_in_background, every=lambda: 3600.0)
