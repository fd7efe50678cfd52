"""How many ledger rows a second PostgreSQL takes when several server processes write at once (issue 15).

    .venv/bin/python -m bench.ledger_writers                      # 1, 3 and 6 writers; batches of 10 and 200
    .venv/bin/python -m bench.ledger_writers --writers 1 4 --batch 50 --seconds 20

Each writer is a process doing what a server process's ledger writer does with what its spool collected: the same
batch function (`usage.ledger._write_facts`: the exchanges' rows and their hourly and daily rollups in one
transaction), as fast as it can, for `--seconds`. Their rows share the rollups' rows (the same hour, 8 users, 12
keys, 6 models, 3 client programs), so writers contend for them as replicas do. The database is one of its own
(`ledger_bench`, created and dropped), partitioned as migrations make it. Three replicas of two workers each are
six writers; a writer's batch is what it served in half a second (10 rows: 20 requests a second; 200: 400).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

DB_NAME = "ledger_bench"
MODELS = ["claude-sonnet-4-20250514", "gpt-5", "gpt-5-mini", "gemini-2.5-pro", "claude-3-5-haiku-20241022", "qwen3"]
PROGRAMS = [("Claude Code", "anthropic", "/v1/messages"), ("Codex", "openai-responses", "/v1/responses"),
            ("OpenAI SDK", "openai-chat", "/v1/chat/completions")]  # fmt: skip


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")
    import django

    django.setup()


def pg_admin(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def facts(rng: random.Random, owners: list[tuple[int, int]]) -> dict[str, Any]:
    """One finished exchange, as `usage.ledger.record_facts` hands it to the writer."""
    user_id, key_id = owners[rng.randrange(len(owners))]
    program, dialect, endpoint = PROGRAMS[rng.randrange(len(PROGRAMS))]
    model = MODELS[rng.randrange(len(MODELS))]
    ok = rng.random() > 0.05
    return {
        "id": uuid.uuid4().hex,
        "started_at": time.time() - 2.0,
        "duration": rng.uniform(0.5, 12.0),
        "ttft": rng.uniform(0.2, 2.0),
        "key_id": key_id,
        "user_id": user_id,
        "client_program": program,
        "client_version": "1.0.0",
        "client_session": f"session-{key_id}",
        "dialect": dialect,
        "endpoint": endpoint,
        "operation": "generate",
        "stream": True,
        "requested_model": model,
        "alias": model,
        "upstream": "up",
        "upstream_model": model,
        "outcome": "ok" if ok else "upstream_error",
        "status": 200 if ok else 502,
        "usage": [rng.randrange(50, 5000), rng.randrange(0, 30000), 0, rng.randrange(10, 2000), 0] if ok else None,
    }


def writer(url: str, owners: list[tuple[int, int]], batch: int, seconds: float, start_at: float, out: Any) -> None:
    setup_django(url)
    from django.db import connection

    from usage.ledger import _write_facts

    rng = random.Random(os.getpid())
    connection.ensure_connection()
    while time.time() < start_at:
        time.sleep(0.01)
    rows = 0
    times = []
    deadline = start_at + seconds
    while time.time() < deadline:
        began = time.perf_counter()
        rows += _write_facts([facts(rng, owners) for _ in range(batch)])
        times.append(time.perf_counter() - began)
    out.put((rows, times))


def run(url: str, owners: list[tuple[int, int]], writers: int, batch: int, seconds: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3.0  # every writer has started Django and connected by then
    processes = [
        context.Process(target=writer, args=(url, owners, batch, seconds, start_at, out)) for _ in range(writers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join()
    rows = sum(r for r, _ in results)
    times = sorted(t for _, ts in results for t in ts)
    return {
        "rows_per_second": rows / seconds,
        "batch_median_ms": statistics.median(times) * 1000,
        "batch_p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432", help="server, without a db name")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    server = args.pg_url.rstrip("/")
    pg_admin(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    pg_admin(server, f"CREATE DATABASE {DB_NAME}")
    url = f"{server}/{DB_NAME}"
    try:
        setup_django(url)
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection

        from routing.models import ProxyKey

        call_command("migrate", verbosity=0)
        users = [User.objects.create_user(f"user{i}") for i in range(8)]
        owners = [(users[i % 8].pk, ProxyKey.issue(users[i % 8], label=f"key {i}")[0].pk) for i in range(12)]
        connection.close()
        print(f"database: {url} (ledger partitioned by month); {args.seconds:.0f} s per run")
        for batch in args.batch:
            for writers in args.writers:
                result = run(url, owners, writers, batch, args.seconds)
                print(
                    f"  {writers} writer(s), batches of {batch:>3}: {result['rows_per_second']:8,.0f} rows/s   "
                    f"batch median {result['batch_median_ms']:6.1f} ms   p99 {result['batch_p99_ms']:6.1f} ms"
                )
    finally:
        pg_admin(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {subprocess.getoutput('uname -m')}")


if __name__ == "__main__":
    main()
