"""The per-process background worker: one task on the server's event loop that runs every registered job
when it is due, and the jobs' last word when the server stops.

Each module registers its own jobs when it is imported (`worker.register(...)`): the configuration refresh
and last-used stamps (routing.runtime.live), the ledger writes (usage.ledger), the live view
(usage.live), the stream-lease renewal (routing.access.limits). Nothing here knows what the jobs do.

Daphne sends no ASGI lifespan events, so the worker starts with the first request a process serves
(`start`, idempotent), and stops through a Twisted "before shutdown" trigger, which daphne waits for.
The clock is injectable: tests advance a fake clock and call `run_due()` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from django.conf import settings

logger = logging.getLogger(__name__)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def every_tick() -> float:
    """The worker's own pace: jobs that should run on every pass (ledger writes, live view, leases)."""
    return 0.0


@dataclass
class Job:
    name: str
    run: Callable[[], Awaitable[None]] | None  # None: a job with only a last word
    # Seconds between two runs, read before each run (settings may change while a process lives).
    every: Callable[[], float] = every_tick
    # The job's last word when the server stops (the same function, or one that first lets work finish).
    at_stop: Callable[[], Awaitable[None]] | None = None
    due: float = 0.0  # on the worker's clock; 0: at the first pass


class Worker:
    def __init__(self, clock: Clock | None = None, tick: Callable[[], float] | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        # How long the loop sleeps between passes (the shortest interval any job can have).
        self.tick = tick or (lambda: float(settings.CONFIG_REFRESH_INTERVAL))
        self.jobs: dict[str, Job] = {}
        self._stopping: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def register(
        self,
        name: str,
        run: Callable[[], Awaitable[None]] | None,
        *,
        every: Callable[[], float] = every_tick,
        at_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> Job:
        """Add a job (a job of the same name is replaced: a module re-imported in tests does not run twice)."""
        job = Job(name, run, every, at_stop)
        self.jobs[name] = job
        return job

    def on_stopping(self, callback: Callable[[], None]) -> None:
        """Call `callback` at once when the server begins to stop, before anything is awaited (the ledger
        uses it to tell exchanges cut by the stop from clients going away)."""
        if callback not in self._stopping:
            self._stopping.append(callback)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Run the jobs from now on, on the running event loop (again after a loop was replaced, as tests do)."""
        loop = asyncio.get_running_loop()
        if self.running and self._loop is loop:
            return
        first_start = self._loop is None
        self._loop = loop
        self._task = loop.create_task(self._run_forever(), name="llmproxy-worker")
        if first_start:
            _run_at_server_shutdown(self)

    async def run_due(self) -> None:
        """Run each job whose time has come, in registration order. A failing job is logged and does not keep
        the others from running."""
        for job in list(self.jobs.values()):
            now = self.clock.monotonic()
            if job.run is None or now < job.due:
                continue
            job.due = now + job.every()
            await _run_logged(job.name, job.run)

    def halt(self) -> None:
        """Stop running jobs, without their last word (a test whose event loop is about to close)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def begin_stop(self) -> None:
        """Tell the stopping callbacks and stop the loop (synchronous: nothing runs in between)."""
        for callback in self._stopping:
            callback()
        self.halt()

    async def finish_stop(self) -> None:
        """Run every job's last word, in registration order; those of jobs that are only a last word (closing
        what the others may still use, such as the upstream connections) after all the others."""
        jobs = list(self.jobs.values())
        for job in [j for j in jobs if j.run is not None] + [j for j in jobs if j.run is None]:
            if job.at_stop is not None:
                await _run_logged(job.name, job.at_stop)

    async def stop(self) -> None:
        self.begin_stop()
        await self.finish_stop()

    async def _run_forever(self) -> None:
        while True:
            await self.run_due()
            await self.clock.sleep(self.tick())


async def _run_logged(name: str, run: Callable[[], Awaitable[None]]) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("background job %r failed; it runs again when next due", name)


def _run_at_server_shutdown(worker: Worker) -> None:
    """Have daphne stop `worker` before it stops (SIGTERM, SIGINT): its Twisted reactor runs "before shutdown"
    triggers and waits for the Deferreds they return. Daphne's own trigger has just cancelled every running
    request when this one runs; the stopping callbacks are called at once, before those cancellations reach
    the requests, so the requests can tell a stop from a client going away."""
    try:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
    except ImportError:  # not under daphne
        return
    if not getattr(reactor, "running", False):
        return

    def on_shutdown() -> Deferred[None]:
        worker.begin_stop()
        return Deferred.fromFuture(asyncio.ensure_future(worker.finish_stop()))

    # The zope interface stubs declare this method without `self`, which confuses the type checker.
    cast(Any, reactor).addSystemEventTrigger("before", "shutdown", on_shutdown)


# The process's worker.
worker = Worker()
