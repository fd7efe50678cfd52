"""An upstream error that echoes a key is redacted before the client, the ledger or the server log sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply
from tests.test_ledger import BASE_PATH, wait_for_rows
from translation.redaction import REDACTED, carries_error_event, redact_json_body, redact_text

# Not shaped like any provider's key: only knowing what was sent can catch it.
UPSTREAM_KEY = "upstream-credential-4f9a2c7e"
OTHER_KEY = "sk-proj-" + "Zq3" * 10  # a provider-shaped key the upstream also mentions
GOOGLE_KEY = "AIzaSy" + "B7x" * 11


def echo(message: str = "Incorrect API key provided") -> str:
    return f"{message}: {UPSTREAM_KEY} (also tried {OTHER_KEY}, header Authorization: Bearer {UPSTREAM_KEY}x)"


@pytest.fixture
def upstream(request) -> Iterator:
    """A fake upstream of format `request.param` that requires UPSTREAM_KEY, behind alias `m`."""
    provider = request.param
    with fake_upstream(provider, api_key=UPSTREAM_KEY) as fake:
        route = add_route("up", provider, fake.url + BASE_PATH[provider], alias="m", model="real-model")
        route.set_api_key(UPSTREAM_KEY)
        route.save()
        yield fake


def assert_clean(text: str) -> None:
    for secret in (UPSTREAM_KEY, OTHER_KEY, GOOGLE_KEY, "Zq3Zq3Zq3"):
        assert secret not in text


def post(proxy, key: str, dialect: str, stream: bool = False) -> httpx.Response:
    if dialect == "anthropic":
        body = {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        return httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)
    if dialect == "gemini":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        url = f"{proxy.url}/v1beta/models/m:{action}"
        return httpx.post(url, json=body, headers={"x-goog-api-key": key}, timeout=30)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(
        f"{proxy.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("upstream", "client"),
    [
        ("openai-chat", "openai-chat"),  # pass-through: the upstream's JSON error body is relayed as it came
        ("gemini", "gemini"),
        ("openai-chat", "anthropic"),  # translated: the message is carried into the client's envelope
        ("anthropic", "gemini"),
    ],
    indirect=["upstream"],
)
def test_an_echoed_key_is_redacted_from_error_answers(proxy, alice_key, upstream, client):
    upstream.script(Reply(error=Failure(401, echo() + f" {GOOGLE_KEY}")))
    proxy.sync()
    response = post(proxy, alice_key, client)
    assert response.status_code == 401
    assert_clean(response.text)
    body = response.json()  # still the dialect's JSON envelope
    assert REDACTED in json.dumps(body)
    assert "Incorrect API key provided" in json.dumps(body)

    (row,) = wait_for_rows(1)
    assert row.outcome == "upstream_error" and row.status == 401
    assert REDACTED in row.error_message
    assert_clean(row.error_message)
    proxy.drain()
    assert_clean(proxy.output())


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("upstream", "client"),
    [("openai-chat", "openai-chat"), ("anthropic", "anthropic"), ("openai-chat", "anthropic")],
    indirect=["upstream"],
)
def test_an_echoed_key_is_redacted_from_an_error_midway_through_a_stream(proxy, alice_key, upstream, client):
    upstream.script(Reply(text="one two three", chunks=3, stream_error=Failure(500, echo("Upstream auth broke"))))
    proxy.sync()
    response = post(proxy, alice_key, client, stream=True)
    assert response.status_code == 200
    assert "Upstream auth broke" in response.text
    assert REDACTED in response.text
    assert_clean(response.text)

    (row,) = wait_for_rows(1)
    assert row.outcome == "upstream_error"
    assert_clean(row.error_message)
    proxy.drain()
    assert_clean(proxy.output())


@pytest.mark.e2e
@pytest.mark.parametrize("upstream", ["openai-responses", "anthropic"], indirect=True)
@pytest.mark.parametrize("error_event", [False, True], ids=["response.failed", "error"])
def test_an_echoed_key_is_redacted_over_the_responses_websocket(proxy, alice_key, upstream, error_event):
    failure = Failure(500, echo("Upstream auth broke"), error_event=error_event)
    upstream.script(Reply(text="one two three", chunks=3, stream_error=failure))
    proxy.sync()
    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    frames = []
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
        while not frames or json.loads(frames[-1])["type"] not in ("response.failed", "error", "response.completed"):
            frames.append(ws.recv())
    received = "\n".join(frames)
    assert "Upstream auth broke" in received and REDACTED in received
    assert_clean(received)
    (row,) = wait_for_rows(1)
    assert_clean(row.error_message)


def test_redaction_keeps_json_valid_and_leaves_other_text_alone():
    body = json.dumps({"error": {"message": f"bad\n{OTHER_KEY}", "code": 401, "hint": f"key={UPSTREAM_KEY}"}})
    redacted = redact_json_body(body.encode(), [UPSTREAM_KEY])
    assert json.loads(redacted) == {"error": {"message": f"bad\n{REDACTED}", "code": 401, "hint": f"key={REDACTED}"}}
    clean = b'{"error": {"message": "model not found"}}'
    assert redact_json_body(clean, [UPSTREAM_KEY]) is clean  # untouched bytes, formatting and all
    assert redact_text("Bearer abc.def-ghi_123") == f"Bearer {REDACTED}"
    assert redact_text("task-0123456789abcdefghij and desk-0123456789abcdefghij") == (
        "task-0123456789abcdefghij and desk-0123456789abcdefghij"
    )
    assert redact_text("short key local", ["local"]) == "short key local"  # too short to be a secret
    assert redact_text(f"sk-ant-api03-{'x' * 20} and {GOOGLE_KEY}") == f"{REDACTED} and {REDACTED}"


def test_only_chunks_with_an_error_object_are_rewritten():
    assert carries_error_event(b'event: error\ndata: {"type":"error"}\n\n')
    assert carries_error_event(b'data: {"error":{"message":"x"}}\n\n')
    assert not carries_error_event(b'data: {"type":"response.created","response":{"error":null}}\n\n')
    assert not carries_error_event(b'data: {"delta":"an \\"error\\": {} in code"}\n\n')
