"""What the rate-limit stores share: the counters an admission touches, a refusal, and the store interface.

Two stores implement `Store`: Redis (`routing.access.counters_redis`, when `REDIS_URL` is set) and the database
(`routing.access.counters_db`). `routing.access.limits` decides which counters an exchange touches and calls the
store; the stores only count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from django.conf import settings

REQUESTS, TOKENS, STREAMS = "r", "t", "s"

# A stream is counted by a lease its worker renews every LEASE_RENEW_SECONDS: the streams of a worker that died
# stop counting after STREAM_LEASE_SECONDS.
STREAM_LEASE_SECONDS = 60.0
LEASE_RENEW_SECONDS = 15.0
# A stream slot has no predictable end: clients are asked to try again after this.
STREAM_RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Counter:
    kind: str  # REQUESTS, TOKENS or STREAMS
    name: str  # e.g. "rpm:key:5", without the Redis prefix
    limit: int
    who: str


@dataclass(frozen=True, slots=True)
class Refusal:
    counter: Counter
    retry_after: float  # seconds


def window_seconds() -> float:
    return float(settings.RATE_LIMIT_WINDOW)


class Store:
    """A place the counters of every worker meet. `lease` names one admission (its stream slots)."""

    def take_local(self, counters: Sequence[Counter], lease: str) -> bool:
        """Admit without a round trip when this worker already holds what the counters need (see the database
        store); False: call `acquire`."""
        return False

    async def acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        raise NotImplementedError

    def finish(
        self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str
    ) -> Awaitable[None] | None:
        """Add an ended exchange's tokens and give back its stream slots; what must still be awaited, if any."""
        raise NotImplementedError

    async def upkeep(self) -> None:
        """Every pass of the background worker: renew stream leases, write what was kept back."""

    async def at_stop(self) -> None:
        """The server stops: write and give back what this worker holds."""
