"""The database's rate-limit counters reserve ahead far from a limit (routing.access.counters_db), and stay exact.

Two `DatabaseStore`s in one process act as two workers: each has its own reservations and both count in the same
rows, as two daphne processes on one database do. The background worker's pass is `upkeep()`, called by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from routing.access import counters_db
from routing.access.counters import REQUESTS, STREAMS, TOKENS, Counter
from routing.access.counters_db import DatabaseStore
from routing.models import RateCounter, StreamLease
from routing.runtime.database import run_db

pytestmark = pytest.mark.django_db(transaction=True)

RPM = Counter(REQUESTS, "rpm:key:1", 100, "key")
RPM_FAR = Counter(REQUESTS, "rpm:key:2", 1_000_000, "key")


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many counter transactions ran."""
    seen: list[int] = []
    real: Callable[..., counters_db.Answer] = counters_db.transact

    def counted(*args: Any) -> counters_db.Answer:
        seen.append(1)
        return real(*args)

    monkeypatch.setattr(counters_db, "transact", counted)
    yield seen


async def admit(store: DatabaseStore, counters: list[Counter], lease: str = "") -> bool:
    if store.take_local(counters, lease):
        return True
    return await store.acquire(counters, lease) is None


async def admit_until_refused(store: DatabaseStore, counters: list[Counter]) -> int:
    admitted = 0
    while await admit(store, counters):
        admitted += 1
    return admitted


def counted_in_row(name: str) -> int:
    return RateCounter.objects.get(name=name).value


async def in_row(name: str) -> int:
    return await run_db(lambda: counted_in_row(name))


async def slots() -> int:
    return await run_db(StreamLease.objects.count)


def test_a_worker_with_traffic_admits_without_a_transaction_per_request(transactions: list[int]) -> None:
    big = Counter(REQUESTS, "rpm:key:1", 1_000_000, "key")

    async def scenario() -> None:
        store = DatabaseStore()
        for _ in range(50):  # no traffic measured yet: one transaction each
            assert await admit(store, [big])
        assert len(transactions) == 50
        await store.upkeep()  # the pass measures this worker's rate
        for _ in range(50):
            assert await admit(store, [big])

    run(scenario())
    assert len(transactions) <= 52
    assert counted_in_row(big.name) >= 100  # the reservation counts in the row at once


def test_two_workers_never_admit_more_than_the_limit_and_idle_reservations_go_back() -> None:
    async def scenario() -> tuple[int, int, int, int]:
        first, second = DatabaseStore(), DatabaseStore()
        for _ in range(20):
            assert await admit(first, [RPM])
        await first.upkeep()
        assert await admit(first, [RPM])  # reserves ahead for its next requests
        reserved = first._held[RPM.name].spare
        second_got = await admit_until_refused(second, [RPM])
        await first.upkeep()  # one admission since the last pass: still busy, keeps its reservation
        await first.upkeep()  # idle for a pass: gives it back
        second_got_after = await admit_until_refused(second, [RPM])
        return reserved, second_got, second_got_after, await admit_until_refused(first, [RPM])

    reserved, second_got, second_got_after, first_after = run(scenario())
    assert reserved > 0
    assert second_got == 100 - 21 - reserved  # refused while the other worker holds its reservation
    assert second_got_after == reserved and first_after == 0
    assert counted_in_row(RPM.name) == 100


def test_reservations_are_used_before_the_row_is_asked_again() -> None:
    async def scenario() -> int:
        first, second = DatabaseStore(), DatabaseStore()
        for _ in range(20):
            assert await admit(first, [RPM])
        await first.upkeep()
        return await admit_until_refused(first, [RPM]) + await admit_until_refused(second, [RPM])

    assert run(scenario()) == 80
    assert counted_in_row(RPM.name) == 100


def test_tokens_far_from_the_limit_are_written_at_the_next_pass_and_seen_by_other_workers() -> None:
    tpm = Counter(TOKENS, "tpm:key:1", 100_000, "key")

    async def scenario() -> None:
        first, second = DatabaseStore(), DatabaseStore()
        assert await admit(first, [tpm])
        assert first.finish([tpm], 400, (), "") is None  # far from the limit: kept back
        assert await in_row(tpm.name) == 0
        await first.upkeep()
        assert await in_row(tpm.name) == 400
        assert await admit(second, [tpm])
        assert second._held[tpm.name].value == 400

    run(scenario())


def test_tokens_near_the_limit_are_written_at_once_and_refuse_the_next_request() -> None:
    tpm = Counter(TOKENS, "tpm:key:1", 1000, "key")

    async def scenario() -> bool:
        first, second = DatabaseStore(), DatabaseStore()
        assert await admit(first, [tpm])
        pending = first.finish([tpm], 1200, (), "")
        assert pending is not None
        await pending
        return await admit(second, [tpm]) or await admit(first, [tpm])

    assert run(scenario()) is False  # neither the other worker nor this one (it knows what it wrote)
    assert counted_in_row("tpm:key:1") == 1200


def test_a_stream_slot_is_kept_for_the_next_stream_far_from_the_limit_and_given_back_when_idle() -> None:
    streams = Counter(STREAMS, "streams:key:1", 1000, "key")

    async def scenario() -> list[int]:
        store = DatabaseStore()
        assert await admit(store, [streams], "lease-1")
        held = [await slots()]
        assert store.finish((), 0, [streams], "lease-1") is None  # kept, free, for the next stream
        held.append(await slots())
        assert store.take_local([streams], "lease-2")
        store.finish((), 0, [streams], "lease-2")
        await store.upkeep()
        await store.upkeep()  # idle for a pass: the free slot goes back
        held.append(await slots())
        return held

    assert run(scenario()) == [1, 1, 0]


def test_near_the_stream_limit_a_finished_stream_frees_its_slot_for_every_worker_at_once() -> None:
    streams = Counter(STREAMS, "streams:key:1", 2, "key")

    async def scenario() -> tuple[bool, bool, bool]:
        first, second = DatabaseStore(), DatabaseStore()
        assert await admit(first, [streams], "a") and await admit(first, [streams], "b")
        refused = await admit(second, [streams], "c")
        pending = first.finish((), 0, [streams], "a")
        assert pending is not None
        await pending
        return refused, await admit(second, [streams], "c"), await admit(second, [streams], "d")

    assert run(scenario()) == (False, True, False)
    assert StreamLease.objects.count() == 2


def test_a_stopping_worker_gives_back_its_reservations_and_writes_its_tokens() -> None:
    tpm = Counter(TOKENS, "tpm:key:1", 100_000, "key")

    async def scenario() -> int:
        store = DatabaseStore()
        for _ in range(20):
            assert await admit(store, [RPM, tpm])
        await store.upkeep()
        assert await admit(store, [RPM, tpm])
        store.finish([tpm], 70, (), "")
        assert store._held[RPM.name].spare > 0
        await store.at_stop()
        return 21

    admitted = run(scenario())
    assert counted_in_row(RPM.name) == admitted
    assert counted_in_row(tpm.name) == 70


def test_tokens_a_failed_write_could_not_count_are_written_by_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    tpm = Counter(TOKENS, "tpm:key:1", 100_000, "key")
    real = counters_db.transact

    def unreachable(*args: Any) -> counters_db.Answer:
        raise OSError("database unreachable")

    async def scenario() -> int:
        store = DatabaseStore()
        assert await admit(store, [tpm])
        store.finish([tpm], 300, (), "")
        monkeypatch.setattr(counters_db, "transact", unreachable)
        with pytest.raises(OSError):
            await store.upkeep()
        monkeypatch.setattr(counters_db, "transact", real)
        await store.upkeep()
        return await in_row(tpm.name)

    assert run(scenario()) == 300


def test_a_burst_of_streams_on_a_fresh_worker_costs_a_few_transactions_not_one_each(transactions: list[int]) -> None:
    streams = Counter(STREAMS, "streams:key:1", 10_000, "key")

    async def scenario() -> list[bool]:
        store = DatabaseStore()
        return await asyncio.gather(*(admit(store, [RPM_FAR, streams], f"lease-{i}") for i in range(200)))

    assert run(scenario()) == [True] * 200
    assert len(transactions) <= 5
    assert StreamLease.objects.count() == 200


def test_a_lowered_limit_applies_to_the_next_request_whatever_the_worker_reserved() -> None:
    lowered = Counter(REQUESTS, RPM_FAR.name, 25, "key")

    async def scenario() -> tuple[int, bool]:
        store = DatabaseStore()
        for _ in range(20):
            assert await admit(store, [RPM_FAR])
        await store.upkeep()
        assert await admit(store, [RPM_FAR])
        reserved = store._held[RPM_FAR.name].spare
        return reserved, await admit(store, [lowered])

    reserved, admitted = run(scenario())
    assert reserved > 0 and admitted  # the reservation went back: 22 requests counted, under the new limit
    assert counted_in_row(RPM_FAR.name) == 22
