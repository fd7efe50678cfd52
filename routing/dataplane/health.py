"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from django.conf import settings

from routing.dataplane.asgi_io import Send, send_json
from routing.runtime import drain
from routing.runtime.database import database_answers, run_db
from routing.runtime.live import live_config
from usage import ledger


async def liveness(send: Send) -> None:
    await send_json(send, 200, {"status": "ok"})


async def readiness(send: Send, *, detailed: bool) -> None:
    """Ready when the database answers within READINESS_DB_TIMEOUT, the usage ledger is written and this
    worker has loaded its routing configuration. The probe writes the ledger rows waiting in this worker
    first (so a probe, or a test, finds every finished exchange in the database afterwards).

    What failed is told to operators (`detailed`: the metrics token, or loopback); anyone else learns only
    which part is unavailable, not the database's error text.

    A draining server (told to stop: routing.runtime.drain) is not ready, whatever else holds: it answers 503
    at once, without asking the database, so that the load balancer takes it out before it stops accepting."""
    if drain.draining():
        token = live_config.snapshot.token
        await send_json(send, 503, {"status": "draining", "config_token": token, "problems": ["server stopping"]})
        return
    problems: list[tuple[str, str]] = []
    try:
        await asyncio.wait_for(_check_database(), settings.READINESS_DB_TIMEOUT)
    except TimeoutError:
        problems.append(("database unavailable", f"no answer within {settings.READINESS_DB_TIMEOUT:g} s"))
    except Exception as exc:
        problems.append(("database unavailable", f"{type(exc).__name__}: {exc}"))
    if not live_config.loaded:
        problems.append(("configuration not loaded", str(live_config.last_error)))
    payload = {
        "status": "ready" if not problems else "unavailable",
        "config_token": live_config.snapshot.token,
        "problems": [f"{what}: {detail}" if detailed else what for what, detail in problems],
    }
    await send_json(send, 200 if not problems else 503, payload)


async def _check_database() -> None:
    await live_config.ensure_started()
    await run_db(ledger.write_pending)
    await run_db(database_answers)
