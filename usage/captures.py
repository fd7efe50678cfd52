"""Captured exchanges: the request and response bodies of the exchanges whose key or alias asks for them
(`capture_bodies`), kept for debugging beside the ledger row (docs/captures.md).

On the request path an `ExchangeCapture` only keeps references to what passes anyway: the client's body, the
upstream request as sent, the upstream's answer as read and the answer as the client got it (a stream's bytes or
events as relayed, after each was sent), each up to CAPTURE_MAX_BYTES (past it a body is cut and marked). No
copy of a stream is ever waited for, and nothing is decoded, redacted or serialised there: `submit` queues the
capture when its exchange ends, and this module's job on the background worker redacts it (anything shaped like
a credential, and the credentials the exchange sent upstream; only allow-listed headers are kept) and inserts
it on the database thread. An exchange that captures nothing costs one attribute test at each of those places.

Captures are not spooled with the ledger rows: a body is a thousand times a ledger row, and would fill the
ledger's spool (which keeps the rows across a crash or a database outage) with debugging data. They wait in
memory, at most MAX_PENDING_BYTES of them (beyond that new ones are dropped, with a log line); a crash loses
the captures of the last pass. The row names its ledger row by `exchange_id` (no foreign key: the ledger may be
partitioned). The retention job deletes captures older than CAPTURE_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, transaction

from routing.runtime.database import run_db
from routing.runtime.worker import worker
from translation.redaction import redact_text
from usage import ledger
from usage.models import Capture
from usage.retention import delete_oldest

logger = logging.getLogger(__name__)

# Headers kept (lower-case names, or prefixes ending in "-"); every other header is left out, whatever it holds.
ALLOWED_HEADERS = (
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "x-stainless-",
    "request-id",
    "x-request-id",
    "retry-after",
    "x-ratelimit-",
    "anthropic-ratelimit-",
    "openai-processing-ms",
    "x-llmproxy-",
)
# Captures waiting in memory for the database thread; beyond this, new ones are dropped.
MAX_PENDING_BYTES = 64 * 1024 * 1024
# Captures per INSERT.
BATCH = 50
# Redaction runs on a thread in pieces of about this many characters: a regular expression holds the GIL for a
# whole call, so one call over a body of 256 KiB (40 ms and more) would stall the event loop for as long; in
# pieces the loop waits a few ms at most (measured with keys everywhere), usually about one.
REDACT_PIECE = 4 * 1024
# Where a piece may end: characters no key or bearer token contains (JSON's quotes and commas, lines of events).
_PIECE_END = re.compile(r'[",\n]')
# What every key shape the redaction knows starts with (translation.redaction): a piece with none of them and none
# of the exchange's own secrets is left as it is, without running the expression.
_KEY_MARKS = ("sk-", "AIza", "xai-", "gsk_", "earer")
PRUNE_BATCH = 1000
PRUNE_BATCHES_PER_RUN = 10
PRUNE_EVERY_SECONDS = 60.0
DROP_LOG_SECONDS = 30.0


class Body:
    """One body, kept up to `limit` bytes: the chunks are referenced as they pass (the last one sliced at the
    cap), never joined on the request path."""

    __slots__ = ("limit", "parts", "size", "truncated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        if self.truncated or not data:
            return
        room = self.limit - self.size
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        if data:
            self.parts.append(data)
            self.size += len(data)

    def reset(self) -> None:
        self.parts = []
        self.size = 0
        self.truncated = False

    def text(self) -> str:
        # A cut may fall inside a UTF-8 sequence, and Bedrock's event-stream framing is binary: replaced, NUL
        # included (PostgreSQL's text refuses it).
        return b"".join(self.parts).decode("utf-8", "replace").replace("\x00", "\ufffd")


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers if name.lower().startswith(ALLOWED_HEADERS)}


class ExchangeCapture:
    """What one exchange keeps of its bodies (filled in on the request path, stored by the background job)."""

    def __init__(
        self,
        exchange_id: str,
        started_at: float,
        client_body: bytes,
        client_headers: Mapping[str, str],
        limit: int | None = None,
    ) -> None:
        limit = settings.CAPTURE_MAX_BYTES if limit is None else limit
        self.exchange_id = exchange_id
        self.started_at = started_at
        self.requested_model = ""
        self.client_request = Body(limit)
        self.client_request.add(client_body)
        self.upstream_request = Body(limit)
        self.upstream_response = Body(limit)
        self.client_response = Body(limit)
        self.headers: dict[str, dict[str, str]] = {"client_request": kept_headers(client_headers.items())}
        self.upstream_url = ""
        self.upstream_status: int | None = None
        self.client_status: int | None = None
        self.secrets: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        bodies = (self.client_request, self.upstream_request, self.upstream_response, self.client_response)
        return sum(body.size for body in bodies)

    # -- the upstream side (the last attempt wins: failover's earlier attempts are in the ledger row) ---------

    def sent_upstream(self, url: str, content: bytes, headers: Iterable[tuple[str, str]]) -> None:
        self.upstream_url = url.partition("?")[0]  # a query string may carry a key (Gemini's ?key=)
        self.upstream_request.reset()
        self.upstream_request.add(content)
        self.upstream_response.reset()
        self.upstream_status = None
        self.headers["upstream_request"] = kept_headers(headers)
        self.headers.pop("upstream_response", None)

    def upstream_answered(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self.upstream_status = status
        self.headers["upstream_response"] = kept_headers(headers)

    async def copy(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The upstream's body chunks, passed on as they come; a reference to each is kept (up to the cap)."""
        body = self.upstream_response
        async for chunk in chunks:
            body.add(chunk)
            yield chunk

    # -- the client side (routing.dataplane.sinks, after each send) ------------------------------------------

    def to_client(self, data: bytes, status: int | None = None) -> None:
        if status is not None:
            self.client_status = status
        self.client_response.add(data)


@dataclass(slots=True)
class _Pending:
    capture: ExchangeCapture
    size: int


_pending: deque[_Pending] = deque()
_pending_bytes = 0
_dropped_logged_at: float | None = None
_outage_logged_at: float | None = None


def submit(capture: ExchangeCapture, status: int, requested_model: str, secrets: tuple[str, ...]) -> None:
    """The exchange ended: queue its capture for the background job (no I/O). `secrets`: the credentials the
    exchange sent upstream, redacted wherever they appear. Never raises."""
    global _pending_bytes, _dropped_logged_at
    try:
        capture.client_status = capture.client_status or status
        capture.requested_model = requested_model
        capture.secrets = secrets
        size = capture.size
        if _pending_bytes + size > MAX_PENDING_BYTES:
            now = time.monotonic()
            if _dropped_logged_at is None or now - _dropped_logged_at >= DROP_LOG_SECONDS:
                _dropped_logged_at = now
                logger.error("captures: %d bytes wait for the database; new captures are dropped", _pending_bytes)
            return
        _pending.append(_Pending(capture, size))
        _pending_bytes += size
    except Exception:
        logger.exception("capture of exchange %s could not be queued", capture.exchange_id)


def pending_count() -> int:
    return len(_pending)


def _pieces(text: str) -> list[str]:
    pieces = []
    start = 0
    while start < len(text):
        end = start + REDACT_PIECE
        if end < len(text):
            boundary = _PIECE_END.search(text, end, end + 1024)
            end = boundary.end() if boundary is not None else end
        pieces.append(text[start:end])
        start = end
    return pieces


def redacted(text: str, secrets: tuple[str, ...]) -> str:
    """`translation.redaction.redact_text` over a body of any size, piece by piece, so that another thread (the
    event loop) gets the GIL between pieces; a piece with nothing that could be a secret is not scanned."""
    out = []
    for piece in _pieces(text):
        if any(mark in piece for mark in _KEY_MARKS) or any(secret in piece for secret in secrets if secret):
            piece = redact_text(piece, secrets)
        out.append(piece)
    return "".join(out)


def _stored(capture: ExchangeCapture) -> Capture:
    """The row of a capture: every body and header value redacted (on a worker thread, not the database's)."""
    secrets = capture.secrets
    bodies = {
        "client_request": capture.client_request,
        "upstream_request": capture.upstream_request,
        "upstream_response": capture.upstream_response,
        "client_response": capture.client_response,
    }
    headers = {
        part: {name: redact_text(value, secrets) for name, value in values.items()}
        for part, values in capture.headers.items()
    }
    return Capture(
        exchange_id=capture.exchange_id[:64],
        captured_at=datetime.fromtimestamp(capture.started_at, tz=UTC),
        requested_model=capture.requested_model[:200],
        client_status=capture.client_status if capture.client_status and capture.client_status < 2**15 else None,
        upstream_url=redact_text(capture.upstream_url, secrets)[:2000],
        upstream_status=capture.upstream_status,
        headers=headers,
        truncated=[name for name, body in bodies.items() if body.truncated],
        **{name: redacted(body.text(), secrets) for name, body in bodies.items()},
    )


def rows_of(captures: list[ExchangeCapture]) -> list[Capture]:
    """The redacted rows of `captures`; one that cannot be built is dropped with a log line."""
    rows = []
    for capture in captures:
        try:
            rows.append(_stored(capture))
        except Exception:
            logger.exception("capture of exchange %s could not be stored and is dropped", capture.exchange_id)
    return rows


def store(rows: list[Capture]) -> int:
    """Insert the rows (database thread). If the database refuses the batch, row by row, dropping (with a log
    line) the rows it refuses; any other database error is raised, and the rows wait."""
    try:
        with transaction.atomic():
            Capture.objects.bulk_create(rows, batch_size=BATCH, ignore_conflicts=True)
        return len(rows)
    except (IntegrityError, DataError):
        pass
    stored = 0
    for row in rows:
        try:
            with transaction.atomic():
                Capture.objects.bulk_create([row], ignore_conflicts=True)
            stored += 1
        except (IntegrityError, DataError) as exc:
            logger.error("capture of exchange %s refused by the database and dropped: %s", row.exchange_id, exc)
    return stored


async def write_queued() -> None:
    """Store the captures queued since the last pass; while the database is down they wait (bounded)."""
    global _pending_bytes, _outage_logged_at
    if not _pending:
        return
    batch = list(_pending)
    _pending.clear()
    _pending_bytes = 0
    # Redacted on a thread of its own, so the database thread stays free for the ledger and the configuration.
    rows = await asyncio.to_thread(rows_of, [item.capture for item in batch])
    try:
        await run_db(lambda: store(rows))
    except DatabaseError as exc:
        now = time.monotonic()
        if _outage_logged_at is None or now - _outage_logged_at >= DROP_LOG_SECONDS:
            _outage_logged_at = now
            logger.error("captures: database unavailable (%s); %d captures wait", exc, len(batch))
        _pending.extendleft(reversed(batch))
        _pending_bytes += sum(item.size for item in batch)


async def write_at_stop() -> None:
    """Let the exchanges the stopping server has just cancelled end (and submit their captures), then store."""
    deadline = time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS
    while ledger.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await write_queued()


def prune(older_than: timedelta, *, max_batches: int | None = None, now: datetime | None = None) -> int:
    """Delete the captures of exchanges that started before `now - older_than`, oldest first."""
    cutoff = (now or datetime.now(UTC)) - older_than
    oldest = Capture.objects.filter(captured_at__lt=cutoff).order_by("captured_at")
    return delete_oldest(oldest, PRUNE_BATCH, max_batches)


async def prune_in_background() -> None:
    days = settings.CAPTURE_RETENTION_DAYS
    if days > 0:
        await run_db(lambda: prune(timedelta(days=days), max_batches=PRUNE_BATCHES_PER_RUN))


worker.register("captures", write_queued, at_stop=write_at_stop)
worker.register("capture retention", prune_in_background, every=lambda: PRUNE_EVERY_SECONDS)
