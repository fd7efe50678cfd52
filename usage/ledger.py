"""The single write path of the usage ledger.

On the request path an exchange fills in an `ExchangeRecord` (plain attribute writes, no I/O) and ends with
`record_exchange(record)`, which turns it into one JSON line appended to this process's spool file (one write
system call: `usage.spool`), or to an in-memory queue when there is no spool. The ledger's job on the
process's background worker calls `write_pending()` on the database thread every pass, and once more when the
server stops gracefully: it fsyncs the spool, prices the spooled and queued records and inserts them in
batches. A crash loses only the exchanges still in flight; a database outage loses nothing (up to
LEDGER_SPOOL_MAX_BYTES of rows on disk, then `MAX_PENDING` in memory).

Only exchanges of a known proxy key become rows: a request refused for a missing or unknown key, or one
forwarded with the client's own upstream key, is counted in the metrics and nowhere else.

One bad row never stops the ledger: usage numbers are coerced when decoded (`translation.usage.count`) and
again when the row is built; a row the database or the rollups refuse for any reason (while the database
answers) is dropped with one log line, and the rows behind it are written. Only an unreachable database keeps
rows waiting.

`in_flight` holds the exchanges that have begun and not ended, for the live view and the metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction

from routing.runtime.database import run_db
from routing.runtime.worker import worker
from translation.errors import ApiError, ErrorKind
from translation.operation import Operation
from translation.usage import Usage, count
from usage import bulk, metrics, spool, tracing
from usage.models import LedgerEntry, Outcome
from usage.pricing import PriceBook
from usage.rollups import apply_rollups

logger = logging.getLogger(__name__)

# Rows kept in memory while the database is unreachable; beyond this the oldest are dropped (and logged).
MAX_PENDING = 100_000
ERROR_MESSAGE_MAX = 500
WARNINGS_MAX = 500
RECENT_MAX = 200
# Rows per INSERT (and per rollup statement group) when writing.
BATCH_ROWS = 500
# How often a serving process looks for the spools of processes that died while it runs (it adopts them at its
# first pass anyway).
ADOPT_EVERY_SECONDS = 60.0

# Exchange ids are unique across processes and restarts (a process token, then a counter): the ledger's
# `exchange_id` uses them to write a replayed row once.
_PROCESS = secrets.token_hex(6)
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
    id: str = field(default_factory=lambda: f"{_PROCESS}-{next(_ids)}")
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
    scenario: str = ""  # the alias's scenario target that served it (routing.config.scenarios), "" for none
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
    attempts: int = 1  # upstream attempts made (routing.dataplane.failover); the last one served
    fallback: bool = False  # served by another target than the first choice (a failure, or a resting target)
    # The attempts that failed before the one that served: {target, status (0: no answer), error, message}.
    failed_attempts: list[dict[str, Any]] = field(default_factory=list)

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
# Finished exchanges (as `facts` dicts) waiting in memory: those the spool did not take (no spool, spool full).
_pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
# Called on the database thread with each batch of rows once committed (priced): routing.access.budgets keeps its
# in-memory spend current this way. A hook that fails is logged; it cannot undo or hold up the write.
after_write: list[Callable[[Sequence[LedgerEntry]], None]] = []


class DatabaseUnavailable(Exception):
    """The database did not answer: the rows stay (spooled or queued) for the next pass."""


def begin_exchange(record: ExchangeRecord) -> None:
    in_flight[record.id] = record
    metrics.exchange_started(record)


def record_exchange(record: ExchangeRecord) -> None:
    """The one way an exchange ends: counted in the metrics, and queued as a ledger row when it belongs to a
    known key (no database I/O here; one write system call to the spool). Never raises: the caller's
    exchange is over, and what follows it (releasing its rate-limit slot) must run."""
    if record.finished is not None:
        return  # already recorded
    record.finished = time.perf_counter()
    in_flight.pop(record.id, None)
    recent.append(record)
    try:
        metrics.exchange_finished(record)
    except Exception:
        logger.exception("metrics of exchange %s could not be counted", record.id)
    if record.key_id is None:
        return  # anonymous or unauthenticated: metrics only
    try:
        facts = record_facts(record)
        current = spool.current()
        if current is not None and current.append(_line(facts)):
            return
    except Exception:
        logger.exception("usage ledger row of exchange %s could not be serialised and is dropped", record.id)
        return
    if len(_pending) == MAX_PENDING:
        logger.error("usage ledger queue full (database unreachable?): dropping the oldest record")
    _pending.append(facts)


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
    """Rows waiting to be written (an adopted spool segment counts as one until it is read)."""
    current = spool.current()
    return len(_pending) + (current.unwritten if current is not None else 0)


def _line(facts: dict[str, Any]) -> bytes:
    return (json.dumps(facts, separators=(",", ":"), default=str) + "\n").encode()


def record_facts(record: ExchangeRecord) -> dict[str, Any]:
    """What the row needs, as JSON-safe values (times as wall-clock seconds; perf_counter means nothing to
    another process)."""
    finished = record.finished if record.finished is not None else time.perf_counter()
    usage = record.usage
    return {
        "id": record.id,
        "started_at": record.started_at,
        "duration": finished - record.started,
        "ttft": record.first_output - record.started if record.first_output is not None else None,
        "key_id": record.key_id,
        "user_id": record.user_id,
        "client_program": record.client_program,
        "client_version": record.client_version,
        "client_session": record.client_session,
        "dialect": record.dialect,
        "endpoint": record.endpoint,
        "operation": str(record.operation),
        "stream": record.stream,
        "requested_model": record.requested_model,
        "alias": record.alias,
        "upstream": record.upstream,
        "upstream_model": record.upstream_model,
        "scenario": record.scenario,
        "attempts": record.attempts,
        "fallback": record.fallback,
        "failed_attempts": record.failed_attempts,
        "upstream_base_url": record.upstream_base_url,
        "upstream_format": record.upstream_format,
        "upstream_request_id": record.upstream_request_id,
        "outcome": str(record.outcome),
        "status": record.status,
        "error_type": record.error_type,
        "error_message": record.error_message,
        "warnings": ", ".join(dict.fromkeys(record.warnings)),
        "usage": [
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        ],
        "usage_partial": record.usage_partial,
    }


def write_pending() -> int:
    """Write every waiting row (database thread): fsync the spool, then the rows queued in memory, then the
    closed spool segments, oldest first, each deleted once its rows are in. Returns the number of rows written.

    Raises `DatabaseUnavailable` (or the database's own error) when the database cannot be reached: what was
    not written stays for the next call. A row refused while the database answers is dropped (one log line).
    """
    current = spool.current()
    if current is not None:
        current.sync()  # first: the spooled lines reach the disk even while the database is down
    written = 0
    if _pending:
        batch = list(_pending)
        for _ in batch:
            _pending.popleft()
        try:
            for first in range(0, len(batch), BATCH_ROWS):
                written += _write_facts(batch[first : first + BATCH_ROWS])
        except Exception:
            # Everything goes back: the rows already committed are recognised by their exchange id.
            _pending.extendleft(reversed(batch))
            raise
    if current is not None:
        written += _write_segments(current)
        # The segments an outage left behind are in: the current one (kept open meanwhile) closes and goes too.
        current.sync()
        written += _write_segments(current)
    return written


def _write_segments(current: spool.Spool) -> int:
    written = 0
    for segment in current.closed_segments():
        lines = 0
        chunk: list[dict[str, Any]] = []
        for raw in spool.read_lines(segment):
            lines += 1
            try:
                chunk.append(json.loads(raw))
            except ValueError:
                logger.error("usage ledger spool line unreadable, dropped: %r", raw[:200])
            if len(chunk) == BATCH_ROWS:
                written += _write_facts(chunk)
                chunk = []
        if chunk:
            written += _write_facts(chunk)
        current.finished(segment, lines)
    return written


def _write_facts(batch: list[dict[str, Any]]) -> int:
    """Insert the rows of `batch` not already in the ledger, with their rollups, in one transaction; if that
    fails while the database answers, row by row, dropping the rows it refuses."""
    prices = PriceBook.load()
    rows: list[LedgerEntry] = []
    for facts in batch:
        try:
            rows.append(_row(facts, prices))
        except Exception as exc:
            logger.error("usage ledger row dropped, unreadable (%s: %s): %.300r", type(exc).__name__, exc, facts)
    rows = _new_rows(rows)
    if not rows:
        return 0
    _unlink_deleted(rows)
    try:
        with transaction.atomic():
            bulk.insert(LedgerEntry, rows)
            apply_rollups(rows)
    except Exception as exc:
        _check_refusal(exc)
        rows = _write_one_by_one(rows)
    _after(rows)
    # The exchanges' spans (when traces are on): from the committed rows, with the facts a row does not keep.
    tracing.export(rows, {str(facts.get("id")): facts for facts in batch})
    return len(rows)


def _new_rows(rows: list[LedgerEntry]) -> list[LedgerEntry]:
    """Drop the rows the ledger already has (replayed from a spool segment whose deletion a crash prevented),
    and repeats of one exchange within the batch."""
    ids = [row.exchange_id for row in rows]
    # A replayed row keeps its start time: the time range lets a partitioned ledger look in its months only.
    started = [row.started_at for row in rows]
    same = LedgerEntry.objects.filter(exchange_id__in=ids, started_at__range=(min(started), max(started)))
    existing = set(same.values_list("exchange_id", flat=True))
    fresh = []
    for row in rows:
        if row.exchange_id not in existing:
            existing.add(row.exchange_id)
            fresh.append(row)
    return fresh


def _unlink_deleted(rows: list[LedgerEntry]) -> None:
    """A key or user deleted since its exchange ran keeps its rows, without the reference (as SET_NULL would)."""
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


def _check_refusal(exc: Exception) -> None:
    """Return if the failed write `exc` is a refusal of the rows (they are then written one by one, the refused
    ones dropped); raise `DatabaseUnavailable` if it is the database's state, which passes (the rows wait).

    The rows' fault: a constraint or a value the database refuses (IntegrityError, DataError), or one the
    driver or the rollups could not take (a Python error). The database's state: any other database error
    (unreachable, locked, read-only, disk full, a deadlock, a missing table), or a database that does not
    answer a trivial query."""
    if isinstance(exc, DatabaseError) and not isinstance(exc, IntegrityError | DataError):
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as unavailable:
        raise DatabaseUnavailable(f"{type(unavailable).__name__}: {unavailable}") from exc


def _write_one_by_one(rows: list[LedgerEntry]) -> list[LedgerEntry]:
    written = []
    for row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
                apply_rollups([row])
            written.append(row)
        except Exception as exc:
            _check_refusal(exc)
            logger.error(
                "usage ledger row dropped, refused by the database (%s: %s): exchange %s %s %s tokens %s/%s",
                type(exc).__name__,
                str(exc)[:300],
                row.exchange_id,
                row.endpoint,
                row.outcome,
                row.input_tokens,
                row.output_tokens,
            )
    return written


def _after(rows: Iterable[LedgerEntry]) -> None:
    rows = list(rows)
    for row in rows:
        if row.cost_usd:
            try:
                metrics.cost_recorded(row.alias, row.upstream, row.upstream_model, row.cost_usd)
            except Exception:
                logger.exception("cost metric of exchange %s could not be counted", row.exchange_id)
    for hook in after_write:
        try:
            hook(rows)
        except Exception:
            logger.exception("usage ledger hook %r failed", hook)


def _text(value: Any, limit: int) -> str:
    return str(value or "")[:limit]


def _failed_attempts(value: Any) -> list[dict[str, Any]]:
    """The failed attempts as stored: a short list of small flat objects (a damaged line gives an empty one)."""
    if not isinstance(value, list):
        return []
    return [
        {
            "target": _text(item.get("target"), 300),
            "status": count(item.get("status")) or 0,
            "error": _text(item.get("error"), 32),
            "message": _text(item.get("message"), 300),
        }
        for item in value[:20]
        if isinstance(item, dict)
    ]


def _row(facts: dict[str, Any], prices: PriceBook) -> LedgerEntry:
    """The ledger row of one exchange's facts. Every value is checked again: a spooled line may come from an
    older version or a damaged file, and a bad value must cost its row only."""
    started_at = float(facts["started_at"])
    duration = max(float(facts["duration"]), 0.0)
    ttft = facts.get("ttft")
    ttft = max(float(ttft), 0.0) if ttft is not None else None
    numbers = [count(value) for value in (list(facts.get("usage") or []) + [None] * 5)[:5]]
    usage = Usage(*numbers)
    status = count(facts.get("status"))
    return LedgerEntry(
        exchange_id=_text(facts["id"], 64),
        started_at=datetime.fromtimestamp(started_at, tz=UTC),
        finished_at=datetime.fromtimestamp(started_at + duration, tz=UTC),
        key_id=count(facts.get("key_id")),
        user_id=count(facts.get("user_id")),
        client_program=_text(facts.get("client_program"), 64),
        client_version=_text(facts.get("client_version"), 32),
        client_session=_text(facts.get("client_session"), 128),
        dialect=_text(facts.get("dialect"), 32),
        endpoint=_text(facts.get("endpoint"), 200),
        operation=_text(facts.get("operation"), 16),
        stream=bool(facts.get("stream")),
        requested_model=_text(facts.get("requested_model"), 200),
        alias=_text(facts.get("alias"), 200),
        upstream=_text(facts.get("upstream"), 64),
        upstream_model=_text(facts.get("upstream_model"), 200),
        scenario=_text(facts.get("scenario"), 16),
        attempts=min(count(facts.get("attempts")) or 1, 2**15 - 1),
        failed_attempts=_failed_attempts(facts.get("failed_attempts")),
        fallback=bool(facts.get("fallback")),
        upstream_request_id=_text(facts.get("upstream_request_id"), 200),
        outcome=_text(facts.get("outcome"), 16),
        status=status if status is not None and status < 2**15 else 0,
        error_type=_text(facts.get("error_type"), 32),
        error_message=_text(facts.get("error_message"), ERROR_MESSAGE_MAX),
        warnings=_text(facts.get("warnings"), WARNINGS_MAX),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_partial=bool(facts.get("usage_partial")),
        ttft_ms=min(round(ttft * 1000), 2**31 - 1) if ttft is not None else None,
        duration_ms=min(round(duration * 1000), 2**31 - 1),
        tokens_per_second=tokens_per_second(usage.output_tokens, ttft, duration, streamed=bool(facts.get("stream"))),
        **_price_fields(facts, usage, prices),
    )


def _price_fields(facts: dict[str, Any], usage: Usage, prices: PriceBook) -> dict[str, Any]:
    if facts.get("operation") == Operation.COUNT_TOKENS:
        return {"cost_usd": Decimal(0), "price_source": "not billed: token count"}
    if facts.get("outcome") != Outcome.OK and not usage.total:
        # Failed before the upstream reported any usage: it cost nothing, it is not "unpriced".
        return {"cost_usd": Decimal(0), "price_source": "not billed: failed without usage"}
    model = _text(facts.get("upstream_model"), 200)
    if not model:
        return {}  # refused before a model was resolved: nothing ran
    quote = prices.quote(
        usage,
        model=model,
        upstream=_text(facts.get("upstream"), 64),
        base_url=_text(facts.get("upstream_base_url"), 2000),
        upstream_format=_text(facts.get("upstream_format"), 64),
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


def tokens_per_second(
    output_tokens: int | None, ttft: float | None, duration: float, *, streamed: bool
) -> float | None:
    """Output speed over the time spent generating: from the first token to the end of a stream. A whole
    answer arrives at once (its "first token" is its last byte but a few ms), so its speed is over the whole
    exchange. None when the upstream reported no output count."""
    if not output_tokens:
        return None
    generating = duration - ttft if streamed and ttft is not None and duration - ttft > 0.001 else duration
    return round(output_tokens / generating, 2) if generating > 0 else None


# --- the ledger's background jobs (routing.runtime.worker) ------------------------------------------------

# While the database is down, one line now and then rather than a traceback every pass.
OUTAGE_LOG_SECONDS = 30.0
_adopted_at: float | None = None
_outage_logged_at: float | None = None


async def write_queued() -> None:
    """Write the exchanges finished since the last pass (the records stay spooled or queued if the write fails).
    A serving process first opens its spool and adopts the spools of processes that died (at its first pass,
    then every ADOPT_EVERY_SECONDS), so a crash or an outage loses no row."""
    global _adopted_at, _outage_logged_at
    now = time.monotonic()
    if spool.serving() and (_adopted_at is None or now - _adopted_at >= ADOPT_EVERY_SECONDS):
        _adopted_at = now
        await run_db(spool.replay)
    if not pending_count():
        return
    try:
        await run_db(write_pending)
    except DatabaseUnavailable as exc:
        if _outage_logged_at is None or now - _outage_logged_at >= OUTAGE_LOG_SECONDS:
            _outage_logged_at = now
            logger.error("usage ledger: database unavailable (%s); %d rows wait, none lost", exc, pending_count())
        return
    if _outage_logged_at is not None:
        _outage_logged_at = None
        logger.warning("usage ledger: database available again; waiting rows written")


async def write_at_stop() -> None:
    """Let the exchanges the stopping server has just cancelled record themselves, then write everything."""
    deadline = time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS
    while in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    interrupt_in_flight()
    await write_queued()
    spool.release()  # a clean stop with every row written leaves no directory behind


worker.on_stopping(server_stopping)
worker.register("usage ledger", write_queued, at_stop=write_at_stop)
