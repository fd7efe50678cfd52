"""Many replicas, one proxy (issue 15): three server processes on one PostgreSQL and one Redis behind a round-robin
load balancer act as one proxy. Edits and revocations reach all three within a second; a requests-per-minute limit
and a concurrent-streams limit hold across them exactly; the ledger has exactly one row per exchange; and when one
replica is killed mid-stream, only its own clients notice and the balancer stops sending to it. A live view open
on one replica shows the exchanges of all three (through the Redis channel layer).

Runs when the tests run on PostgreSQL (`DATABASE_URL=postgres://…`): SQLite is one machine's file."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from websockets.sync.client import connect as websockets_connect

from routing.models import KeyPolicy, ModelAlias, ProxyKey, Upstream, UserPolicy
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from tests.liveserver import ProxyServer
from tests.netservers import RoundRobinBalancer
from tests.test_live import _session_cookie
from tests.test_rate_limits import REDIS_URL, redis_available, redis_client
from usage import live
from usage.models import LedgerEntry, ModelPrice

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
WINDOW = 4.0


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker) -> Iterator[tuple[list[ProxyServer], RoundRobinBalancer]]:
    if connection.vendor != "postgresql":
        pytest.skip("three replicas on one database: run the suite with DATABASE_URL=postgres://…")
    if not redis_available():
        pytest.fail(f"no Redis at {REDIS_URL}: the replicas share their counters and circuits there")
    prefix = f"llmproxy-replicas-{uuid.uuid4().hex[:8]}:"
    env = {
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_PREFIX": prefix,
        "HEALTH_PREFIX": prefix,
        "RATE_LIMIT_WINDOW": str(WINDOW),
        "LEDGER_SPOOL_DIR": "",
    }
    replicas = [ProxyServer(env) for _ in range(3)]
    try:
        with RoundRobinBalancer([server.port for server in replicas]) as balancer:
            yield replicas, balancer
    finally:
        for server in replicas:
            if server.process.poll() is None:
                server.stop()
        client = redis_client()
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


@pytest.fixture
def replicas(cluster, transactional_db) -> Iterator[list[ProxyServer]]:
    yield cluster[0]
    for server in cluster[0]:
        if server.process.poll() is None:
            server.drain()


@pytest.fixture
def balancer(cluster) -> RoundRobinBalancer:
    return cluster[1]


@pytest.fixture
def fake(transactional_db) -> Iterator:
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=12, output=8))) as upstream:
        up = Upstream.objects.create(name="up", format="openai-chat", base_url=upstream.url + "/v1")
        ModelAlias.objects.create(name="m", upstream=up, upstream_model="real-model")
        yield upstream


def post(url: str, key: str, model: str = "m", stream: bool = False) -> httpx.Response:
    return httpx.post(
        url + CHAT,
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=15,
    )


def sync(replicas: list[ProxyServer]) -> None:
    for server in replicas:
        server.sync()


def within(seconds: float, condition) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_an_edit_and_a_revocation_reach_every_replica_within_a_second(replicas, alice, alice_key, fake):
    sync(replicas)
    upstream = Upstream.objects.get(name="up")
    ModelAlias.objects.create(name="new-alias", upstream=upstream, upstream_model="real-model")
    for server in replicas:
        within(1.0, lambda server=server: post(server.url, alice_key, "new-alias").status_code == 200)
    key = ProxyKey.objects.get(user=alice)
    key.revoked_at = timezone.now()
    key.save()
    for server in replicas:
        within(1.0, lambda server=server: post(server.url, alice_key).status_code == 401)


def test_rate_limits_hold_exactly_across_the_replicas(replicas, balancer, alice, alice_key, fake):
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice), requests_per_minute=7)
    sync(replicas)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = post(balancer.url, alice_key).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [429] * 14
    assert fake.request_count == 7


def test_concurrent_streams_hold_exactly_across_the_replicas(replicas, alice, alice_key, fake):
    UserPolicy.objects.create(user=alice, concurrent_streams=2)
    fake.script(*[Reply(text="held open", chunks=4, stall_after=1)] * 2)
    sync(replicas)
    held = []
    for server in replicas[:2]:
        client = httpx.Client(timeout=10)
        request = client.build_request(
            "POST",
            server.url + CHAT,
            headers={"authorization": f"Bearer {alice_key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        response = client.send(request, stream=True)
        assert response.status_code == 200
        chunks = response.iter_raw()
        next(chunks)
        held.append((client, response, chunks))
    assert [post(server.url, alice_key, stream=True).status_code for server in replicas] == [429, 429, 429]
    for client, response, _ in held:
        response.close()
        client.close()


def test_a_spent_budget_stops_every_replica_within_its_refresh(replicas, alice, alice_key, fake):
    """A budget's spend is each worker's own at once, the others' from the rollups every BUDGET_REFRESH_INTERVAL
    (2 s): docs/deployment.md's overshoot. Twenty tokens at $1,000 per million tokens: two cents an exchange."""
    ModelPrice.objects.create(model_pattern="real-model", input_per_mtok=1000, output_per_mtok=1000)
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice), budget_usd=Decimal("0.05"))
    sync(replicas)
    assert [post(replicas[0].url, alice_key).status_code for _ in range(3)] == [200, 200, 200]  # 6 cents spent
    replicas[0].drain()  # the rows are priced and written: its own spend book has them
    assert post(replicas[0].url, alice_key).status_code == 429
    # The other replicas learn it at their next refresh: what they admit until then is the overshoot.
    for server in replicas[1:]:
        within(3.5, lambda server=server: post(server.url, alice_key).status_code == 429)


def test_the_ledger_has_exactly_one_row_per_exchange_from_every_replica(replicas, balancer, alice, alice_key, fake):
    sync(replicas)
    before = LedgerEntry.objects.count()
    statuses: list[int] = []
    lock = threading.Lock()

    def some(count: int) -> None:
        for _ in range(count):
            status = post(balancer.url, alice_key).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=some, args=(10,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 60
    for server in replicas:
        server.drain()
    assert LedgerEntry.objects.count() - before == 60
    ids = list(LedgerEntry.objects.values_list("exchange_id", flat=True))
    assert len(ids) == len(set(ids))
    # Every replica served some: each writes its own process token at the head of its exchange ids.
    assert len({exchange_id.split("-")[0] for exchange_id in ids}) == 3
    assert set(LedgerEntry.objects.values_list("outcome", flat=True)) == {"ok"}


def test_the_live_view_on_one_replica_shows_the_exchanges_of_all_three(replicas, balancer, alice, alice_key, fake):
    operator = User.objects.create_user("operator", password="operator-password", is_staff=True)
    ModelAlias.objects.create(name="watched", upstream=Upstream.objects.get(name="up"), upstream_model="real-model")
    sync(replicas)
    cookie = _session_cookie(operator).decode()
    page = balancer.url.replace("http://", "ws://") + live.WS_PATH
    with websockets_connect(page, additional_headers={"Cookie": cookie, "Origin": balancer.url}) as ws:
        # Each request is a new connection, so the balancer hands them to the three replicas in turn.
        assert [post(balancer.url, alice_key, model="watched").status_code for _ in range(6)] == [200] * 6
        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 15
        # Every replica served two: the page hears of all three processes, with both exchanges of each.
        while sorted(models.count("watched") for models in seen.values() if "watched" in models) != [2, 2, 2]:
            assert time.monotonic() < deadline, f"the page heard of {sorted(seen)} only"
            try:
                state = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            seen[state["process"]] = [item["model"] for item in state["recent"]]


def test_a_killed_replica_cuts_only_its_own_clients_and_leaves_the_rotation(replicas, balancer, alice, alice_key, fake):
    fake.script(*[Reply(text="a slow and steady answer " * 4, chunks=20, chunk_delay=0.1)] * 3)
    sync(replicas)
    results: dict[int, str] = {}

    def stream(index: int) -> None:
        try:
            with httpx.stream(
                "POST",
                replicas[index].url + CHAT,
                headers={"authorization": f"Bearer {alice_key}"},
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                timeout=15,
            ) as response:
                body = b"".join(response.iter_raw())
            results[index] = "complete" if b"[DONE]" in body else "cut"
        except httpx.HTTPError as exc:
            results[index] = f"error: {type(exc).__name__}"

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every stream is running
    os.kill(replicas[1].process.pid, signal.SIGKILL)
    for thread in threads:
        thread.join()
    assert results[0] == results[2] == "complete"
    assert results[1] != "complete"
    # The balancer's readiness probe takes the dead replica out: every request it carries succeeds.
    within(2.0, lambda: replicas[1].port not in balancer.healthy)
    assert [post(balancer.url, alice_key).status_code for _ in range(9)] == [200] * 9
