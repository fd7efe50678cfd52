"""Circuits shared across worker processes through Redis (issue 13): a target one process saw rate-limited gets no
traffic from another process until its rest ends, and then one request in the whole deployment tries it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from routing.models import ModelAlias, Upstream
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply
from tests.liveserver import ProxyServer
from tests.test_rate_limits import REDIS_URL, redis_available, redis_client

pytestmark = pytest.mark.e2e

REST = 3.0  # the Retry-After the rate-limited target answers with (seconds)


@pytest.fixture
def pair(transactional_db: None) -> Iterator[list[ProxyServer]]:
    if not redis_available():
        pytest.fail(f"no Redis at {REDIS_URL}: the shared circuits need one (start redis-server)")
    prefix = f"llmproxy-failover-{uuid.uuid4().hex[:8]}:"
    env = {"REDIS_URL": REDIS_URL, "HEALTH_PREFIX": prefix, "RATE_LIMIT_PREFIX": prefix}
    servers = [ProxyServer(env), ProxyServer(env)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
        client = redis_client()
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


def ask(server: ProxyServer, key: str) -> str:
    response = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "smart", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-llmproxy-upstream"]


def test_a_rested_target_gets_no_traffic_from_any_process_until_its_rest_ends(pair, alice_key):
    with fake_upstream("openai-chat", strict=False) as a, fake_upstream("openai-chat", strict=False) as b:
        first = Upstream.objects.create(name="a", format="openai-chat", base_url=a.url + "/v1")
        Upstream.objects.create(name="b", format="openai-chat", base_url=b.url + "/v1")
        targets = [{"upstream": "b", "model": "b-model", "fallback": True}]
        ModelAlias.objects.create(name="smart", upstream=first, upstream_model="a-model", targets=targets)
        for server in pair:
            server.sync()
        assert [ask(server, alice_key) for server in pair] == ["a/a-model", "a/a-model"]

        a.script(Reply(error=Failure(429, "Rate limit reached", retry_after=REST)))
        rested_at = time.monotonic()
        assert ask(pair[0], alice_key) == "b/b-model"
        time.sleep(0.5)  # the other process reads the shared circuits on every pass of its worker (0.1 s here)
        assert [ask(pair[1], alice_key) for _ in range(5)] == ["b/b-model"] * 5
        assert a.request_count == 3

        time.sleep(max(0.0, REST - (time.monotonic() - rested_at)) + 0.3)
        assert ask(pair[1], alice_key) == "a/a-model"  # its rest over: tried again, and it answers
        time.sleep(0.5)
        assert ask(pair[0], alice_key) == "a/a-model"  # closed for the other process too
