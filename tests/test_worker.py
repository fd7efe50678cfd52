"""The per-process background worker (routing.runtime.worker), driven by a clock the test controls: jobs run
when they are due and not before, one failing job does not stop the others, and a stopping server gets every
job's last word. Then the process's own jobs, on that clock: a key's last-used stamp and a new alias."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from routing.models import ModelAlias, ProxyKey, Upstream
from routing.runtime.live import LAST_USED_FLUSH_SECONDS, live_config
from routing.runtime.worker import Worker, worker
from translation.dialect import Dialect


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_each_job_runs_when_it_is_due_and_not_before(clock):
    runs: list[str] = []
    background = Worker(clock=clock)

    async def fast() -> None:
        runs.append("fast")

    async def slow() -> None:
        runs.append("slow")

    background.register("fast", fast)
    background.register("slow", slow, every=lambda: 10.0)

    await background.run_due()  # both run at the first pass
    clock.advance(0.5)
    await background.run_due()
    clock.advance(9.0)
    await background.run_due()  # 9.5 s after the first pass: not yet time for the slow one
    clock.advance(0.5)
    await background.run_due()
    assert runs == ["fast", "slow", "fast", "fast", "fast", "slow"]


async def test_a_failing_job_is_logged_and_the_others_still_run(clock, caplog):
    runs: list[str] = []
    background = Worker(clock=clock)

    async def broken() -> None:
        runs.append("broken")
        raise RuntimeError("database gone")

    async def ledger() -> None:
        runs.append("ledger")

    background.register("broken", broken)
    background.register("ledger", ledger)
    with caplog.at_level(logging.ERROR, logger="routing.runtime.worker"):
        await background.run_due()
        clock.advance(0.5)
        await background.run_due()
    assert runs == ["broken", "ledger", "broken", "ledger"]
    assert [r.getMessage() for r in caplog.records].count(
        "background job 'broken' failed; it runs again when next due"
    ) == 2


async def test_stopping_tells_the_stopping_callbacks_first_then_runs_every_last_word(clock):
    events: list[str] = []
    background = Worker(clock=clock)

    async def write() -> None:
        events.append("write")

    async def final_write() -> None:
        events.append("final write")

    background.register("ledger", write, at_stop=final_write)
    background.register("live view", write)  # no last word
    background.on_stopping(lambda: events.append("stopping"))
    background.start()
    assert background.running
    await background.stop()
    assert not background.running
    # The loop may have made its first pass before the stop; the last word comes after "stopping", once.
    assert events[-2:] == ["stopping", "final write"]
    assert events.count("final write") == 1


@pytest.fixture
def process_clock(clock: FakeClock) -> Iterator[FakeClock]:
    """The process's own worker on the test's clock (its jobs due from now)."""
    saved = worker.clock
    worker.clock = clock
    for job in worker.jobs.values():
        job.due = 0.0
    try:
        yield clock
    finally:
        worker.clock = saved


@pytest.mark.django_db(transaction=True)
async def test_a_used_key_is_stamped_after_the_flush_interval_and_not_before(process_clock):
    user = await User.objects.acreate(username="stamp")
    key = await ProxyKey.objects.acreate(user=user, label="laptop", key_hash="h" * 64, prefix="sk-test")
    await worker.run_due()  # first pass: nothing used yet
    live_config.note_key_used(key.pk)

    process_clock.advance(LAST_USED_FLUSH_SECONDS - 1)
    await worker.run_due()
    await key.arefresh_from_db()
    assert key.last_used_at is None

    process_clock.advance(1)
    await worker.run_due()
    await key.arefresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.django_db(transaction=True)
async def test_an_alias_added_in_the_admin_is_served_after_the_next_refresh(process_clock, settings):
    settings.CONFIG_REFRESH_INTERVAL = 0.5
    await live_config.reload()
    assert live_config.snapshot.resolve("team-model") is None
    upstream = await Upstream.objects.acreate(name="local", format=Dialect.OPENAI_CHAT, base_url="http://127.0.0.1:9")
    await ModelAlias.objects.acreate(name="team-model", upstream=upstream, upstream_model="qwen")

    await worker.run_due()
    route = live_config.snapshot.resolve("team-model")
    assert route is not None and route.upstream_model == "qwen"


async def test_jobs_that_are_only_a_last_word_speak_after_the_others(clock):
    said: list[str] = []
    background = Worker(clock=clock)

    async def close_connections() -> None:
        said.append("connections closed")

    async def write_ledger() -> None:
        said.append("ledger written")

    background.register("connections", None, at_stop=close_connections)
    background.register("ledger", write_ledger, at_stop=write_ledger)
    await background.run_due()
    assert said == ["ledger written"]  # a last-word-only job never runs on a pass
    await background.stop()
    assert said == ["ledger written", "ledger written", "connections closed"]
