"""The database thread: every ORM call the server makes outside Django's own views runs here.

One dedicated thread per process: the event loop never waits on the database, and the process holds a single
connection for this work (the request path's rate-limit counters, the background jobs, the stored responses).

That connection is kept between calls: opening one per call would reconnect twice a second for the configuration
check alone, on every worker of every replica. It is replaced after an error (a restarted database must not poison
the calls after it), after CONNECTION_MAX_AGE seconds (so a server-side limit or a failover is picked up), and
checked with a trivial query when it sat idle for IDLE_CHECK_SECONDS (a server or a pooler may have dropped it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connection

T = TypeVar("T")

CONNECTION_MAX_AGE = 300.0
IDLE_CHECK_SECONDS = 30.0

db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmproxy-db")


class _Connection:
    """When the database thread's connection was opened and last used (only that thread touches it)."""

    opened = 0.0
    used = 0.0


async def run_db(fn: Callable[[], T]) -> T:
    """Run a synchronous ORM function on the database thread, on its kept connection."""
    return await asyncio.get_running_loop().run_in_executor(db_executor, _guarded(fn))


def _guarded(fn: Callable[[], T]) -> Callable[[], T]:
    def call() -> T:
        now = time.monotonic()
        if connection.connection is not None:
            stale = now - _Connection.opened > CONNECTION_MAX_AGE
            if stale or (now - _Connection.used > IDLE_CHECK_SECONDS and not connection.is_usable()):
                connection.close()
        if connection.connection is None:
            _Connection.opened = now
        try:
            return fn()
        except Exception:
            connection.close()
            raise
        finally:
            _Connection.used = time.monotonic()

    return call


def database_answers() -> None:
    """Raises unless the database answers a trivial query (the readiness probe)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
