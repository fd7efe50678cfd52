"""Rate-limit counters in the database, for deployments without Redis: exact across workers, and off the request
path while a limit is far away.

The rows: a `RateCounter` per window counter (requests or tokens of a key or user, the window it counts in) and a
`StreamLease` per stream slot. Every change is one short transaction on the database thread, with the counter rows
locked (SELECT … FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise).

A transaction per request costs milliseconds of the database thread and a round trip on the request's path, so a
worker **reserves ahead** while a limit is far away:

- requests: when it counts an admission it also counts up to a second's worth of its own recent admissions
  (never more than a quarter of what is left in the window) and admits that many more without asking; what it has
  not used after a pass of the background worker without admissions goes back into the row;
- streams: it takes as many slots again as it has streams running (a quarter of what is left, at most), keeps
  the slot of a stream that ended for its next stream, and gives back slots unused for a pass;
- tokens are added in memory when an exchange ends and written at the next pass; a worker admits without asking
  while its last reading of the counter (at most `TOKENS_FRESH_SECONDS` old) plus its own unwritten tokens is
  below three quarters of the limit.

Reserved units count in the rows, so the workers together never admit more than a limit: a request is refused
only when the row, reservations included, has reached it. Near a limit nothing is reserved and every admission
and every ended stream is a transaction, as if nothing were kept back; far from it, another worker may be refused
while this one still holds reservations of at most a second of its own traffic.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from django.db import connection, transaction

from routing.access.counters import (
    LEASE_RENEW_SECONDS,
    REQUESTS,
    STREAM_LEASE_SECONDS,
    STREAM_RETRY_AFTER,
    STREAMS,
    TOKENS,
    Counter,
    Refusal,
    Store,
    window_seconds,
)
from routing.models import RateCounter, StreamLease
from routing.runtime.database import run_db
from routing.runtime.looplock import LoopLock

# A worker reserves what it admitted in about this many seconds, and reads token counters this often while used.
RESERVE_SECONDS = 1.0
TOKENS_FRESH_SECONDS = 1.0
_MAX_RESERVED = 10_000


def _spare(wanted: int, limit: int, used: int) -> int:
    """How many more units than the one asked for a worker may reserve: at most a quarter of what is left."""
    return max(0, min(wanted, _MAX_RESERVED, (limit - used - 1) // 4))


# --- the transaction ------------------------------------------------------------------------------------------


@dataclass
class Ask:
    """What one transaction does: an admission to decide, and what this worker kept back to write or give back."""

    admit: list[tuple[Counter, int]] = field(default_factory=list)  # counter, spare wanted
    add_tokens: dict[str, int] = field(default_factory=dict)
    give_back: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (requests, their window end)
    drop_slots: list[str] = field(default_factory=list)
    renew_slots: list[str] = field(default_factory=list)
    read: set[str] = field(default_factory=set)  # token counters to report

    def __bool__(self) -> bool:
        return bool(self.admit or self.add_tokens or self.give_back or self.drop_slots or self.renew_slots or self.read)


@dataclass
class Answer:
    refusal: Refusal | None = None
    spares: dict[str, tuple[int, float]] = field(default_factory=dict)  # requests: name -> (spare, window end)
    slots: dict[str, list[str]] = field(default_factory=dict)  # streams: name -> slots taken (the first: the caller's)
    keep_free: dict[str, int] = field(default_factory=dict)  # streams: free slots the worker may keep
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # tokens: name -> (value, window end)


def transact(ask: Ask, now: float, window: float) -> Answer:
    """Run on the database thread: one transaction."""
    answer = Answer()
    with transaction.atomic():
        if connection.vendor == "postgresql":  # counters need not survive a crash: do not wait for the WAL flush
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        names = {c.name for c, _ in ask.admit if c.kind != STREAMS} | set(ask.add_tokens) | set(ask.give_back)
        rows = _locked_counters(names | ask.read)
        for name, count in ask.add_tokens.items():
            row = rows[name]
            if row.window_end > now:
                row.value += count
            else:
                row.window_end, row.value = now + window, count
        for name, (count, window_end) in ask.give_back.items():
            row = rows[name]
            if row.window_end == window_end:
                row.value = max(0, row.value - count)
        if ask.drop_slots:
            StreamLease.objects.filter(lease__in=ask.drop_slots).delete()
        if ask.renew_slots:
            StreamLease.objects.filter(lease__in=ask.renew_slots).update(expires_at=now + STREAM_LEASE_SECONDS)
        answer.refusal = _admit(ask.admit, rows, answer, now, window)
        # Token counters read, admitted or just added to: the worker's view of them must include what it wrote.
        for name in ask.read | set(ask.add_tokens) | {c.name for c, _ in ask.admit if c.kind == TOKENS}:
            row = rows[name]
            answer.tokens[name] = (row.value, row.window_end) if row.window_end > now else (0, 0.0)
        if rows:
            RateCounter.objects.bulk_update(list(rows.values()), ["window_end", "value"])
    return answer


def _locked_counters(names: set[str]) -> dict[str, RateCounter]:
    if not names:
        return {}
    ordered = sorted(names)  # one order everywhere: two workers never deadlock
    RateCounter.objects.bulk_create([RateCounter(name=n) for n in ordered], ignore_conflicts=True)
    return {row.name: row for row in RateCounter.objects.select_for_update().filter(name__in=ordered).order_by("name")}


def _admit(
    admit: list[tuple[Counter, int]], rows: dict[str, RateCounter], answer: Answer, now: float, window: float
) -> Refusal | None:
    running: dict[str, int] = {}
    for counter, _ in admit:
        if counter.kind == STREAMS:
            StreamLease.objects.filter(subject=counter.name, expires_at__lte=now).delete()
            running[counter.name] = StreamLease.objects.filter(subject=counter.name).count()
            if running[counter.name] >= counter.limit:
                return Refusal(counter, STREAM_RETRY_AFTER)
        else:
            row = rows[counter.name]
            if row.window_end > now and row.value >= counter.limit:
                return Refusal(counter, row.window_end - now)
    leases: list[StreamLease] = []
    for counter, wanted in admit:
        if counter.kind == REQUESTS:
            row = rows[counter.name]
            if row.window_end <= now:
                row.window_end, row.value = now + window, 0
            spare = _spare(wanted, counter.limit, row.value)
            row.value += 1 + spare
            answer.spares[counter.name] = (spare, row.window_end)
        elif counter.kind == STREAMS:
            spare = _spare(wanted, counter.limit, running[counter.name])
            slots = [uuid.uuid4().hex for _ in range(1 + spare)]
            leases += [StreamLease(subject=counter.name, lease=s, expires_at=now + STREAM_LEASE_SECONDS) for s in slots]
            answer.slots[counter.name] = slots
            answer.keep_free[counter.name] = _spare(_MAX_RESERVED, counter.limit, running[counter.name] + spare)
    if leases:
        StreamLease.objects.bulk_create(leases)
    return None


# --- what a worker holds --------------------------------------------------------------------------------------


@dataclass
class Held:
    """One counter as this worker sees it."""

    uses: int = 0  # admissions since the last pass
    waiting: int = 0  # admissions waiting for a transaction of this worker (the one running included)
    limit: int = 0  # the limit when the database last decided an admission of this counter
    rate: float = 0.0  # admissions per second over the last pass
    # requests: reserved and not yet used, in the window ending at window_end (epoch seconds)
    spare: int = 0
    window_end: float = 0.0
    # streams: slots held, free or by a running exchange (lease -> slot), and how many free ones to keep
    free: list[str] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)
    keep_free: int = 0
    # tokens: the row's value when last read (in the window ending at window_end), then this worker's own
    value: int = 0
    read_at: float = -math.inf  # monotonic
    unwritten: int = 0

    def wanted(self, kind: str) -> int:
        """Spare units to reserve with the next transaction: one for each admission waiting behind it, plus a
        second's worth of admissions; for streams, as many slots again as are running (what matters is how many
        run at once, not how often one starts)."""
        behind = self.waiting - 1
        if kind == STREAMS:
            return behind + (len(self.running) if self.rate else 0)
        return behind + math.ceil(self.rate * RESERVE_SECONDS)


class DatabaseStore(Store):
    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._lock = LoopLock()  # one transaction of this worker at a time: answers apply in order
        self._last_pass = time.monotonic()
        self._last_renewal = time.monotonic()

    def _get(self, name: str) -> Held:
        held = self._held.get(name)
        if held is None:
            held = self._held[name] = Held()
        return held

    def _has(self, counter: Counter, now: float, clock: float) -> bool:
        held = self._get(counter.name)
        if counter.limit < held.limit:  # lowered since this worker reserved: what it holds was sized for more
            return False
        if counter.kind == REQUESTS:
            return held.spare > 0 and held.window_end > now
        if counter.kind == STREAMS:
            return bool(held.free)
        value = held.value if held.window_end > now else 0
        fresh = clock - held.read_at <= TOKENS_FRESH_SECONDS
        return fresh and value + held.unwritten < counter.limit - counter.limit // 4

    def _take(self, counter: Counter, lease: str) -> None:
        held = self._held[counter.name]
        held.uses += 1
        if counter.kind == REQUESTS:
            held.spare -= 1
        elif counter.kind == STREAMS:
            held.running[lease] = held.free.pop()

    def take_local(self, counters: Sequence[Counter], lease: str) -> bool:
        now, clock = time.time(), time.monotonic()
        if not all(self._has(c, now, clock) for c in counters):
            return False
        for counter in counters:
            self._take(counter, lease)
        return True

    async def acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        task = asyncio.get_running_loop().create_task(self._acquire(counters, lease))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The transaction goes on: what it takes for this lease is given back once it is known.
            task.add_done_callback(lambda done: self._abandoned(done, counters, lease))
            raise

    async def _acquire(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        for counter in counters:
            self._get(counter.name).waiting += 1
        try:
            async with self._lock.get():
                return await self._acquire_locked(counters, lease)
        finally:
            for counter in counters:
                self._held[counter.name].waiting -= 1

    async def _acquire_locked(self, counters: Sequence[Counter], lease: str) -> Refusal | None:
        if self.take_local(counters, lease):  # the transaction this one waited for reserved enough
            return None
        now, clock = time.time(), time.monotonic()
        held_here = [c for c in counters if self._has(c, now, clock)]
        ask = self._kept_back(clock, final=False)
        for counter in counters:
            held = self._get(counter.name)
            if counter.limit < held.limit:  # lowered: what was reserved under the old limit goes back first
                if held.spare:
                    ask.give_back[counter.name], held.spare = (held.spare, held.window_end), 0
                ask.drop_slots += held.free
                held.free = []
        ask.admit = [(c, self._get(c.name).wanted(c.kind)) for c in counters if c not in held_here]
        answer = await self._transact(ask, now)
        if answer.refusal is not None:
            return answer.refusal
        for counter in counters:
            held = self._get(counter.name)
            if counter in held_here:
                self._take(counter, lease)
                continue
            held.uses, held.limit = held.uses + 1, counter.limit
            if counter.kind == STREAMS:
                slot, *spare = answer.slots[counter.name]
                held.running[lease] = slot
                held.free += spare
        return None

    def _abandoned(self, task: asyncio.Task[Refusal | None], counters: Sequence[Counter], lease: str) -> None:
        if not task.cancelled() and task.exception() is None and task.result() is None:
            self.finish((), 0, [c for c in counters if c.kind == STREAMS], lease)

    def _apply(self, answer: Answer, clock: float) -> None:
        for name, (spare, window_end) in answer.spares.items():
            held = self._get(name)
            held.spare, held.window_end = spare, window_end
        for name, keep in answer.keep_free.items():
            self._get(name).keep_free = keep
        for name, (value, window_end) in answer.tokens.items():
            held = self._get(name)
            held.value, held.window_end, held.read_at = value, window_end, clock

    def finish(
        self, tokens: Sequence[Counter], count: int, streams: Sequence[Counter], lease: str
    ) -> Awaitable[None] | None:
        now, clock = time.time(), time.monotonic()
        urgent = False
        for counter in tokens if count else ():
            held = self._get(counter.name)
            held.unwritten += count
            urgent = urgent or not self._has(counter, now, clock)  # near the limit: others must see it now
        for counter in streams:
            held = self._get(counter.name)
            slot = held.running.pop(lease, None)
            if slot is not None:
                held.free.append(slot)
                urgent = urgent or len(held.free) > held.keep_free
        return self._write(final=False) if urgent else None

    async def upkeep(self) -> None:
        await self._write(final=False, passing=True)

    async def at_stop(self) -> None:
        for held in self._held.values():
            held.keep_free = 0  # the streams still running give back their slots as they end
        await self._write(final=True)

    async def _write(self, *, final: bool, passing: bool = False) -> None:
        async with self._lock.get():
            clock = time.monotonic()
            if passing:
                self._measure_rates(clock)
            ask = self._kept_back(clock, final=final, passing=passing)
            if ask:
                await self._transact(ask, time.time())

    async def _transact(self, ask: Ask, now: float) -> Answer:
        try:
            answer = await run_db(lambda: transact(ask, now, window_seconds()))
        except Exception:
            for name, count in ask.add_tokens.items():  # not written: kept for the next transaction
                self._get(name).unwritten += count
            raise
        self._apply(answer, time.monotonic())
        return answer

    def _measure_rates(self, clock: float) -> None:
        elapsed = max(clock - self._last_pass, 1e-3)
        self._last_pass = clock
        for held in self._held.values():
            held.rate, held.uses = held.uses / elapsed, 0

    def _kept_back(self, clock: float, *, final: bool, passing: bool = False) -> Ask:
        """Take out of the worker's hands what should be written or given back now (the caller writes it): tokens
        not yet written; and, at a pass, reservations idle since the last one and token counters to read again
        (or everything, when the server stops); free stream slots beyond what may be kept."""
        ask = Ask()
        renew = passing and clock - self._last_renewal >= LEASE_RENEW_SECONDS
        if renew:
            self._last_renewal = clock
        for name, held in self._held.items():
            if held.unwritten:
                ask.add_tokens[name], held.unwritten = held.unwritten, 0
            idle = final or (passing and held.rate == 0)
            if held.spare and idle:
                ask.give_back[name] = (held.spare, held.window_end)
                held.spare = 0
            keep = 0 if idle else held.keep_free
            if len(held.free) > keep:
                ask.drop_slots += held.free[keep:]
                del held.free[keep:]
            if renew:
                ask.renew_slots += held.free + list(held.running.values())
            if passing and held.rate and held.read_at > -math.inf and not final:
                ask.read.add(name)
        return ask
