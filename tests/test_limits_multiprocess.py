"""Two server processes on one PostgreSQL database (and one Redis): rate limits hold across them, and key lifecycle
changes (revocation, expiry, a disabled user) reach both within a second or two.

Runs only when the tests run on PostgreSQL (`DATABASE_URL=postgres://…`); SQLite is one machine's file and the
suite's other tests cover it. The Redis variant needs Redis at LIMITS_TEST_REDIS_URL (default 127.0.0.1:6379).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from routing.models import KeyPolicy, ProxyKey, StreamLease, UserPolicy
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from tests.liveserver import ProxyServer
from tests.test_rate_limits import REDIS_URL, OpenStream, redis_available, redis_client

pytestmark = pytest.mark.e2e

WINDOW = 4.0
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module", params=["redis", "database"])
def servers(request, django_db_setup, django_db_blocker) -> Iterator[list[ProxyServer]]:
    """Two daphne processes on the same database, counting in the same Redis (a key prefix of their own) or in
    the database."""
    if connection.vendor != "postgresql":
        pytest.skip("two processes on one database: run the suite with DATABASE_URL=postgres://…")
    prefix = f"llmproxy-mp-{uuid.uuid4().hex[:8]}:"
    env = {"RATE_LIMIT_WINDOW": str(WINDOW), "REDIS_URL": "", "RATE_LIMIT_PREFIX": prefix}
    if request.param == "redis":
        if not redis_available():
            pytest.skip(f"no Redis at {REDIS_URL}")
        env["REDIS_URL"] = REDIS_URL
    pair = [ProxyServer(env), ProxyServer(env)]
    for server in pair:
        server.prefix = prefix  # type: ignore[attr-defined]
        server.backend = request.param  # type: ignore[attr-defined]
    try:
        yield pair
    finally:
        for server in pair:
            server.stop()
        if request.param == "redis":
            client = redis_client()
            for key in client.scan_iter(match=prefix + "*"):
                client.delete(key)


@pytest.fixture
def both(servers: list[ProxyServer], transactional_db: None) -> Iterator[list[ProxyServer]]:
    if servers[0].backend == "redis":  # type: ignore[attr-defined]
        client = redis_client()
        for key in client.scan_iter(match=servers[0].prefix + "*"):  # type: ignore[attr-defined]
            client.delete(key)
    yield servers
    for server in servers:
        server.drain()


@pytest.fixture
def fake(transactional_db: None) -> Iterator:
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=12, output=8))) as upstream:
        add_route("up", "openai-chat", upstream.url + "/v1", alias="m", model="real-model")
        yield upstream


def post(server: ProxyServer, key: str, stream: bool = False) -> int:
    return httpx.post(
        server.url + CHAT,
        headers={"authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=10,
    ).status_code


def sync(servers: list[ProxyServer]) -> None:
    for server in servers:
        server.sync()


def test_requests_per_minute_hold_across_two_processes(both, alice, alice_key, fake):
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice), requests_per_minute=6)
    sync(both)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(server: ProxyServer) -> None:
        status = post(server, alice_key)
        with lock:
            statuses.append(status)

    # Twenty requests at once, ten to each process: six get through in all, not six per process.
    threads = [threading.Thread(target=one, args=(both[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 6 + [429] * 14
    assert fake.request_count == 6


def test_concurrent_streams_hold_across_two_processes(both, alice, alice_key, fake):
    UserPolicy.objects.create(user=alice, concurrent_streams=2)
    _, second_key = ProxyKey.issue(alice, label="ci")
    fake.script(Reply(text="held open", chunks=4, stall_after=1), Reply(text="held open", chunks=4, stall_after=1))
    sync(both)
    first = OpenStream(both[0], alice_key)
    second = OpenStream(both[1], second_key)
    assert post(both[0], alice_key, stream=True) == 429
    assert post(both[1], second_key, stream=True) == 429
    assert post(both[1], alice_key) == 200  # whole answers are not streams
    if both[0].backend == "database":  # type: ignore[attr-defined]
        assert StreamLease.objects.count() == 2

    second.close()  # ends on the second process; the first one sees the slot free
    assert fake.wait_for_disconnects(1)
    deadline = time.monotonic() + 5
    while (status := post(both[0], alice_key, stream=True)) == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200
    first.close()


def wait_until(condition, timeout: float = 3.0) -> float:
    """Seconds until `condition()` held (fails after `timeout`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


def models_status(server: ProxyServer, key: str) -> int:
    return httpx.get(server.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


def test_revocation_and_a_disabled_user_reach_both_processes_within_a_second_or_two(both, alice, alice_key, fake):
    key = ProxyKey.objects.get(user=alice)
    _, other_key = ProxyKey.issue(alice, label="ci")
    sync(both)
    assert [models_status(s, alice_key) for s in both] == [200, 200]

    key.revoked_at = timezone.now()
    key.save()
    for server in both:
        assert wait_until(lambda server=server: models_status(server, alice_key) == 401) < 2
    assert [models_status(s, other_key) for s in both] == [200, 200]

    alice.is_active = False
    alice.save()
    for server in both:
        assert wait_until(lambda server=server: models_status(server, other_key) == 401) < 2


def test_expiry_takes_effect_on_both_processes_without_any_edit(both, alice, fake):
    _, expiring = ProxyKey.issue(alice, label="short", expires_at=timezone.now() + timedelta(seconds=2))
    sync(both)
    assert [post(s, expiring) for s in both] == [200, 200]
    time.sleep(2.1)
    assert [post(s, expiring) for s in both] == [401, 401]


def test_last_use_is_kept_in_memory_not_written_per_request(both, alice, alice_key, fake):
    sync(both)
    for _ in range(5):
        for server in both:
            assert post(server, alice_key) == 200
    for server in both:
        server.drain()
    # No write per request: the stamp waits for the 30-second flush (or a graceful stop).
    assert ProxyKey.objects.get(user=alice).last_used_at is None

    # A graceful stop writes it (here a third process of its own, so the pair keeps serving).
    extra = ProxyServer()
    try:
        assert post(extra, alice_key) == 200
    finally:
        extra.stop()
    assert ProxyKey.objects.get(user=alice).last_used_at is not None
