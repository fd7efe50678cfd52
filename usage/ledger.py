"""The single write path of the usage ledger.

On the request path an exchange fills in an `ExchangeRecord` (plain attribute writes, no I/O) and ends with
`record_exchange(record)`, which only appends it to this process's queue. The routing layer's background
loop calls `write_pending()` on its database thread about twice a second, and once more when the server
stops gracefully: each call prices the queued records and inserts them with one bulk INSERT. A crash can
therefore lose the records of the last half second or so (and exchanges still in flight); nothing else.

`in_flight` holds the exchanges that have begun and not ended, for the live view and the metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import DataError, IntegrityError, transaction

from routing.runtime.database import run_db
from routing.runtime.worker import worker
from translation.errors import ApiError, ErrorKind
from translation.operation import Operation
from translation.usage import Usage
from usage import metrics
from usage.models import LedgerEntry, Outcome
from usage.pricing import PriceBook
from usage.rollups import apply_rollups

logger = logging.getLogger(__name__)

# Rows kept in memory while the database is unreachable; beyond this the oldest are dropped (and logged).
MAX_PENDING = 100_000
ERROR_MESSAGE_MAX = 500
WARNINGS_MAX = 500
RECENT_MAX = 200

_ids = itertools.count(1)
_stopping = False
_STOPPING_MESSAGE = "The server shut down before the answer was complete"
# Client mistakes an upstream reported: the request was wrong, not the upstream.
_CLIENT_STATUSES = frozenset({400, 404, 409, 413, 415, 422})


@dataclass(slots=True, eq=False)
class ExchangeRecord:
    """What is known about one exchange so far; filled in by the routing layer as the exchange goes."""

    dialect: str
    endpoint: str
    operation: Operation = Operation.GENERATE
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    id: str = field(default_factory=lambda: f"{os.getpid()}-{next(_ids)}")
    client_program: str = ""
    client_version: str = ""
    client_session: str = ""
    key_id: int | None = None
    user_id: int | None = None
    username: str = ""
    requested_model: str = ""
    alias: str = ""
    upstream: str = ""
    upstream_model: str = ""
    upstream_base_url: str = ""
    upstream_format: str = ""
    upstream_request_id: str = ""
    stream: bool = False
    usage: Usage = field(default_factory=Usage)
    usage_partial: bool = False
    answered: bool = False  # the whole answer reached the client; leaving after that is not a cancellation
    first_output: float | None = None
    finished: float | None = None
    outcome: str = Outcome.OK
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    warnings: list[str] = field(default_factory=list)

    def output_started(self) -> None:
        """The first generated content reached the client (time to first token)."""
        if self.first_output is None:
            self.first_output = time.perf_counter()

    def add_usage(self, usage: Usage | None) -> None:
        """A usage report from the upstream; reports are cumulative, so later numbers win."""
        if usage is not None:
            self.usage = self.usage.updated(usage)

    def failed(self, error: ApiError, status: int, *, from_upstream: bool, partial: bool = False) -> None:
        self.outcome = _outcome(error, status, from_upstream)
        self.status = status
        self.error_type = error.kind.value
        self.error_message = error.message[:ERROR_MESSAGE_MAX]
        self.usage_partial = self.usage_partial or partial

    def cancelled(self) -> None:
        """The client went away, or the server is stopping, before the exchange ended."""
        if self.finished is not None or self.answered:
            return  # already recorded, or complete before the client left
        self.outcome = Outcome.CANCELLED
        self.usage_partial = self.usage_partial or self.stream
        self.error_type = ""
        self.error_message = _STOPPING_MESSAGE if _stopping else "The client went away before the answer was complete"

    @property
    def duration(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


def _outcome(error: ApiError, status: int, from_upstream: bool) -> str:
    if error.kind is ErrorKind.TIMEOUT:
        return Outcome.TIMEOUT
    if not from_upstream:
        return Outcome.UPSTREAM_ERROR if status >= 500 else Outcome.CLIENT_ERROR
    return Outcome.CLIENT_ERROR if status in _CLIENT_STATUSES else Outcome.UPSTREAM_ERROR


in_flight: dict[str, ExchangeRecord] = {}
# The latest finished exchanges of this process, newest last (the live view shows them as they end).
recent: deque[ExchangeRecord] = deque(maxlen=RECENT_MAX)
_pending: deque[ExchangeRecord] = deque(maxlen=MAX_PENDING)
# Called on the database thread with each batch of rows once committed (priced): routing.access.budgets keeps its
# in-memory spend current this way. A hook that fails is logged; it cannot undo or hold up the write.
after_write: list[Callable[[Sequence[LedgerEntry]], None]] = []


def begin_exchange(record: ExchangeRecord) -> None:
    in_flight[record.id] = record
    metrics.exchange_started(record)


def record_exchange(record: ExchangeRecord) -> None:
    """The one way an exchange reaches the ledger: queues the finished record (no I/O here)."""
    if record.finished is not None:
        return  # already recorded
    record.finished = time.perf_counter()
    in_flight.pop(record.id, None)
    if len(_pending) == MAX_PENDING:
        logger.error("usage ledger queue full (database unreachable?): dropping the oldest record")
    _pending.append(record)
    recent.append(record)
    metrics.exchange_finished(record)


def server_stopping() -> None:
    """From now on, an exchange that ends early was cut off by the server stopping, not by its client."""
    global _stopping
    _stopping = True


def interrupt_in_flight() -> None:
    """The server is stopping with exchanges still running: record each with what it got so far."""
    server_stopping()
    for record in list(in_flight.values()):
        record.cancelled()
        record_exchange(record)


def pending_count() -> int:
    return len(_pending)


def write_pending() -> int:
    """Price and insert every queued record (runs on the database thread). Returns the number written.

    If the database cannot be reached the records go back to the front of the queue for the next call; a
    row the database refuses is logged and dropped rather than holding up every row behind it.
    """
    batch = list(_pending)
    if not batch:
        return 0
    for _ in batch:
        _pending.popleft()
    try:
        rows = _rows(batch)
        with transaction.atomic():
            LedgerEntry.objects.bulk_create(rows)
            apply_rollups(rows)
    except (IntegrityError, DataError):
        rows = _write_one_by_one(rows)
    except Exception:
        _pending.extendleft(reversed(batch))
        raise
    for row in rows:
        if row.cost_usd:
            metrics.cost_recorded(row.alias, row.upstream, row.upstream_model, row.cost_usd)
    for hook in after_write:
        try:
            hook(rows)
        except Exception:
            logger.exception("usage ledger hook %r failed", hook)
    return len(rows)


def _rows(batch: list[ExchangeRecord]) -> list[LedgerEntry]:
    prices = PriceBook.load()
    rows = [_row(record, prices) for record in batch]
    # A key or user deleted since its exchange ran keeps its rows, without the reference (as SET_NULL would).
    for reference in ("key_id", "user_id"):
        ids = {getattr(row, reference) for row in rows} - {None}
        if not ids:
            continue
        related = LedgerEntry._meta.get_field(reference.removesuffix("_id")).related_model
        assert related is not None
        existing = set(related._default_manager.filter(pk__in=ids).values_list("pk", flat=True))
        for row in rows:
            if getattr(row, reference) not in existing:
                setattr(row, reference, None)
    return rows


def _write_one_by_one(rows: list[LedgerEntry]) -> list[LedgerEntry]:
    written = []
    for row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
                apply_rollups([row])
            written.append(row)
        except (IntegrityError, DataError):
            logger.exception("usage ledger row refused by the database and dropped: %s", row.__dict__)
    return written


def _row(record: ExchangeRecord, prices: PriceBook) -> LedgerEntry:
    usage = record.usage
    finished = record.finished if record.finished is not None else time.perf_counter()
    duration = finished - record.started
    ttft = record.first_output - record.started if record.first_output is not None else None
    return LedgerEntry(
        started_at=datetime.fromtimestamp(record.started_at, tz=UTC),
        finished_at=datetime.fromtimestamp(record.started_at + duration, tz=UTC),
        key_id=record.key_id,
        user_id=record.user_id,
        client_program=record.client_program,
        client_version=record.client_version,
        client_session=record.client_session,
        dialect=record.dialect,
        endpoint=record.endpoint[:200],
        operation=record.operation,
        stream=record.stream,
        requested_model=record.requested_model[:200],
        alias=record.alias[:200],
        upstream=record.upstream,
        upstream_model=record.upstream_model[:200],
        upstream_request_id=record.upstream_request_id[:200],
        outcome=record.outcome,
        status=record.status,
        error_type=record.error_type,
        error_message=record.error_message,
        warnings=", ".join(dict.fromkeys(record.warnings))[:WARNINGS_MAX],
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_partial=record.usage_partial,
        ttft_ms=round(ttft * 1000) if ttft is not None else None,
        duration_ms=round(duration * 1000),
        tokens_per_second=tokens_per_second(usage.output_tokens, ttft, duration),
        **_price_fields(record, prices),
    )


def _price_fields(record: ExchangeRecord, prices: PriceBook) -> dict[str, Any]:
    if record.operation == Operation.COUNT_TOKENS:
        return {"cost_usd": Decimal(0), "price_source": "not billed: token count"}
    if not record.upstream_model:
        return {}  # refused before a model was resolved: nothing ran
    quote = prices.quote(
        record.usage,
        model=record.upstream_model,
        upstream=record.upstream,
        base_url=record.upstream_base_url,
        upstream_format=record.upstream_format,
    )
    if quote is None:
        return {}  # unpriced: cost stays None
    return {
        "cost_usd": quote.cost_usd,
        "price_source": quote.source[:200],
        "price_input": quote.input_per_mtok,
        "price_output": quote.output_per_mtok,
        "price_cache_read": quote.cache_read_per_mtok,
        "price_cache_write": quote.cache_write_per_mtok,
    }


def tokens_per_second(output_tokens: int | None, ttft: float | None, duration: float) -> float | None:
    """Output speed over the time spent generating: from the first token to the end (the whole exchange when
    nothing was streamed). None when the upstream reported no output count."""
    if not output_tokens:
        return None
    generating = duration - ttft if ttft is not None and duration - ttft > 0.001 else duration
    return round(output_tokens / generating, 2) if generating > 0 else None


# --- the ledger's background jobs (routing.runtime.worker) ------------------------------------------------

# How long a stopping server lets running exchanges finish before recording them as interrupted.
SHUTDOWN_GRACE_SECONDS = 2.0


async def write_queued() -> None:
    """Write the exchanges finished since the last pass (the records stay queued if the write fails)."""
    if pending_count():
        await run_db(write_pending)


async def write_at_stop() -> None:
    """Let the exchanges the stopping server has just cancelled record themselves, then write everything."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    interrupt_in_flight()
    await write_queued()


worker.on_stopping(server_stopping)
worker.register("usage ledger", write_queued, at_stop=write_at_stop)
