"""The database thread: every ORM call the server makes outside Django's own views runs here.

One dedicated thread per process: the event loop never waits on the database, and the process holds a single
connection for this work (the request path's rate-limit counters, the background jobs, the stored responses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections, connection

T = TypeVar("T")

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
