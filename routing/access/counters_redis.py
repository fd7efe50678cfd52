"""Rate-limit counters in Redis: one Lua script per admission (one round trip, atomic across workers and hosts).

A window counter is a string that expires with its window; a stream counter is a sorted set of leases scored by
when they lapse. The worker serving a stream renews its lease every LEASE_RENEW_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from routing.access.counters import (
    LEASE_RENEW_SECONDS,
    STREAM_LEASE_SECONDS,
    STREAM_RETRY_AFTER,
    STREAMS,
    Counter,
    Refusal,
    Store,
    window_seconds,
)

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


class RedisStore(Store):
    """Counters in Redis: a string per window counter, a sorted set of leases per stream counter."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._streams: dict[str, Sequence[Counter]] = {}  # lease -> the stream counters it holds a slot of
        self._last_renewal = 0.0

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
            streams = [c for c in counters if c.kind == STREAMS]
            if streams:
                self._streams[lease] = streams
            return None
        wait = STREAM_RETRY_AFTER if int(wait_ms) < 0 else int(wait_ms) / 1000
        return Refusal(counters[int(index) - 1], wait)

    def finish(
        self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str
    ) -> Awaitable[None] | None:
        self._streams.pop(lease, None)
        if not (streams or (tokens and count)):
            return None
        keys = [self.prefix + c.name for c in (*(tokens if count else ()), *streams)]
        args = [round(window_seconds() * 1000), count, lease, len(tokens) if count else 0]
        result: Awaitable[None] = self._script("finish")(keys=keys, args=args)
        return result

    async def upkeep(self) -> None:
        """Keep this worker's running streams counted."""
        now = time.monotonic()
        if not self._streams or now - self._last_renewal < LEASE_RENEW_SECONDS:
            return
        self._last_renewal = now
        pairs = [(c.name, lease) for lease, streams in list(self._streams.items()) for c in streams]
        keys = [self.prefix + name for name, _ in pairs]
        await self._script("renew")(keys=keys, args=[round(STREAM_LEASE_SECONDS * 1000), *(m for _, m in pairs)])
