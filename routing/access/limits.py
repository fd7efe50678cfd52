"""Admission of a generation: budgets (in memory, `routing.access.budgets`) and rate limits shared by every worker.

`admit()` runs after the route is authorised and before anything goes upstream. With no budget and no rate limit
on the key, its user or groups, it does nothing (a tuple is empty). Otherwise:

- budgets: `spend_book.check`, dict lookups;
- rate limits (requests per minute, tokens per minute, concurrent streams of the key and of its user): counters
  every worker shares, in Redis when `REDIS_URL` is set (`routing.access.counters_redis`: one Lua script, one round
  trip, atomic across workers and hosts), else in the database (`routing.access.counters_db`: a short transaction
  on the database thread, which a worker skips while it holds reservations made ahead, far from a limit).

Windows are fixed: a counter's window starts with the first request it counts and lasts `RATE_LIMIT_WINDOW`
seconds (60), so at most twice the limit can start within any 60 s that straddle two windows. Requests count when
admitted; tokens count when an exchange ends (its input, cache and output tokens), so a request is refused once the
window's tokens have reached the limit, and the requests running at that moment may go beyond it. A stream holds a
lease until it ends; the serving worker renews its leases every `LEASE_RENEW_SECONDS`, so the streams of a worker
that died stop counting after `STREAM_LEASE_SECONDS`.

If Redis (or the database) cannot be reached, requests are admitted and the failure is logged: the limits protect
capacity, they are not an access control. Keys and access lists are never relaxed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from django.conf import settings

from routing.access.budgets import spend_book
from routing.access.counters import REQUESTS, STREAMS, TOKENS, Counter, Refusal, Store, window_seconds
from routing.access.counters_db import DatabaseStore
from routing.access.counters_redis import RedisStore
from routing.access.policy import RateLimit
from routing.config.registry import KeyRecord
from routing.runtime.worker import worker
from translation.errors import ApiError, ErrorKind
from translation.usage import Usage

logger = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL = 10.0


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
_last_error_log = 0.0
# Until when (monotonic) requests are admitted without checking: the counters' store did not answer in time.
_unchecked_until = 0.0


class Admission:
    """The counters one admitted exchange holds; `finish` gives back its stream slots and adds its tokens."""

    def __init__(self, store: Store, counters: Sequence[Counter], lease: str) -> None:
        self.store = store
        self.tokens = tuple(c for c in counters if c.kind == TOKENS)
        self.streams = tuple(c for c in counters if c.kind == STREAMS)
        self.lease = lease
        self.finished = False

    def finish(self, usage: Usage) -> None:
        """Synchronous, so that it also runs from a cancelled exchange: the work goes on in the background."""
        if self.finished:
            return
        self.finished = True
        tokens = total_tokens(usage) if self.tokens else 0
        if self.streams or tokens:
            _background(self.store.finish(self.tokens if tokens else (), tokens, self.streams, self.lease))


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
    store = current_store()
    lease = uuid.uuid4().hex
    if store.take_local(counters, lease):
        return Admission(store, counters, lease)
    try:
        # Bounded: a hung database (paused, not refusing) or Redis must not hang every request of a limited key.
        refusal = await asyncio.wait_for(store.acquire(counters, lease), settings.LIMITS_CHECK_TIMEOUT)
    except asyncio.CancelledError:
        _give_back_streams(store, counters, lease)
        raise
    except TimeoutError:
        # Fail open for a while, so that the requests behind this one do not each wait the timeout out.
        _unchecked_until = time.monotonic() + settings.LIMITS_FAIL_OPEN_SECONDS
        _give_back_streams(store, counters, lease)
        _log_failure("rate limits could not be checked in time; requests admitted unchecked for a while", None)
        return None
    except Exception as exc:
        _log_failure("rate limits could not be checked; request admitted", exc)
        return None
    if refusal is not None:
        raise Refused(rate_limited(refusal))
    return Admission(store, counters, lease)


def _give_back_streams(store: Store, counters: Sequence[Counter], lease: str) -> None:
    """The script or transaction may still run: give back the stream slot it may take (an unfinished lease
    also expires by itself after STREAM_LEASE_SECONDS)."""
    streams = [c for c in counters if c.kind == STREAMS]
    if streams:
        _background(store.finish((), 0, streams, lease))


def _background(work: Awaitable[None] | None) -> None:
    if work is None:
        return

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


_stores: dict[tuple[str, str], Store] = {}


def current_store() -> Store:
    url: str = settings.REDIS_URL
    prefix: str = settings.RATE_LIMIT_PREFIX
    store = _stores.get((url, prefix))
    if store is None:
        store = RedisStore(url, prefix) if url else DatabaseStore()
        _stores[(url, prefix)] = store
    return store


async def keep_counters() -> None:
    """Each pass: renew running streams' leases, write kept-back tokens, give back idle reservations."""
    for store in list(_stores.values()):
        try:
            await store.upkeep()
        except Exception as exc:
            _log_failure("rate-limit counters could not be kept up to date", exc)


async def give_back_counters() -> None:
    for store in list(_stores.values()):
        try:
            await store.at_stop()
        except Exception as exc:
            _log_failure("rate-limit counters could not be written at the stop", exc)


worker.register("rate-limit counters", keep_counters, at_stop=give_back_counters)
