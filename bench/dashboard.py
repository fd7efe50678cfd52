"""How fast the staff dashboard answers over a large ledger, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.dashboard --db sqlite                 # fills .cache/dashboard-bench.sqlite3
    .venv/bin/python -m bench.dashboard --db postgres               # creates, fills and drops dash_bench
    .venv/bin/python -m bench.dashboard --db sqlite --keep --reuse  # time again without refilling

It fills a database of its own with `--rows` realistic ledger rows (default 1,000,000) spread over the last 30
days — 8 users with 12 keys, 6 aliases on 5 upstream models, 4 client programs, a working-hours rhythm, errors,
timeouts and cancellations, some rows without token counts and the local model unpriced — written the way the
ledger's write path writes them: `bulk_create` in chunks, each with `usage.rollups.apply_rollups` in the same
transaction. Then it times `GET /dashboard/` through Django's test client as a staff user (median and worst of
`--repeat` runs after one warm-up) for the default range, 24 hours, 30 days and 30 days filtered by user, the
24-hour CSV export, and, for comparison, the page's aggregate queries run on the raw ledger instead of the
rollups. Last it checks that the rollups give the same figures as the ledger itself (and how close the histogram
percentiles are to the exact ones).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
SQLITE_PATH = BASE_DIR / ".cache" / "dashboard-bench.sqlite3"
PG_NAME = "dash_bench"


def configure(db: str, pg_url: str) -> str:
    if db == "sqlite":
        SQLITE_PATH.parent.mkdir(exist_ok=True)
        url = f"sqlite:///{SQLITE_PATH}"
    else:
        url = f"{pg_url.rstrip('/')}/{PG_NAME}"
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "0"  # no query log kept in memory, as in production
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")
    import django

    django.setup()
    return url


def pg_admin(pg_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg_url.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(sql)


USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
# (alias, upstream, upstream model, $/Mtok input, output, cache read, cache write; None = unpriced)
ALIASES: list[tuple[str, str, str, tuple[float, float, float, float] | None]] = [
    ("claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514", (3, 15, 0.3, 3.75)),
    ("claude-haiku", "anthropic", "claude-3-5-haiku-20241022", (0.8, 4, 0.08, 1)),
    ("gpt-5", "openai", "gpt-5", (1.25, 10, 0.125, 1.25)),
    ("gpt-5-mini", "openai", "gpt-5-mini", (0.25, 2, 0.025, 0.25)),
    ("gemini-pro", "gemini", "gemini-2.5-pro", (1.25, 10, 0.31, 1.25)),
    ("local", "ollama", "qwen3-coder", None),
]
CLIENTS = [("Claude Code", "anthropic", "/v1/messages"), ("Codex", "openai-responses", "/v1/responses"),
           ("Gemini CLI", "gemini", "/v1beta/models:streamGenerateContent"), ("OpenAI SDK", "openai-chat",
           "/v1/chat/completions")]  # fmt: skip
# Each model's typical speed: median duration (ms), median TTFT (ms), median tokens/s.
SPEED = {
    "claude-sonnet-4-20250514": (9000, 1400, 60),
    "claude-3-5-haiku-20241022": (3000, 600, 110),
    "gpt-5": (14000, 2500, 70),
    "gpt-5-mini": (5000, 900, 120),
    "gemini-2.5-pro": (11000, 2000, 90),
    "qwen3-coder": (7000, 400, 35),
}


def fill_start() -> datetime:
    """The filled month starts at a UTC midnight, so that its copies (`copy_back`) cover whole days."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=30)


# A copy lands this far before the one it copies: one day more than the filled span, so that no day (nor hour)
# of a copy meets one of the original's, and each copy's rollup rows are new rows (no sums to merge).
COPY_SHIFT_DAYS = 31


def copy_back(copies: int) -> float:
    """PostgreSQL: add `copies` earlier copies of the filled month (ledger rows and their rollups alike, shifted by
    COPY_SHIFT_DAYS each), so that a ledger of ten million rows is made in minutes, its rollups still exact."""
    from django.db import connection, transaction

    from usage import partitions
    from usage.models import LatencyRollup, LedgerEntry, UsageRollup

    began = time.perf_counter()
    start = fill_start()
    oldest = start - timedelta(days=COPY_SHIFT_DAYS * copies)
    month = partitions.Month.of(oldest)
    while month.start < start:
        partitions.ensure_partitions(now=month.start)  # its month and the next two, made before the rows come
        month = month.next()
    for model, moved in ((LedgerEntry, ("started_at", "finished_at")), (UsageRollup, ("period",)),
                         (LatencyRollup, ("period",))):  # fmt: skip
        table = model._meta.db_table
        columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
        since = "started_at" if model is LedgerEntry else "period"
        for copy in range(1, copies + 1):
            shift = f"interval '{COPY_SHIFT_DAYS * copy} days'"
            values = [f"{c} - {shift}" if c in moved else c for c in columns]
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = 0")
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {table} "
                    f"WHERE {since} >= %s",
                    [start],
                )
            if model is LedgerEntry:
                print(f"  copy {copy}: {LedgerEntry.objects.count():,} rows", file=sys.stderr)
    return time.perf_counter() - began


def fill(rows: int, chunk: int = 5000) -> float:
    from django.contrib.auth.models import User
    from django.db import transaction

    from routing.models import ProxyKey
    from usage.models import LedgerEntry, Outcome
    from usage.rollups import apply_rollups

    rng = random.Random(20261122)
    users = [User.objects.create_user(name, password="x") for name in USERS]
    User.objects.create_superuser("staff", password="staff-password")
    keys = []
    for index in range(12):
        user = users[index % len(users)]
        key, _ = ProxyKey.issue(user, label=f"key {index}")
        # A key is used from one client mostly, and with two or three aliases.
        client = CLIENTS[index % len(CLIENTS)]
        aliases = rng.sample(ALIASES, k=rng.choice((2, 3)))
        keys.append((key, user, client, aliases))

    now = datetime.now(UTC)
    start = fill_start()
    # Working hours are busier: accept a random moment with a weight by hour of day.
    weights = [0.15] * 7 + [0.6, 1, 1, 1, 1, 0.8, 1, 1, 1, 1, 0.8, 0.5, 0.35, 0.25] + [0.2] * 3
    moments: list[float] = []
    span = (now - start).total_seconds()
    while len(moments) < rows:
        offset = rng.random() * span
        moment = start.timestamp() + offset
        if rng.random() < weights[datetime.fromtimestamp(moment, UTC).hour]:
            moments.append(moment)
    moments.sort()

    began = time.perf_counter()
    outcomes = [Outcome.OK] * 940 + [Outcome.CLIENT_ERROR] * 20 + [Outcome.UPSTREAM_ERROR] * 20
    outcomes += [Outcome.TIMEOUT] * 5 + [Outcome.CANCELLED] * 15
    for first in range(0, rows, chunk):
        batch = []
        for moment in moments[first : first + chunk]:
            key, user, (program, dialect, endpoint), aliases = keys[rng.randrange(len(keys))]
            alias, upstream, model, price = aliases[rng.randrange(len(aliases))]
            outcome = outcomes[rng.randrange(len(outcomes))]
            duration_median, ttft_median, tps_median = SPEED[model]
            stream = rng.random() < 0.85
            fields: dict[str, Any] = {}
            if outcome in (Outcome.OK, Outcome.CANCELLED) and rng.random() > 0.03:
                fresh = int(rng.lognormvariate(math.log(2000), 1.2))
                cached = int(rng.lognormvariate(math.log(30000), 0.8)) if rng.random() < 0.7 else 0
                written = int(rng.lognormvariate(math.log(1500), 1)) if rng.random() < 0.3 else 0
                output = int(rng.lognormvariate(math.log(400), 1))
                fields = {
                    "input_tokens": fresh,
                    "output_tokens": output,
                    "cache_read_tokens": cached,
                    "cache_write_tokens": written,
                    "reasoning_tokens": int(output * 0.3) if "gpt-5" in model else None,
                }
                if price is not None:
                    cost = (fresh * price[0] + output * price[1] + cached * price[2] + written * price[3]) / 1e6
                    fields["cost_usd"] = Decimal(f"{cost:.8f}")
            duration = max(5, int(rng.lognormvariate(math.log(duration_median), 0.6)))
            if outcome != Outcome.OK:
                duration = max(5, int(duration * rng.random() * 0.5))
            ttft = int(rng.lognormvariate(math.log(ttft_median), 0.5)) if stream and fields else None
            if ttft is not None:
                ttft = min(ttft, duration)
            tps = rng.lognormvariate(math.log(tps_median), 0.35) if fields else None
            started = datetime.fromtimestamp(moment, UTC)
            batch.append(
                LedgerEntry(
                    started_at=started,
                    finished_at=started + timedelta(milliseconds=duration),
                    key=key,
                    user=user,
                    client_program=program,
                    client_version="1.0.0",
                    # A coding-agent session: one per key and three-hour stretch.
                    client_session=f"session-{key.pk}-{int(moment) // 10800}",
                    dialect=dialect,
                    endpoint=endpoint,
                    stream=stream,
                    requested_model=alias,
                    alias=alias,
                    upstream=upstream,
                    upstream_model=model,
                    outcome=outcome,
                    status={"ok": 200, "client_error": 400, "upstream_error": 502, "timeout": 504}.get(outcome, 200),
                    error_type="" if outcome in (Outcome.OK, Outcome.CANCELLED) else "api_error",
                    usage_partial=outcome == Outcome.CANCELLED and stream,
                    price_source="bench" if "cost_usd" in fields else "",
                    duration_ms=duration,
                    ttft_ms=ttft,
                    tokens_per_second=tps,
                    **fields,
                )
            )
        with transaction.atomic():
            LedgerEntry.objects.bulk_create(batch)
            apply_rollups(batch)
        done = first + len(batch)
        if done % 100_000 == 0 or done == rows:
            elapsed = time.perf_counter() - began
            print(f"  {done:,} rows in {elapsed:.0f} s ({done / elapsed:,.0f} rows/s)", file=sys.stderr)
    return time.perf_counter() - began


def timed(label: str, run: Any, repeat: int) -> dict[str, Any]:
    from django.db import connection

    queries = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        run()  # warm-up, and the query count
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    result = {"label": label, "median": statistics.median(times), "max": max(times), "queries": len(queries)}
    print(f"  {label:<46} median {result['median']:7.0f} ms   max {result['max']:7.0f} ms   {len(queries)} queries")
    return result


def measure(repeat: int) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User
    from django.test import Client

    from usage import queries
    from usage.models import LatencyRollup, LedgerEntry, UsageRollup

    print(
        f"ledger rows: {LedgerEntry.objects.count():,}; rollup rows: {UsageRollup.objects.count():,} usage, "
        f"{LatencyRollup.objects.count():,} histograms (hourly and daily)"
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="staff"))
    alice = User.objects.get(username="alice").pk

    def page(path: str) -> Any:
        def run() -> None:
            response = client.get(path)
            assert response.status_code == 200, response.status_code

        return run

    def me_page(user_id: int) -> Any:
        own = Client(HTTP_HOST="127.0.0.1")
        own.force_login(User.objects.get(pk=user_id))

        def run() -> None:
            response = own.get("/me/")
            assert response.status_code == 200, response.status_code

        return run

    def export(path: str) -> Any:
        def run() -> None:
            response = client.get(path)
            assert response.status_code == 200
            content: Any = response.streaming_content  # type: ignore[attr-defined]
            assert sum(len(part) for part in content) > 0

        return run

    def raw_page(params: dict[str, str]) -> Any:
        def run() -> None:
            filters = queries.Filters.from_params(params)
            queries.totals(filters, queries.RAW)
            queries.series(filters, queries.RAW)
            for dimension in queries.DIMENSIONS:
                queries.breakdown(filters, dimension, queries.RAW)

        return run

    results = [
        timed("GET /dashboard/ (default: 7 days)", page("/dashboard/"), repeat),
        timed("GET /dashboard/?range=24h", page("/dashboard/?range=24h"), repeat),
        timed("GET /dashboard/?range=30d", page("/dashboard/?range=30d"), repeat),
        timed("GET /dashboard/?range=30d&user=alice", page(f"/dashboard/?range=30d&user={alice}"), repeat),
        timed("GET /dashboard/?range=30d&alias=gpt-5", page("/dashboard/?range=30d&alias=gpt-5"), repeat),
        timed("GET /dashboard/?range=90d", page("/dashboard/?range=90d"), repeat),
        timed("GET /dashboard/sessions/ (7 days)", page("/dashboard/sessions/"), repeat),
        timed("GET /me/ (alice)", me_page(alice), repeat),
        timed("GET /admin/usage/ledgerentry/", page("/admin/usage/ledgerentry/"), repeat),
        timed(
            "GET /admin/usage/ledgerentry/?outcome=timeout",
            page("/admin/usage/ledgerentry/?outcome__exact=timeout"),
            repeat,
        ),
        timed("GET /dashboard/export.csv?range=24h", export("/dashboard/export.csv?range=24h"), 1),
        timed("GET /dashboard/export.csv?range=7d", export("/dashboard/export.csv?range=7d"), 1),
        timed("raw ledger aggregates, 7 days (no rollups)", raw_page({}), 1),
        timed("raw ledger aggregates, 30 days (no rollups)", raw_page({"range": "30d"}), 1),
    ]
    return results


def verify() -> None:
    """The rollups against the ledger itself: the same figures, and how far the histogram percentiles are."""
    from django.contrib.auth.models import User

    from usage import queries

    now = datetime.now(UTC)
    alice = User.objects.get(username="alice").pk
    custom = {"from": f"{now - timedelta(days=12):%Y-%m-%d}T13:00", "to": f"{now - timedelta(days=2):%Y-%m-%d}T09:00"}
    checks: tuple[dict[str, str], ...] = (
        {},
        {"range": "24h"},
        {"range": "30d", "user": str(alice)},
        {**custom, "alias": "gpt-5"},
        {"range": "90d"},
    )
    for params in checks:
        f = queries.Filters.from_params(params)
        same = queries.totals(f, queries.ROLLUP) == queries.totals(f, queries.RAW)
        same = same and queries.series(f, queries.ROLLUP) == queries.series(f, queries.RAW)
        for dimension in queries.DIMENSIONS:
            rolled = [(r.label, r.figures) for r in queries.breakdown(f, dimension, queries.ROLLUP).rows]
            same = same and rolled == [(r.label, r.figures) for r in queries.breakdown(f, dimension, queries.RAW).rows]
        exact = {s.upstream_model: s for s in queries.speed(f, exact_limit=10**9)}
        approx = {s.upstream_model: s for s in queries.speed(f, exact_limit=0)}
        worst = max(
            abs(a / e - 1)
            for model, speed in exact.items()
            for metric, found in speed.percentiles.items()
            for e, a in zip(found or (), approx[model].percentiles[metric] or (), strict=True)
        )
        print(
            f"  check {params}: rollups {'equal' if same else 'DIFFER FROM'} the ledger; percentiles within {worst:.1%}"
        )
        assert same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432", help="server, without a db name")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--copies",
        type=int,
        default=0,
        help="PostgreSQL: add this many copies of the filled month before it (9 with 1,000,000 rows: ten million)",
    )
    parser.add_argument("--reuse", action="store_true", help="time an already filled database")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-verify", action="store_true", help="skip comparing the rollups with the ledger")
    args = parser.parse_args()

    if not args.reuse:
        if args.db == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
        else:
            pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {PG_NAME}")
            pg_admin(args.pg_url, f"CREATE DATABASE {PG_NAME}")
    url = configure(args.db, args.pg_url)
    print(f"database: {url}")
    from django.core.management import call_command
    from django.db import connection

    try:
        if not args.reuse:
            call_command("migrate", verbosity=0)
            print(f"filling {args.rows:,} rows …")
            seconds = fill(args.rows)
            print(f"filled in {seconds:.0f} s ({args.rows / seconds:,.0f} rows/s, rollups included)")
            if args.copies:
                seconds = copy_back(args.copies)
                print(f"copied {args.copies} earlier month(s) in {seconds:.0f} s")
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        measure(args.repeat)
        if not args.no_verify:
            verify()
    finally:
        connection.close()
        if not args.keep:
            if args.db == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
            else:
                pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {PG_NAME}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {subprocess.getoutput('uname -m')}")


if __name__ == "__main__":
    main()
