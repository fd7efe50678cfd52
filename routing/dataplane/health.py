"""Liveness and readiness probes."""

from __future__ import annotations

from routing.dataplane.asgi_io import Send, send_json
from routing.runtime.database import database_answers, run_db
from routing.runtime.live import live_config
from usage import ledger


async def liveness(send: Send) -> None:
    await send_json(send, 200, {"status": "ok"})


async def readiness(send: Send) -> None:
    """Ready when the database answers, the usage ledger is written and this worker has loaded its routing
    configuration. The probe writes the ledger rows waiting in this worker first (so a probe, or a test,
    finds every finished exchange in the database afterwards)."""
    await live_config.ensure_started()
    problems: list[str] = []
    try:
        await run_db(ledger.write_pending)
        await run_db(database_answers)
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}: {exc}")
    if not live_config.loaded:
        problems.append(f"configuration not loaded: {live_config.last_error}")
    payload = {
        "status": "ready" if not problems else "unavailable",
        "config_token": live_config.snapshot.token,
        "problems": problems,
    }
    await send_json(send, 200 if not problems else 503, payload)
