"""The one exchange pipeline (routing.dataplane) as clients see it, whichever transport they use.

- a Responses answer created over the WebSocket continues over HTTP and the other way round (one store);
- a stream's status and headers reach the client when the upstream's do, not with the first event;
- the Responses WebSocket's `stream_id` lanes run at the same time;
- a Chat client's `stream_options.include_usage` on another API is honoured, so it is no warning;
- an upstream's mid-stream 500 stays a 500 for the client and the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from channels.testing import WebsocketCommunicator

from llmproxy_site.asgi import application
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, ToolCall
from tests.test_ledger import wait_for_rows
from tests.test_responses_ws import TERMINAL, _sdk_final, live, reload  # noqa: F401  (`live` is a fixture)
from tests.test_translation_matrix import BASE_PATH

PREFILL = 2.5  # seconds the fake upstream waits between its headers and its first event


@pytest.fixture
def anthropic_up(transactional_db: None) -> Iterator[Any]:
    with fake_upstream("anthropic") as fake:
        add_route("up", "anthropic", fake.url, alias="m", model="real-model")
        yield fake


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_a_websocket_response_continues_over_http_and_back(proxy, alice_key, anthropic_up):
    anthropic_up.script(
        Reply(text="Looking.", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
        Reply(text="Cold in Oslo."),
        Reply(text="Anything else?"),
    )
    proxy.sync()
    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]

    with client.responses.connect(max_retries=0) as connection:
        connection.response.create(model="m", input="Weather in Oslo?", tools=tools)
        over_ws = _sdk_final(connection)
    call = next(item for item in over_ws.output if item.type == "function_call")

    # The WebSocket is closed: only the per-key store can know that response now.
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "-8C"}
    over_http = client.responses.create(model="m", input=[result], tools=tools, previous_response_id=over_ws.id)
    assert over_http.output_text == "Cold in Oslo."
    sent = json.dumps(anthropic_up.requests[-1].json["messages"])
    assert all(text in sent for text in ("Weather in Oslo?", "Looking.", "-8C"))

    with client.responses.connect(max_retries=0) as connection:
        connection.response.create(model="m", input="Thanks", previous_response_id=over_http.id)
        back_on_ws = _sdk_final(connection)
    assert back_on_ws.output_text == "Anything else?"
    sent = json.dumps(anthropic_up.requests[-1].json["messages"])
    assert all(text in sent for text in ("Weather in Oslo?", "-8C", "Cold in Oslo.", "Thanks"))


# -- headers before the first event ------------------------------------------------------------------------


def _openai_chat_headers(proxy: Any, proxy_key: str) -> tuple[float, str]:
    client = openai.OpenAI(api_key=proxy_key, base_url=proxy.url + "/v1", max_retries=0)
    started = time.monotonic()
    with client.chat.completions.with_streaming_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        waited = time.monotonic() - started
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    return waited, text


def _anthropic_headers(proxy: Any, proxy_key: str) -> tuple[float, str]:
    client = anthropic.Anthropic(api_key=proxy_key, base_url=proxy.url, max_retries=0)
    started = time.monotonic()
    with client.messages.with_streaming_response.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        waited = time.monotonic() - started
        text = "".join(
            e.delta.text for e in response.parse() if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
    return waited, text


def _gemini_headers(proxy: Any, proxy_key: str) -> tuple[float, str]:
    started = time.monotonic()
    url = proxy.url + "/v1beta/models/m:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.stream("POST", url, json=body, headers={"x-goog-api-key": proxy_key}, timeout=30) as response:
        waited = time.monotonic() - started
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    text = "".join(
        p.get("text", "")
        for e in events
        for c in e.get("candidates", [])
        for p in c.get("content", {}).get("parts", [])
    )
    return waited, text


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("client", "upstream_format"),
    [
        (_openai_chat_headers, "openai-chat"),  # same API: the stream passes through
        (_anthropic_headers, "openai-chat"),  # translated
        (_gemini_headers, "anthropic"),  # translated, Gemini's own path-decided stream
    ],
    ids=["chat-passthrough", "anthropic-from-chat", "gemini-from-anthropic"],
)
def test_stream_headers_arrive_when_the_upstream_sends_them(proxy, alice_key, client, upstream_format):
    with fake_upstream(upstream_format) as fake:
        add_route("up", upstream_format, fake.url + BASE_PATH[upstream_format], alias="m", model="real-model")
        fake.script(Reply(text="after a long prefill", prefill=PREFILL))
        proxy.sync()
        waited, text = client(proxy, alice_key)
    assert waited < PREFILL / 2, f"headers came after {waited:.2f} s, with the first event"
    assert text == "after a long prefill"


# -- WebSocket lanes ---------------------------------------------------------------------------------------


async def test_stream_id_lanes_run_at_the_same_time(live, alice_key, anthropic_up):  # noqa: F811
    # Each answer takes a second to stream: served one after the other, lane b would start after a ended.
    anthropic_up.script(Reply(text="first lane", chunk_delay=0.3), Reply(text="second lane", chunk_delay=0.3))
    await reload()
    headers = [(b"authorization", f"Bearer {alice_key}".encode())]
    ws = WebsocketCommunicator(application, "/v1/responses", headers=headers)
    connected, _ = await ws.connect()
    assert connected
    for lane in ("a", "b"):
        # store: false (as Codex sends): nothing is written to the database while the test data is torn down.
        frame = {"type": "response.create", "model": "m", "input": "hi", "stream_id": lane, "store": False}
        await ws.send_json_to(frame)
    order: list[tuple[str, str]] = []
    finished: set[str] = set()
    while finished != {"a", "b"}:
        event = await ws.receive_json_from(timeout=10)
        order.append((event["stream_id"], event["type"]))
        if event["type"] in TERMINAL:
            finished.add(event["stream_id"])
    first_terminal = next(i for i, (_, kind) in enumerate(order) if kind in TERMINAL)
    lanes_started_before = {lane for lane, _ in order[:first_terminal]}
    assert lanes_started_before == {"a", "b"}, f"one lane waited for the other: {order}"
    assert anthropic_up.request_count == 2
    await ws.disconnect()


# -- honoured client options are no warning ------------------------------------------------------------------


@pytest.mark.e2e
def test_include_usage_on_another_api_is_honoured_not_announced(proxy, alice_key, anthropic_up):
    proxy.sync()
    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    assert "stream_options" not in raw.headers.get("x-llmproxy-warnings", "")
    chunks = list(raw.parse())
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens > 0


# -- mid-stream failures keep their status -----------------------------------------------------------------


@pytest.mark.e2e
def test_a_gemini_500_midway_stays_500(proxy, alice_key):
    with fake_upstream("gemini") as fake:
        add_route("up", "gemini", fake.url, alias="m", model="gemini-real")
        fake.script(Reply(text="partial answer", stream_error=Failure(500, "Internal error")))
        proxy.sync()
        client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            for _ in client.messages.create(
                model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pass
    assert caught.value.body["error"]["type"] == "api_error"  # Anthropic's name for a 500, not bad gateway
    (row,) = wait_for_rows(1)
    assert row.status == 500 and row.outcome == "upstream_error" and row.usage_partial


@pytest.mark.e2e
def test_a_responses_stream_failing_midway_ends_failed_with_its_partial_item_incomplete(proxy, alice_key):
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        # The message is still open (no finish_reason) when the error comes.
        fake.script(Reply(text="half an answer", stream_error=Failure(500, "The server had an error")))
        proxy.sync()
        client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
        events = list(client.responses.create(model="m", input="hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds[-1] == "response.failed", kinds
    assert "response.completed" not in kinds
    (done,) = [event for event in events if event.type == "response.output_item.done"]
    assert done.item.type == "message" and done.item.status == "incomplete"
    assert done.item.content[0].text == "half an answer"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert [item.status for item in failed.output] == ["incomplete"]
