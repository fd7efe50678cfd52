"""Rate limits per key and per user (routing.access.limits): requests per minute, tokens per minute and concurrent
streams, under, at and over each limit and after its window resets, with counters in the database (no Redis) and
in Redis.

The server runs with a 3-second window (RATE_LIMIT_WINDOW) so a reset takes seconds, not a minute.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import User
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from websockets.sync.client import connect as ws_connect

from routing.models import KeyPolicy, ProxyKey, RateCounter, StreamLease, UserPolicy
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e

WINDOW = 3.0
REDIS_URL = os.environ.get("LIMITS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHAT = "/v1/chat/completions"


def redis_client():
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)


def redis_available() -> bool:
    try:
        return bool(redis_client().ping())
    except Exception:
        return False


@pytest.fixture(scope="module", params=["database", "redis"])
def limited_server(request, django_db_setup, django_db_blocker) -> Iterator[ProxyServer]:
    """A server with short rate-limit windows, counting in the database or in Redis (its own key prefix)."""
    backend = request.param
    env = {"RATE_LIMIT_WINDOW": str(WINDOW), "REDIS_URL": "", "RATE_LIMIT_PREFIX": ""}
    if backend == "redis":
        if not redis_available():
            pytest.skip(f"no Redis at {REDIS_URL}")
        env["REDIS_URL"] = REDIS_URL
        env["RATE_LIMIT_PREFIX"] = f"llmproxy-test-{uuid.uuid4().hex[:8]}:"
    server = ProxyServer(env)
    server.backend = backend  # type: ignore[attr-defined]
    server.prefix = env["RATE_LIMIT_PREFIX"]  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        if backend == "redis":
            client = redis_client()
            for key in client.scan_iter(match=env["RATE_LIMIT_PREFIX"] + "*"):
                client.delete(key)


@pytest.fixture
def limited(limited_server: ProxyServer, transactional_db: None) -> Iterator[ProxyServer]:
    if limited_server.backend == "redis":  # type: ignore[attr-defined]
        client = redis_client()
        for key in client.scan_iter(match=limited_server.prefix + "*"):  # type: ignore[attr-defined]
            client.delete(key)
    yield limited_server
    limited_server.drain()


@pytest.fixture
def fake(transactional_db: None) -> Iterator:
    """A Chat upstream behind alias `m`, reporting 12 input and 8 output tokens per answer."""
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=12, output=8))) as upstream:
        add_route("up", "openai-chat", upstream.url + "/v1", alias="m", model="real-model")
        yield upstream


def key_policy(user: User, **limits: int) -> KeyPolicy:
    return KeyPolicy.objects.create(key=ProxyKey.objects.get(user=user, label="laptop"), **limits)


def post(server: ProxyServer, key: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        server.url + CHAT,
        headers={"authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=10,
    )


def settle(server: ProxyServer) -> None:
    """Let the server count what the last exchange used (done just after the answer, off the request path)."""
    server.drain()
    time.sleep(0.15)


def retry_after(response: httpx.Response) -> int:
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= WINDOW
    return seconds


def test_requests_per_minute_under_at_over_and_reset(limited, alice, alice_key, fake):
    key_policy(alice, requests_per_minute=3)
    limited.sync()
    assert [post(limited, alice_key).status_code for _ in range(3)] == [200, 200, 200]  # under, then at the limit
    over = post(limited, alice_key)
    assert over.status_code == 429
    seconds = retry_after(over)
    assert over.json()["error"] == {
        "message": f"Rate limit of key 'laptop': 3 requests per 3 s reached. Please try again in {seconds}s.",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert fake.request_count == 3  # the refused request never reached the upstream
    time.sleep(seconds)
    assert post(limited, alice_key).status_code == 200  # a new window


def test_a_user_limit_counts_every_key_of_the_user(limited, alice, alice_key, fake):
    UserPolicy.objects.create(user=alice, requests_per_minute=2)
    _, second_key = ProxyKey.issue(alice, label="ci")
    limited.sync()
    assert post(limited, alice_key).status_code == 200
    assert post(limited, second_key).status_code == 200
    over = post(limited, alice_key)
    assert over.status_code == 429
    assert "Rate limit of user 'alice': 2 requests" in over.json()["error"]["message"]
    # Somebody else is not affected.
    _, bob_key = ProxyKey.issue(User.objects.create_user("bob"))
    limited.sync()
    assert post(limited, bob_key).status_code == 200


def test_a_refused_request_does_not_use_up_another_counter(limited, alice, alice_key, fake):
    UserPolicy.objects.create(user=alice, requests_per_minute=5)
    key_policy(alice, requests_per_minute=1)
    _, second_key = ProxyKey.issue(alice, label="ci")
    limited.sync()
    assert post(limited, alice_key).status_code == 200
    for _ in range(3):
        assert post(limited, alice_key).status_code == 429  # the key's limit: the user's counter stays at 1
    assert [post(limited, second_key).status_code for _ in range(4)] == [200, 200, 200, 200]
    assert post(limited, second_key).status_code == 429


def test_tokens_per_minute_under_at_over_and_reset(limited, alice, alice_key, fake):
    key_policy(alice, tokens_per_minute=40)  # each answer uses 12 + 8 = 20 tokens
    limited.sync()
    assert post(limited, alice_key).status_code == 200  # 0 used before it
    settle(limited)
    assert post(limited, alice_key).status_code == 200  # 20 used: under
    settle(limited)
    over = post(limited, alice_key)  # 40 used: at the limit, so the next one is refused
    assert over.status_code == 429
    seconds = retry_after(over)
    assert over.json()["error"]["message"] == (
        f"Rate limit of key 'laptop': 40 tokens per 3 s reached. Please try again in {seconds}s."
    )
    time.sleep(seconds)
    assert post(limited, alice_key).status_code == 200


def test_a_streamed_answer_counts_its_tokens_too(limited, alice, alice_key, fake):
    key_policy(alice, tokens_per_minute=20)
    limited.sync()
    assert post(limited, alice_key, stream=True).status_code == 200
    settle(limited)
    assert post(limited, alice_key, stream=True).status_code == 429


class OpenStream:
    """A streamed request whose upstream sends one frame and then holds the stream open, until `close()`."""

    def __init__(self, server: ProxyServer, key: str) -> None:
        self.client = httpx.Client(timeout=10)
        request = self.client.build_request(
            "POST",
            server.url + CHAT,
            headers={"authorization": f"Bearer {key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        self.response = self.client.send(request, stream=True)
        assert self.response.status_code == 200
        # Kept: a dropped iterator would be collected, closing the connection and so ending the stream.
        self.chunks = self.response.iter_raw()
        next(self.chunks)  # the first frame: the stream is running

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_concurrent_streams_under_at_over_and_release(limited, alice, alice_key, fake):
    key_policy(alice, concurrent_streams=2)
    fake.script(Reply(text="long answer", chunks=4, stall_after=1), Reply(text="long answer", chunks=4, stall_after=1))
    limited.sync()
    first = OpenStream(limited, alice_key)  # under
    second = OpenStream(limited, alice_key)  # at the limit
    over = post(limited, alice_key, stream=True)
    assert over.status_code == 429
    assert over.headers["retry-after"] == "1"
    assert over.json()["error"]["message"] == (
        "Rate limit of key 'laptop': 2 concurrent streams already running. Please try again in 1s."
    )
    assert post(limited, alice_key).status_code == 200  # an answer sent whole is not a stream
    if limited.backend == "database":
        assert StreamLease.objects.count() == 2

    first.close()  # the client leaves: its stream ends and gives its slot back
    assert fake.wait_for_disconnects(1)
    deadline = time.monotonic() + 5
    while (status := post(limited, alice_key, stream=True).status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200
    second.close()


def test_websocket_responses_count_as_streams(limited, alice, alice_key, fake):
    key_policy(alice, concurrent_streams=1)
    fake.script(Reply(text="held", chunks=4, stall_after=1))
    limited.sync()
    held = OpenStream(limited, alice_key)
    url = limited.url.replace("http://", "ws://") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi", "generate": False}))
        assert json.loads(ws.recv())["type"] != "error"  # the warm-up calls nothing and is not limited
        while json.loads(ws.recv())["type"] != "response.completed":
            pass
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
        event = json.loads(ws.recv())
        assert (event["type"], event["status"], event["error"]["type"]) == ("error", 429, "rate_limit_error")
        held.close()
        assert fake.wait_for_disconnects(1)
        time.sleep(0.3)
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
        while (event := json.loads(ws.recv()))["type"] != "response.completed":
            assert event["type"] != "error", event


def test_429_in_each_client_dialect_with_retry_after(limited, alice, alice_key, fake):
    key_policy(alice, requests_per_minute=1)
    limited.sync()
    assert post(limited, alice_key).status_code == 200

    with pytest.raises(anthropic.RateLimitError) as anthropic_caught:
        anthropic.Anthropic(api_key=alice_key, base_url=limited.url, max_retries=0).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert anthropic_caught.value.body["error"]["type"] == "rate_limit_error"
    assert "Rate limit of key 'laptop'" in anthropic_caught.value.body["error"]["message"]
    assert 1 <= int(anthropic_caught.value.response.headers["retry-after"]) <= WINDOW

    openai_client = openai.OpenAI(api_key=alice_key, base_url=limited.url + "/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError) as chat_caught:
        openai_client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (chat_caught.value.code, chat_caught.value.type) == ("rate_limit_exceeded", "rate_limit_error")
    assert "retry-after" in chat_caught.value.response.headers
    with pytest.raises(openai.RateLimitError):
        openai_client.responses.create(model="m", input="hi")

    gemini = genai.Client(
        api_key=alice_key,
        http_options=genai_types.HttpOptions(
            base_url=limited.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(genai_errors.ClientError) as gemini_caught:
        gemini.models.generate_content(model="m", contents="hi")
    assert (gemini_caught.value.code, gemini_caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert "Rate limit of key 'laptop'" in gemini_caught.value.message
    gemini_raw = httpx.post(
        limited.url + "/v1beta/models/m:generateContent",
        headers={"x-goog-api-key": alice_key},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert gemini_raw.status_code == 429
    assert "retry-after" in gemini_raw.headers


def test_an_sdk_that_retries_waits_out_the_window_and_succeeds(limited, alice, alice_key, fake):
    key_policy(alice, requests_per_minute=1)
    limited.sync()
    assert post(limited, alice_key).status_code == 200
    client = openai.OpenAI(api_key=alice_key, base_url=limited.url + "/v1", max_retries=3)
    started = time.monotonic()
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "ok"
    assert time.monotonic() - started >= 0.5  # it waited for Retry-After rather than failing


def test_raising_a_limit_applies_at_once(limited, alice, alice_key, fake):
    policy = key_policy(alice, requests_per_minute=1)
    limited.sync()
    assert post(limited, alice_key).status_code == 200
    assert post(limited, alice_key).status_code == 429
    policy.requests_per_minute = 3
    policy.save()
    limited.sync()
    assert post(limited, alice_key).status_code == 200


def test_model_listings_are_not_limited_and_token_counts_are(limited, alice, alice_key, fake):
    key_policy(alice, requests_per_minute=1)
    limited.sync()
    assert post(limited, alice_key).status_code == 200
    headers = {"authorization": f"Bearer {alice_key}"}
    assert httpx.get(limited.url + "/v1/models", headers=headers).status_code == 200
    counted = httpx.post(
        limited.url + "/v1/messages/count_tokens",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert counted.status_code == 429  # a count is a request to an upstream like the rest


def test_keys_without_limits_touch_no_counter(limited, alice, alice_key, fake):
    limited.sync()
    for stream in (False, True, False):
        assert post(limited, alice_key, stream=stream).status_code == 200
    settle(limited)
    assert RateCounter.objects.count() == 0
    assert StreamLease.objects.count() == 0
    if limited.backend == "redis":
        assert list(redis_client().scan_iter(match=limited.prefix + "*")) == []


def test_concurrent_requests_never_get_more_than_the_limit(limited, alice, alice_key, fake):
    key_policy(alice, requests_per_minute=5)
    limited.sync()
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = post(limited, alice_key).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 5 + [429] * 7
