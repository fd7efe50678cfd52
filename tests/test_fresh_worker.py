"""A worker process just started, hit by many requests at once (a deploy, a restart under load)."""

from __future__ import annotations

import asyncio

import pytest

from routing.runtime import live
from routing.runtime.database import db_executor
from routing.runtime.worker import worker


@pytest.mark.django_db(transaction=True)
def test_requests_arriving_together_at_a_fresh_worker_wait_for_one_configuration_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = live.LiveConfig()
    loads: list[int] = []
    real = config.reload

    async def counted() -> None:
        loads.append(1)
        await real()

    monkeypatch.setattr(config, "reload", counted)

    async def first_requests() -> None:
        await asyncio.gather(*(config.ensure_started() for _ in range(200)))
        worker.halt()

    asyncio.run(first_requests())
    db_executor.submit(lambda: None).result(timeout=10)  # the worker's first pass is over before the test ends
    assert config.loaded and len(loads) == 1
