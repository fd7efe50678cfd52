"""An asyncio lock for module-level state that outlives event loops.

A process serves one event loop, but the tests run many in turn (and an asyncio.Lock that once made a task wait
belongs to that task's loop for good): this hands out one lock per running loop.
"""

from __future__ import annotations

import asyncio


class LoopLock:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock
