"""The usage ledger never stops, never loses a finished exchange and never holds admission, through a real server:
malformed usage numbers from any upstream, anonymous and unauthenticated traffic, token counts under rate
limits, and a worker killed (SIGKILL) while the ledger cannot be written."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import User
from django.db import connection

from routing.models import KeyPolicy, ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply
from tests.liveserver import ProxyServer
from tests.test_ledger import BASE_PATH, wait_for_rows
from usage.models import LedgerEntry

pytestmark = pytest.mark.e2e

# Each format's usage object as a broken upstream sends it: a count as a string, one far beyond 2^63, a
# negative one, null and a float; and what the ledger must make of it (input excludes cache, as normalised).
MALFORMED: dict[str, tuple[dict[str, Any], dict[str, int | None]]] = {
    "openai-chat": (
        {
            "prompt_tokens": "7",
            "completion_tokens": 3.0,
            "total_tokens": 10**20,
            "prompt_tokens_details": {"cached_tokens": -5, "cache_write_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 10**20},
        },
        {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": None, "reasoning_tokens": None},
    ),
    "anthropic": (
        {
            "input_tokens": "7",
            "output_tokens": 3.0,
            "cache_read_input_tokens": 10**20,
            "cache_creation_input_tokens": -5,
            "output_tokens_details": None,
        },
        {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": None, "reasoning_tokens": None},
    ),
    "openai-responses": (
        {
            "input_tokens": "7",
            "output_tokens": 3.0,
            "total_tokens": None,
            "input_tokens_details": {"cached_tokens": 10**20, "cache_write_tokens": -5},
            "output_tokens_details": {"reasoning_tokens": None},
        },
        {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": None, "reasoning_tokens": None},
    ),
    "gemini": (
        {
            "promptTokenCount": "7",
            "candidatesTokenCount": 3.0,
            "cachedContentTokenCount": -5,
            "thoughtsTokenCount": None,
            "toolUsePromptTokenCount": 10**20,
            "totalTokenCount": 10**20,
        },
        {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": None, "reasoning_tokens": None},
    ),
}


def limited_to_two_streams(user: User) -> None:
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=user, label="laptop"), concurrent_streams=2)


def chat_stream(client: openai.OpenAI) -> str:
    chunks = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("upstream_format", list(MALFORMED))
def test_malformed_usage_is_coerced_and_the_ledger_and_the_stream_slots_go_on(proxy, alice, alice_key, upstream_format):
    wire, expected = MALFORMED[upstream_format]
    limited_to_two_streams(alice)
    with fake_upstream(upstream_format) as fake:
        add_route("up", upstream_format, fake.url + BASE_PATH[upstream_format], alias="m", model="real-model")
        proxy.sync()
        client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
        # Streamed (each takes one of the key's two stream slots) and whole, the usage malformed every time.
        fake.script(*[Reply(text="broken numbers", wire_usage=wire)] * 4)
        for _ in range(3):
            assert chat_stream(client) == "broken numbers"
        whole = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert whole.choices[0].message.content == "broken numbers"
        # Then ordinary exchanges: the slots were given back, and their rows are written behind the broken ones.
        for _ in range(3):
            assert chat_stream(client)
        rows = wait_for_rows(7)
    for row in rows[:4]:
        got = {name: getattr(row, name) for name in expected}
        assert got == expected, (upstream_format, row.stream)
        assert (row.outcome, row.status) == ("ok", 200)
    assert [r.outcome for r in rows[4:]] == ["ok"] * 3
    assert all(r.output_tokens is not None and r.output_tokens > 0 for r in rows[4:])


def test_anonymous_traffic_is_counted_in_the_metrics_only(proxy, alice_key):
    """An upstream that takes the client's own key lets requests through without a proxy key: they reach the
    upstream, count in the metrics and write no ledger row."""
    with fake_upstream("openai-chat") as fake:
        add_route("own-key", "openai-chat", fake.url + "/v1", alias="byok", model="real-model", forward_client_key=True)
        proxy.sync()
        before = requests_total(proxy, alias="byok", outcome="ok")
        client = openai.OpenAI(api_key="sk-the-clients-own-upstream-key", base_url=proxy.url + "/v1", max_retries=0)
        for _ in range(2):
            client.chat.completions.create(model="byok", messages=[{"role": "user", "content": "x"}])
        known = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
        known.chat.completions.create(model="byok", messages=[{"role": "user", "content": "x"}])
        (row,) = wait_for_rows(1)
        proxy.drain()
    assert LedgerEntry.objects.count() == 1
    assert row.key_id == ProxyKey.objects.get().id
    assert requests_total(proxy, alias="byok", outcome="ok") == before + 3


def test_token_counting_goes_through_the_rate_limits(proxy, alice, alice_key):
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice, label="laptop"), requests_per_minute=2)
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        proxy.sync()
        client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "hello there"}]
        for _ in range(2):
            assert client.messages.count_tokens(model="m", messages=messages).input_tokens > 0
        with pytest.raises(anthropic.RateLimitError):
            client.messages.count_tokens(model="m", messages=messages)
        with pytest.raises(anthropic.RateLimitError):  # the counts used the key's requests of this minute
            client.messages.create(model="m", max_tokens=5, messages=messages)


def requests_total(proxy: ProxyServer, **labels: str) -> int:
    total = 0
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if not line.startswith("llmproxy_requests_total{"):
            continue
        if all(f'{name}="{value}"' in line for name, value in labels.items()):
            total += int(line.rsplit(" ", 1)[1])
    return total


# --- crash durability -------------------------------------------------------------------------------------


class LedgerOutage:
    """Ledger writes that cannot happen, from another connection: on SQLite a write lock on the whole file (the
    server still reads it, in WAL mode; its writes wait and fail), on PostgreSQL an exclusive lock on the ledger
    table (the server's writes wait). Only this test's own database is touched."""

    def __init__(self) -> None:
        settings = connection.settings_dict
        self.vendor = connection.vendor
        if self.vendor == "sqlite":
            self.raw: Any = sqlite3.connect(settings["NAME"], isolation_level=None, timeout=30)
            self.raw.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.raw = psycopg.connect(
                dbname=settings["NAME"],
                user=settings.get("USER") or None,
                password=settings.get("PASSWORD") or None,
                host=settings.get("HOST") or "127.0.0.1",
                port=settings.get("PORT") or 5432,
            )
            self.raw.execute(f"LOCK TABLE {LedgerEntry._meta.db_table} IN ACCESS EXCLUSIVE MODE")

    def rows(self) -> int:
        return int(self.raw.execute(f"SELECT COUNT(*) FROM {LedgerEntry._meta.db_table}").fetchone()[0])

    def end(self) -> None:
        if self.vendor == "sqlite":
            self.raw.execute("ROLLBACK")
        else:
            self.raw.rollback()
        self.raw.close()


def spooled_lines(spool: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in spool.rglob("*.jsonl"))


@pytest.fixture
def chat_upstream(transactional_db: None) -> Iterator[Any]:
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        yield fake


def test_a_worker_killed_during_a_ledger_outage_loses_no_finished_exchange(
    tmp_path: Path, alice: User, chat_upstream: Any
) -> None:
    _, key = ProxyKey.issue(alice, label="ci")
    env = {"LEDGER_SPOOL_DIR": str(tmp_path)}
    first = ProxyServer(extra_env=env)
    outage: LedgerOutage | None = None
    try:
        client = openai.OpenAI(api_key=key, base_url=first.url + "/v1", max_retries=0)
        for _ in range(3):  # written as usual
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        first.drain()
        assert LedgerEntry.objects.count() == 3
        outage = LedgerOutage()
        for _ in range(5):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        for _ in range(2):
            with client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            ) as chunks:
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # Every finished exchange is in the spool (one write each, at its end) and none in the ledger.
        wait_until(lambda: spooled_lines(tmp_path) >= 7, first)
        assert outage.rows() == 3
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    finally:
        if outage is not None:
            outage.end()
        first.stop()
    second = ProxyServer(extra_env=env)
    try:
        httpx.get(second.url + "/health/ready", timeout=30)  # its first request starts its background worker
        rows = wait_for_rows(10)
        second.drain()
    finally:
        second.stop()
    assert LedgerEntry.objects.count() == 10, second.output()
    assert len({r.exchange_id for r in rows}) == len({r.upstream_request_id for r in rows}) == 10  # each once
    assert [r.stream for r in rows] == [False] * 8 + [True] * 2
    assert all(r.outcome == "ok" and r.output_tokens for r in rows)
    assert "adopted" in second.output()
    assert spooled_lines(tmp_path) == 0  # committed segments are deleted


def wait_until(condition: Any, server: ProxyServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held:\n{server.output()}")
        time.sleep(0.02)
