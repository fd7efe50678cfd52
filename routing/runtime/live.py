"""Per-process live state: the current config snapshot, kept fresh by one background task.

Daphne sends no ASGI lifespan events, so the background task starts with the first request a worker
serves (`LiveConfig.ensure_started`). Every database call here runs on one dedicated thread: the event
loop never waits on the database, and the process holds a single connection for this work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import close_old_connections, connection

from routing.access import limits
from routing.access.budgets import spend_book
from routing.config.registry import Snapshot, load_snapshot
from routing.models import ConfigState, ProxyKey
from usage import ledger
from usage.live import publish_live

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often the last-used times of keys are written back (one UPDATE per used key, not per request).
LAST_USED_FLUSH_SECONDS = 30.0

# How long a stopping server lets running exchanges finish before recording them as interrupted.
SHUTDOWN_GRACE_SECONDS = 2.0

db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmproxy-db")


async def run_db(fn: Callable[[], T], *, keep_connection: bool = False) -> T:
    """Run a synchronous ORM function on the database thread.

    Each call normally starts with `close_old_connections()`, which (CONN_MAX_AGE = 0) means a new connection.
    `keep_connection` uses the connection the thread has open instead, for work done per request (rate-limit
    counters) where connecting would cost several times the work; it is still closed after an error."""
    return await asyncio.get_running_loop().run_in_executor(db_executor, _guarded(fn, fresh=not keep_connection))


def _guarded(fn: Callable[[], T], *, fresh: bool) -> Callable[[], T]:
    def call() -> T:
        if fresh:
            close_old_connections()
        try:
            return fn()
        except Exception:
            # A broken connection (database restarted) must not poison every later call.
            connection.close()
            raise

    return call


def database_answers() -> None:
    """Raises unless the database answers a trivial query (the readiness probe)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


class LiveConfig:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.loaded = False
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key_last_used: dict[int, float] = {}
        self._last_flush = time.monotonic()

    async def ensure_started(self) -> None:
        """Load the config once and start the refresher on this event loop (first request of a worker)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        first_start = self._loop is None
        self._loop = loop
        if not self.loaded:
            await self.reload()
        self._task = loop.create_task(self._refresh_forever())
        if first_start:
            _run_at_server_shutdown(self.flush_at_shutdown, prepare=ledger.server_stopping)

    async def reload(self) -> None:
        try:
            snapshot = await run_db(load_snapshot)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("configuration could not be loaded")
            return
        # The budgets' spend before the snapshot that names them serves a request (a new budget is known spent).
        await self.refresh_spend(snapshot)
        self.snapshot = snapshot
        self.loaded = True
        self.last_error = None
        logger.info("configuration loaded (token %s)", snapshot.token)

    async def refresh_spend(self, snapshot: Snapshot) -> None:
        try:
            await run_db(lambda: spend_book.refresh(snapshot))
        except Exception:
            logger.exception("budget spend could not be read; the last known spend stays")

    async def _refresh_forever(self) -> None:
        interval = settings.CONFIG_REFRESH_INTERVAL
        while True:
            await asyncio.sleep(interval)
            try:
                token = await run_db(ConfigState.current_token)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("configuration check failed: %s", exc)
                continue
            try:
                await publish_live()
            except Exception:
                logger.exception("live view publishing failed")
            if token != self.snapshot.token or not self.loaded:
                await self.reload()
            await self.write_ledger()
            if time.monotonic() - spend_book.refreshed_at >= settings.BUDGET_REFRESH_INTERVAL:
                await self.refresh_spend(self.snapshot)
            await limits.renew_leases()
            if time.monotonic() - self._last_flush >= LAST_USED_FLUSH_SECONDS:
                await self.flush_key_usage()

    async def write_ledger(self) -> None:
        """Write the exchanges finished since the last call (usage.ledger keeps them if the write fails)."""
        if ledger.pending_count():
            try:
                await run_db(ledger.write_pending)
            except Exception:
                logger.exception("usage ledger rows could not be written; they stay queued")

    async def flush_at_shutdown(self) -> None:
        """Let the exchanges daphne has just cancelled record themselves, then write everything."""
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while ledger.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ledger.interrupt_in_flight()
        await self.write_ledger()
        await self.flush_key_usage()

    def note_key_used(self, key_id: int) -> None:
        self._key_last_used[key_id] = time.time()

    async def flush_key_usage(self) -> None:
        pending, self._key_last_used = self._key_last_used, {}
        self._last_flush = time.monotonic()
        if pending:
            await run_db(lambda: _write_last_used(pending))


def _run_at_server_shutdown(flush: Callable[[], Awaitable[None]], prepare: Callable[[], None]) -> None:
    """Have daphne run `flush` before it stops (SIGTERM, SIGINT). Daphne sends no ASGI lifespan events, but
    its Twisted reactor runs "before shutdown" triggers and waits for the Deferreds they return.

    Daphne's own trigger has just cancelled every running request when this one runs; `prepare` is called at
    once, before those cancellations reach the requests, so they can tell a stop from a client going away."""
    try:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
    except ImportError:  # not under daphne
        return
    if not getattr(reactor, "running", False):
        return

    def on_shutdown() -> Deferred[None]:
        prepare()
        return Deferred.fromFuture(asyncio.ensure_future(flush()))

    # The zope interface stubs declare this method without `self`, which confuses the type checker.
    cast(Any, reactor).addSystemEventTrigger("before", "shutdown", on_shutdown)


def _write_last_used(pending: dict[int, float]) -> None:
    # A queryset update sends no signals, so this does not count as a configuration change.
    for key_id, stamp in pending.items():
        ProxyKey.objects.filter(pk=key_id).update(last_used_at=datetime.fromtimestamp(stamp, tz=UTC))


live_config = LiveConfig()
