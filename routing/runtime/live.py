"""Per-process live state: the current configuration snapshot and the keys' last-used stamps, kept by jobs
of the process's background worker (routing.runtime.worker).

The snapshot is loaded with the first request a process serves (`LiveConfig.ensure_started`, which also
starts the worker: daphne sends no ASGI lifespan events), then re-read whenever the configuration token in
the database changes. Every database call runs on the database thread (routing.runtime.database).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from django.conf import settings

from routing.access.budgets import spend_book
from routing.config.registry import Snapshot, load_snapshot
from routing.models import ConfigState, ProxyKey
from routing.runtime.database import run_db
from routing.runtime.looplock import LoopLock
from routing.runtime.worker import worker

logger = logging.getLogger(__name__)

# How often the last-used times of keys are written back (one UPDATE per used key, not per request).
LAST_USED_FLUSH_SECONDS = 30.0


class LiveConfig:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.loaded = False
        self.last_error: str | None = None
        self._key_last_used: dict[int, float] = {}
        self._first_load = LoopLock()

    async def ensure_started(self) -> None:
        """Load the configuration once and have the background worker running (first request of a process).
        The requests that arrive together at a fresh worker wait for one load, not one each."""
        if not self.loaded:
            async with self._first_load.get():
                if not self.loaded:
                    await self.reload()
        worker.start()

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

    async def refresh_spend(self, snapshot: Snapshot | None = None) -> None:
        try:
            await run_db(lambda: spend_book.refresh(snapshot or self.snapshot))
        except Exception:
            logger.exception("budget spend could not be read; the last known spend stays")

    async def follow_changes(self) -> None:
        """Reload when an edit changed the configuration token (or the last load failed)."""
        try:
            token = await run_db(ConfigState.current_token)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("configuration check failed: %s", exc)
            return
        if token != self.snapshot.token or not self.loaded:
            await self.reload()

    def note_key_used(self, key_id: int) -> None:
        self._key_last_used[key_id] = time.time()

    async def flush_key_usage(self) -> None:
        pending, self._key_last_used = self._key_last_used, {}
        if not pending:
            return
        try:
            await run_db(lambda: _write_last_used(pending))
        except BaseException:
            # Not written (a failure), or not known to be (the server stopping cancelled the wait): kept for the
            # next flush, the stop's last one included; a stamp noted since is the newer and wins.
            for key_id, stamp in pending.items():
                self._key_last_used.setdefault(key_id, stamp)
            raise


def _write_last_used(pending: dict[int, float]) -> None:
    # A queryset update sends no signals, so this does not count as a configuration change.
    for key_id, stamp in pending.items():
        ProxyKey.objects.filter(pk=key_id).update(last_used_at=datetime.fromtimestamp(stamp, tz=UTC))


live_config = LiveConfig()

worker.register("configuration", live_config.follow_changes, every=lambda: float(settings.CONFIG_REFRESH_INTERVAL))
worker.register("budget spend", live_config.refresh_spend, every=lambda: float(settings.BUDGET_REFRESH_INTERVAL))
worker.register(
    "keys last used",
    live_config.flush_key_usage,
    every=lambda: LAST_USED_FLUSH_SECONDS,
    at_stop=live_config.flush_key_usage,
)
