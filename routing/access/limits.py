"""Admission of a generation: budgets (in memory, `routing.access.budgets`) and rate limits shared by every worker.

`admit()` runs after the route is authorised and before anything goes upstream. With no budget and no rate limit
on the key, its user or groups, it does nothing (a tuple is empty). Otherwise:

- budgets: `spend_book.check`, dict lookups;
- rate limits (requests per minute, tokens per minute, concurrent streams of the key and of its user): counters
  every worker shares, in Redis when `REDIS_URL` is set (one Lua script, one round trip, atomic across workers
  and hosts), else in the database (one short transaction on the database thread: the cost of having no Redis).

Windows are fixed: a counter's window starts with the first request it counts and lasts `RATE_LIMIT_WINDOW`
seconds (60), so at most twice the limit can start within any 60 s that straddle two windows. Requests count when
admitted; tokens count when an exchange ends (its input, cache and output tokens), so a request is refused once the
window's tokens have reached the limit, and the requests running at that moment may go beyond it. A stream holds a
lease in a per-subject set until it ends; the serving worker renews its leases every `LEASE_RENEW_SECONDS`, so the
streams of a worker that died stop counting after `STREAM_LEASE_SECONDS`.

If Redis (or the database) cannot be reached, requests are admitted and the failure is logged: the limits protect
capacity, they are not an access control. Keys and access lists are never relaxed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from routing.access.budgets import spend_book
from routing.access.policy import RateLimit
from routing.config.registry import KeyRecord
from routing.models import RateCounter, StreamLease
from routing.runtime.database import run_db
from routing.runtime.worker import worker
from translation.errors import ApiError, ErrorKind
from translation.usage import Usage

logger = logging.getLogger(__name__)

STREAM_LEASE_SECONDS = 60.0
LEASE_RENEW_SECONDS = 15.0
# A stream slot has no predictable end: clients are asked to try again after this.
STREAM_RETRY_AFTER = 1.0
_ERROR_LOG_INTERVAL = 10.0

REQUESTS, TOKENS, STREAMS = "r", "t", "s"


@dataclass(frozen=True, slots=True)
class Counter:
    kind: str
    name: str  # e.g. "rpm:key:5", without the Redis prefix
    limit: int
    who: str


@dataclass(frozen=True, slots=True)
class Refusal:
    counter: Counter
    retry_after: float  # seconds


def counters_for(limits: Sequence[RateLimit], stream: bool) -> list[Counter]:
    counters: list[Counter] = []
    for limit in limits:
        if limit.requests_per_minute is not None:
            counters.append(Counter(REQUESTS, f"rpm:{limit.counter}", limit.requests_per_minute, limit.who))
        if limit.tokens_per_minute is not None:
            counters.append(Counter(TOKENS, f"tpm:{limit.counter}", limit.tokens_per_minute, limit.who))
        if stream and limit.concurrent_streams is not None:
            counters.append(Counter(STREAMS, f"streams:{limit.counter}", limit.concurrent_streams, limit.who))
    return counters


def window_seconds() -> float:
    return float(settings.RATE_LIMIT_WINDOW)


def _per_window() -> str:
    window = window_seconds()
    return "per minute" if window == 60 else f"per {window:g} s"


def rate_limited(refusal: Refusal) -> ApiError:
    counter = refusal.counter
    seconds = max(1, math.ceil(refusal.retry_after))
    if counter.kind == STREAMS:
        reached = f"{counter.limit} concurrent stream{'s' if counter.limit != 1 else ''} already running"
    elif counter.kind == TOKENS:
        reached = f"{counter.limit} tokens {_per_window()} reached"
    else:
        reached = f"{counter.limit} request{'s' if counter.limit != 1 else ''} {_per_window()} reached"
    # "try again in Ns" is the phrase Codex reads its retry delay from.
    message = f"Rate limit of {counter.who}: {reached}. Please try again in {seconds}s."
    return ApiError(ErrorKind.RATE_LIMITED, message, retry_after=str(seconds))


def total_tokens(usage: Usage) -> int:
    return sum(
        n or 0 for n in (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens)
    )


# --- admission --------------------------------------------------------------------------------------------

_tasks: set[asyncio.Task[Any]] = set()
_active: dict[str, Admission] = {}  # lease -> admission holding stream slots, renewed while running
_last_renewal = 0.0
_last_error_log = 0.0
# Until when (monotonic) requests are admitted without checking: the counters' store did not answer in time.
_unchecked_until = 0.0


class Admission:
    """The counters one admitted exchange holds; `finish` gives back its stream slots and adds its tokens."""

    def __init__(self, backend: Backend, counters: Sequence[Counter], lease: str) -> None:
        self.backend = backend
        self.tokens = tuple(c for c in counters if c.kind == TOKENS)
        self.streams = tuple(c for c in counters if c.kind == STREAMS)
        self.lease = lease
        self.finished = False

    def finish(self, usage: Usage) -> None:
        """Synchronous, so that it also runs from a cancelled exchange: the work goes on in the background."""
        if self.finished:
            return
        self.finished = True
        _active.pop(self.lease, None)
        tokens = total_tokens(usage) if self.tokens else 0
        if self.streams or tokens:
            _background(self.backend.finish(self.tokens if tokens else (), tokens, self.streams, self.lease))


class Refused(Exception):
    """A budget or a rate limit refuses the generation; `error` says which, in the client's terms."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


async def admit(key: KeyRecord | None, stream: bool) -> Admission | None:
    """Refuse a generation over a budget or a rate limit (`Refused`), else return what it holds until it
    ends (None when nothing is counted)."""
    if key is None:
        return None
    rules = key.rules
    if rules.budgets:
        error = spend_book.check(rules, time.time())
        if error is not None:
            raise Refused(error)
    if not rules.limits:
        return None
    counters = counters_for(rules.limits, stream)
    if not counters:
        return None
    global _unchecked_until
    if time.monotonic() < _unchecked_until:
        return None
    backend = current_backend()
    lease = uuid.uuid4().hex
    try:
        # Bounded: a hung database (paused, not refusing) or Redis must not hang every request of a limited key.
        refusal = await asyncio.wait_for(backend.acquire(counters, lease), settings.LIMITS_CHECK_TIMEOUT)
    except asyncio.CancelledError:
        _give_back_streams(backend, counters, lease)
        raise
    except TimeoutError:
        # Fail open for a while, so that the requests behind this one do not each wait the timeout out.
        _unchecked_until = time.monotonic() + settings.LIMITS_FAIL_OPEN_SECONDS
        _give_back_streams(backend, counters, lease)
        _log_failure("rate limits could not be checked in time; requests admitted unchecked for a while", None)
        return None
    except Exception as exc:
        _log_failure("rate limits could not be checked; request admitted", exc)
        return None
    if refusal is not None:
        raise Refused(rate_limited(refusal))
    admission = Admission(backend, counters, lease)
    if admission.streams:
        _active[lease] = admission
    return admission


def _give_back_streams(backend: Backend, counters: Sequence[Counter], lease: str) -> None:
    """The script or transaction may still run: give back the stream slot it may take (an unfinished lease
    also expires by itself after STREAM_LEASE_SECONDS)."""
    streams = [c for c in counters if c.kind == STREAMS]
    if streams:
        _background(backend.finish((), 0, streams, lease))


def _background(work: Awaitable[None]) -> None:
    async def run() -> None:
        try:
            await work
        except Exception as exc:
            _log_failure("rate-limit counters could not be updated", exc)

    task = asyncio.get_running_loop().create_task(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _log_failure(what: str, exc: BaseException | None) -> None:
    global _last_error_log
    now = time.monotonic()
    if now - _last_error_log >= _ERROR_LOG_INTERVAL:
        _last_error_log = now
        if exc is None:
            logger.error("%s", what)
        else:
            logger.error("%s: %s: %s", what, type(exc).__name__, exc)


async def renew_leases() -> None:
    """Keep this worker's running streams counted (a job of the background worker, every pass)."""
    global _last_renewal
    now = time.monotonic()
    if not _active or now - _last_renewal < LEASE_RENEW_SECONDS:
        return
    _last_renewal = now
    by_backend: dict[Backend, list[tuple[str, str]]] = {}
    for admission in list(_active.values()):
        pairs = by_backend.setdefault(admission.backend, [])
        pairs.extend((c.name, admission.lease) for c in admission.streams)
    for backend, pairs in by_backend.items():
        try:
            await backend.renew(pairs)
        except Exception as exc:
            _log_failure("stream leases could not be renewed", exc)


# --- backends ---------------------------------------------------------------------------------------------


class Backend:
    async def acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        raise NotImplementedError

    async def finish(self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str) -> None:
        raise NotImplementedError

    async def renew(self, pairs: Sequence[tuple[str, str]]) -> None:
        raise NotImplementedError


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local member = ARGV[3]
for i, key in ipairs(KEYS) do
  local kind = ARGV[2 + 2 * i]
  local limit = tonumber(ARGV[3 + 2 * i])
  if kind == 's' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= limit then
      return {i, -1}
    end
  else
    local used = tonumber(redis.call('GET', key) or '0')
    if used >= limit then
      local ttl = redis.call('PTTL', key)
      if ttl < 0 then ttl = window end
      return {i, ttl}
    end
  end
end
for i, key in ipairs(KEYS) do
  local kind = ARGV[2 + 2 * i]
  if kind == 'r' then
    local n = redis.call('INCR', key)
    if n == 1 or redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, window)
    end
  elseif kind == 's' then
    redis.call('ZADD', key, now + lease, member)
    redis.call('PEXPIRE', key, lease)
  end
end
return {0, 0}
"""

_FINISH = """
local tokens = tonumber(ARGV[2])
local nt = tonumber(ARGV[4])
for i = 1, nt do
  redis.call('INCRBY', KEYS[i], tokens)
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
for i = nt + 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[3])
end
return 0
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease)
end
return 0
"""


class RedisBackend(Backend):
    """Counters in Redis: a string per window counter, a sorted set of leases per stream counter."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}

    def _script(self, name: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a client's connections belong to the event loop that made them
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
            self._scripts = {
                "acquire": client.register_script(_ACQUIRE),
                "finish": client.register_script(_FINISH),
                "renew": client.register_script(_RENEW),
            }
            self._loop = loop
        return self._scripts[name]

    async def acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        args: list[Any] = [round(window_seconds() * 1000), round(STREAM_LEASE_SECONDS * 1000), lease]
        for counter in counters:
            args.extend((counter.kind, counter.limit))
        keys = [self.prefix + c.name for c in counters]
        index, wait_ms = await self._script("acquire")(keys=keys, args=args)
        if not index:
            return None
        wait = STREAM_RETRY_AFTER if int(wait_ms) < 0 else int(wait_ms) / 1000
        return Refusal(counters[int(index) - 1], wait)

    async def finish(self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str) -> None:
        keys = [self.prefix + c.name for c in (*tokens, *streams)]
        args = [round(window_seconds() * 1000), count, lease, len(tokens)]
        await self._script("finish")(keys=keys, args=args)

    async def renew(self, pairs: Sequence[tuple[str, str]]) -> None:
        keys = [self.prefix + name for name, _ in pairs]
        await self._script("renew")(keys=keys, args=[round(STREAM_LEASE_SECONDS * 1000), *(m for _, m in pairs)])


class DatabaseBackend(Backend):
    """Counters in `RateCounter` rows and `StreamLease` rows, changed in one transaction on the database thread
    with the counter rows locked (SELECT … FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise)."""

    async def acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        refusal: Refusal | None = await _run_db(lambda: _acquire_rows(counters, lease, time.time(), window_seconds()))
        return refusal

    async def finish(self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str) -> None:
        await _run_db(lambda: _finish_rows(tokens, count, streams, lease, time.time(), window_seconds()))

    async def renew(self, pairs: Sequence[tuple[str, str]]) -> None:
        leases = sorted({lease for _, lease in pairs})
        expires = time.time() + STREAM_LEASE_SECONDS
        await _run_db(lambda: StreamLease.objects.filter(lease__in=leases).update(expires_at=expires))


def _run_db(fn: Callable[[], Any]) -> Awaitable[Any]:
    return run_db(fn, keep_connection=True)


def _no_durable_commit() -> None:
    """Counters need not survive a database crash: on PostgreSQL the transaction does not wait for its WAL flush."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def _locked_counters(names: Sequence[str]) -> dict[str, RateCounter]:
    names = sorted(set(names))  # one order everywhere: two workers never deadlock
    RateCounter.objects.bulk_create([RateCounter(name=n) for n in names], ignore_conflicts=True)
    return {row.name: row for row in RateCounter.objects.select_for_update().filter(name__in=names).order_by("name")}


def _acquire_rows(counters: Sequence[Counter], lease: str, now: float, window: float) -> Refusal | None:
    with transaction.atomic():
        _no_durable_commit()
        rows = _locked_counters([c.name for c in counters])
        for counter in counters:
            row = rows[counter.name]
            if counter.kind == STREAMS:
                StreamLease.objects.filter(subject=counter.name, expires_at__lte=now).delete()
                if StreamLease.objects.filter(subject=counter.name).count() >= counter.limit:
                    return Refusal(counter, STREAM_RETRY_AFTER)
            elif row.window_end > now and row.value >= counter.limit:
                return Refusal(counter, row.window_end - now)
        changed = []
        for counter in counters:
            row = rows[counter.name]
            if counter.kind == REQUESTS:
                if row.window_end > now:
                    row.value += 1
                else:
                    row.window_end, row.value = now + window, 1
                changed.append(row)
        if changed:
            RateCounter.objects.bulk_update(changed, ["window_end", "value"])
        streams = [c for c in counters if c.kind == STREAMS]
        if streams:
            expires = now + STREAM_LEASE_SECONDS
            StreamLease.objects.bulk_create(
                [StreamLease(subject=c.name, lease=lease, expires_at=expires) for c in streams]
            )
    return None


def _finish_rows(
    tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str, now: float, window: float
) -> None:
    with transaction.atomic():
        _no_durable_commit()
        if streams:
            StreamLease.objects.filter(lease=lease).delete()
        if tokens and count:
            rows = _locked_counters([c.name for c in tokens])
            for row in rows.values():
                if row.window_end > now:
                    row.value += count
                else:
                    row.window_end, row.value = now + window, count
            RateCounter.objects.bulk_update(list(rows.values()), ["window_end", "value"])


_backends: dict[tuple[str, str], Backend] = {}


def current_backend() -> Backend:
    url: str = settings.REDIS_URL
    prefix: str = settings.RATE_LIMIT_PREFIX
    backend = _backends.get((url, prefix))
    if backend is None:
        backend = RedisBackend(url, prefix) if url else DatabaseBackend()
        _backends[(url, prefix)] = backend
    return backend


worker.register("stream leases", renew_leases)
