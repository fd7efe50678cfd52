"""Which of an alias's targets and an upstream's keys may take traffic now: circuit breakers, resting keys, and
the requests in flight that spread the load.

A target's circuit opens after CIRCUIT_FAILURES consecutive failures (connection errors, timeouts, 429 and 5xx
answers), or at once for a 429 that says how long to wait (Retry-After); it then rests for CIRCUIT_COOLDOWN
seconds (or the Retry-After), after which one request tries it (half-open): success closes it, failure opens
it again. A key of a pool that the upstream refused (401/403) or rate-limited (429) rests alone, so its
siblings keep serving.

The request path reads only this process's memory. When REDIS_URL is set, every opening, closing and key rest
is also written to one Redis hash, which each worker reads on every pass of its background worker (every
CONFIG_REFRESH_INTERVAL), so all workers and hosts agree within about a second; a half-open trial is claimed
in Redis, so one request in the whole deployment makes it. Without Redis each process keeps its own circuits.
Counts of consecutive failures and recent error rates stay per process.

Times are wall-clock seconds (time.time), the one clock that means the same in every process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from django.conf import settings

from routing.config.registry import Target, UpstreamRoute
from routing.runtime.worker import worker
from usage import metrics

logger = logging.getLogger(__name__)

# How far back the error rate the admin shows looks (seconds), and the most outcomes it keeps per target.
ERROR_RATE_WINDOW = 300.0
_RECENT_MAX = 200
# Longest rest a Retry-After may impose (seconds): a header asking for a day is not taken at its word.
MAX_RETRY_AFTER = 3600.0
# A half-open trial is given this long to finish before another request may try the target.
PROBE_SECONDS = 60.0
# How long an opening written to Redis may take to show there before another worker's view counts.
SHARE_GRACE_SECONDS = 5.0


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class Circuit:
    failures: int = 0  # consecutive
    open_until: float = 0.0  # 0: closed
    opened_at: float = 0.0
    probing_until: float = 0.0  # a half-open trial is running (this process) until then
    last_error: str = ""
    recent: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=_RECENT_MAX))

    def state(self, now: float) -> CircuitState:
        if not self.open_until:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN

    def error_rate(self, now: float) -> float | None:
        outcomes = [ok for at, ok in self.recent if now - at <= ERROR_RATE_WINDOW]
        return None if not outcomes else outcomes.count(False) / len(outcomes)


@dataclass(frozen=True, slots=True)
class CircuitView:
    """One target's circuit as the admin shows it."""

    target: str
    state: CircuitState
    open_until: float
    error_rate: float | None
    last_error: str


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date), capped."""
    try:
        if "retry-after-ms" in headers:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            value = str(headers["retry-after"]).strip()
            try:
                seconds = float(value)
            except ValueError:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
        else:
            return None
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


class Health:
    def __init__(self) -> None:
        self.circuits: dict[str, Circuit] = {}
        self.key_rest: dict[str, float] = {}  # "upstream#index" -> resting until
        self.in_flight: dict[str, int] = {}
        self._next_key: dict[str, int] = {}  # upstream -> the pool index to try next
        self._turns: dict[str, dict[str, float]] = {}  # alias -> smooth weighted round-robin state
        self._tasks: set[asyncio.Task[None]] = set()

    # --- choosing -------------------------------------------------------------------------------------

    def order(self, alias: str, targets: Sequence[Target]) -> list[Target]:
        """The targets in the order to try them: the non-fallback targets that are not resting, the first chosen
        by weight (fewest requests in flight per unit of weight, then smooth weighted round-robin, so the split
        over many requests is the weights' exactly), then the fallbacks in their order. When every target
        rests, they all come, the soonest to wake first: with nowhere else to go, the upstream's own answer is
        better than the proxy refusing."""
        now = time.time()
        ready = [t for t in targets if self._circuit(t.name).state(now) is not CircuitState.OPEN]
        if not ready:
            return sorted(targets, key=lambda t: self._circuit(t.name).open_until)
        primaries = [t for t in ready if not t.fallback]
        fallbacks = [t for t in ready if t.fallback]
        if len(primaries) > 1:
            first = self._weighted_pick(alias, primaries)
            rest = sorted((t for t in primaries if t is not first), key=self._load)
            primaries = [first, *rest]
        return primaries + fallbacks

    def _load(self, target: Target) -> float:
        return self.in_flight.get(target.name, 0) / target.weight

    def _weighted_pick(self, alias: str, candidates: Sequence[Target]) -> Target:
        turns = self._turns.setdefault(alias, {})
        total = 0
        for target in candidates:
            turns[target.name] = turns.get(target.name, 0.0) + target.weight
            total += target.weight
        least = min(self._load(t) for t in candidates)
        chosen = max((t for t in candidates if self._load(t) == least), key=lambda t: turns[t.name])
        turns[chosen.name] -= total
        return chosen

    async def may_try(self, target: Target) -> bool:
        """Whether a request may go to `target` now: always when its circuit is closed (or every target rests);
        when it is half-open, only the one request that claims the trial."""
        now = time.time()
        circuit = self._circuit(target.name)
        if circuit.state(now) is not CircuitState.HALF_OPEN:
            return True
        if circuit.probing_until > now:
            return False
        circuit.probing_until = now + PROBE_SECONDS
        if not settings.REDIS_URL:
            return True
        try:
            claimed = await _redis().set(_probe_key(target.name), os.getpid(), nx=True, px=int(PROBE_SECONDS * 1000))
        except Exception as exc:  # Redis down: this process decides alone
            logger.warning("circuit trial of %s not claimed in Redis: %s", target.name, exc)
            return True
        return bool(claimed)

    def pick_key(self, upstream: UpstreamRoute) -> tuple[int, str | None]:
        """The pool key to use, round-robin over the keys not resting (all resting: the soonest to wake)."""
        keys = upstream.credentials
        if len(keys) <= 1:
            return 0, upstream.credential
        now = time.time()
        start = self._next_key.get(upstream.name, 0) % len(keys)
        indexes = [(start + step) % len(keys) for step in range(len(keys))]
        awake = [i for i in indexes if self.key_rest.get(_key_name(upstream, i), 0.0) <= now]
        index = awake[0] if awake else min(indexes, key=lambda i: self.key_rest.get(_key_name(upstream, i), 0.0))
        self._next_key[upstream.name] = index + 1
        return index, keys[index]

    def other_key_awake(self, upstream: UpstreamRoute, index: int) -> bool:
        now = time.time()
        return any(
            self.key_rest.get(_key_name(upstream, i), 0.0) <= now
            for i in range(len(upstream.credentials))
            if i != index
        )

    # --- what happened ------------------------------------------------------------------------------------

    def started(self, target: Target) -> None:
        self.in_flight[target.name] = self.in_flight.get(target.name, 0) + 1

    def finished(self, target: Target) -> None:
        left = self.in_flight.get(target.name, 0) - 1
        if left > 0:
            self.in_flight[target.name] = left
        else:
            self.in_flight.pop(target.name, None)

    def succeeded(self, target: Target) -> None:
        circuit = self._circuit(target.name)
        circuit.recent.append((time.time(), True))
        circuit.failures = 0
        if circuit.open_until:
            circuit.open_until = circuit.probing_until = 0.0
            logger.info("circuit of %s closed: it answered again", target.name)
            self._share_circuit(target.name, None)

    def failed(self, target: Target, error: str, rest: float | None = None) -> None:
        """A failure of the target's own (not the client's, not one key's). `rest`: the upstream said how long
        to wait (a 429's Retry-After), which opens the circuit at once for that long."""
        now = time.time()
        circuit = self._circuit(target.name)
        circuit.recent.append((now, False))
        circuit.failures += 1
        circuit.last_error = error
        half_open = circuit.state(now) is CircuitState.HALF_OPEN
        if rest is None and not half_open and circuit.failures < settings.CIRCUIT_FAILURES:
            return
        circuit.open_until = now + (rest if rest is not None else settings.CIRCUIT_COOLDOWN)
        circuit.opened_at = now
        circuit.probing_until = 0.0
        logger.warning(
            "circuit of %s open for %.0f s after %d failure(s): %s",
            target.name,
            circuit.open_until - now,
            circuit.failures,
            error,
        )
        self._share_circuit(target.name, circuit)

    def rest_key(self, upstream: UpstreamRoute, index: int, seconds: float) -> None:
        name = _key_name(upstream, index)
        self.key_rest[name] = time.time() + seconds
        logger.warning("upstream %s: key %d of its pool rests for %.0f s", upstream.name, index + 1, seconds)
        self._share({name: json.dumps({"until": self.key_rest[name]})})

    # --- views --------------------------------------------------------------------------------------------

    def views(self, names: Iterable[str]) -> list[CircuitView]:
        now = time.time()
        out = []
        for name in names:
            circuit = self.circuits.get(name) or Circuit()
            out.append(
                CircuitView(name, circuit.state(now), circuit.open_until, circuit.error_rate(now), circuit.last_error)
            )
        return out

    def open_circuits(self) -> int:
        now = time.time()
        return sum(1 for c in self.circuits.values() if c.state(now) is not CircuitState.CLOSED)

    def reset(self) -> None:
        """Forget everything (tests)."""
        self.circuits.clear()
        self.key_rest.clear()
        self.in_flight.clear()
        self._next_key.clear()
        self._turns.clear()

    # --- sharing ------------------------------------------------------------------------------------------

    def _circuit(self, name: str) -> Circuit:
        circuit = self.circuits.get(name)
        if circuit is None:
            circuit = self.circuits[name] = Circuit()
        return circuit

    def _share_circuit(self, name: str, circuit: Circuit | None) -> None:
        """An opening (or a closing: None) for every worker; either way a trial is over, so its claim goes."""
        if circuit is None:
            self._share({}, forget=(name,), trial=name)
        else:
            entry = {"until": circuit.open_until, "error": circuit.last_error[:300]}
            self._share({name: json.dumps(entry)}, trial=name)

    def _share(self, values: dict[str, str], forget: Sequence[str] = (), trial: str = "") -> None:
        """Write to Redis without holding up the request (a task; a failure is logged)."""
        if not settings.REDIS_URL:
            return
        task = asyncio.get_running_loop().create_task(_write_shared(values, forget, trial))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def apply_shared(self, shared: dict[str, dict[str, Any]]) -> None:
        """Take what every worker wrote to Redis: openings, and key rests; a circuit open here but absent there
        was closed by another worker (its trial succeeded)."""
        now = time.time()
        for name, value in shared.items():
            until = float(value.get("until", 0.0))
            if "#" in name:
                self.key_rest[name] = max(self.key_rest.get(name, 0.0), until)
                continue
            circuit = self._circuit(name)
            if until > circuit.open_until:
                circuit.open_until = until
                circuit.opened_at = now
                circuit.probing_until = 0.0
                circuit.last_error = str(value.get("error", circuit.last_error))
        for name, circuit in self.circuits.items():
            # Open here, gone there: another worker's trial closed it (unless it opened here a moment ago and
            # the write is still on its way).
            if circuit.open_until and name not in shared and now - circuit.opened_at > SHARE_GRACE_SECONDS:
                circuit.open_until = circuit.probing_until = 0.0
                circuit.failures = 0


def _key_name(upstream: UpstreamRoute, index: int) -> str:
    return f"{upstream.name}#{index}"


def _hash_key() -> str:
    return f"{settings.HEALTH_PREFIX}circuits"


def _probe_key(name: str) -> str:
    return f"{settings.HEALTH_PREFIX}trial:{name}"


_redis_clients: dict[asyncio.AbstractEventLoop, Any] = {}


def _redis() -> Any:
    """One Redis client per event loop (a client's connections belong to the loop that made them)."""
    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        _redis_clients[loop] = client
    return client


async def _write_shared(values: dict[str, str], forget: Sequence[str], trial: str) -> None:
    try:
        client = _redis()
        if values:
            await client.hset(_hash_key(), mapping=values)
        if forget:
            await client.hdel(_hash_key(), *forget)
        if trial:
            await client.delete(_probe_key(trial))
    except Exception as exc:
        logger.warning("circuit state not shared in Redis: %s", exc)


def decode_shared(raw: dict[Any, Any], now: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The hash's entries still in force, and the names of those that lapsed (to delete)."""
    live: dict[str, dict[str, Any]] = {}
    lapsed: list[str] = []
    for name, value in raw.items():
        name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            entry = json.loads(value)
            until = float(entry["until"])
        except (ValueError, KeyError, TypeError):
            lapsed.append(name)
            continue
        # A circuit past its rest stays listed until its trial settles it; a key's rest simply ends.
        if until > now or ("#" not in name and until > now - PROBE_SECONDS):
            live[name] = entry
        else:
            lapsed.append(name)
    return live, lapsed


async def follow_shared() -> None:
    """The worker's job: read the shared circuits (nothing to do without Redis)."""
    if not settings.REDIS_URL:
        return
    client = _redis()
    try:
        raw = await client.hgetall(_hash_key())
    except Exception as exc:
        logger.warning("circuit state not read from Redis: %s", exc)
        return
    live, lapsed = decode_shared(raw, time.time())
    health.apply_shared(live)
    if lapsed:
        try:
            await client.hdel(_hash_key(), *lapsed)
        except Exception as exc:
            logger.debug("lapsed circuit entries not removed: %s", exc)


def circuit_views() -> list[CircuitView]:
    """Every circuit known, as the admin shows them (a synchronous view, on another thread than the request
    path: it reads, never writes): this process's, with the openings shared in Redis when it is configured (the
    admin may be served by a worker that carries no traffic)."""
    now = time.time()
    local = {view.target: view for view in health.views(list(health.circuits))}
    if not settings.REDIS_URL:
        return list(local.values())
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        raw = client.hgetall(_hash_key())
    except Exception as exc:
        logger.warning("circuit state not read from Redis: %s", exc)
        return list(local.values())
    live, _ = decode_shared(raw, now)
    for name, entry in live.items():
        until = float(entry["until"])
        view = local.get(name)
        if "#" in name or (view is not None and view.open_until >= until):
            continue
        state = CircuitState.OPEN if until > now else CircuitState.HALF_OPEN
        rate = view.error_rate if view is not None else None
        local[name] = CircuitView(name, state, until, rate, str(entry.get("error", "")))
    return list(local.values())


health = Health()
worker.register("shared circuits", follow_shared)
metrics.register_gauge(
    "llmproxy_open_circuits",
    "Targets whose circuit is open or half-open, as this process sees them (shared through Redis when set).",
    health.open_circuits,
)
