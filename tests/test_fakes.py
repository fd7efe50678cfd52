"""The fake upstreams are faithful: each official SDK parses what they send into its typed objects.

Raw payloads are also validated with the SDKs' pydantic models (`model_validate` checks types and required fields;
the SDKs themselves build responses without validation), and the HTTP server is checked for keep-alive, chunked
bodies, streaming, disconnects, hangs and concurrency.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.anthropic import AnthropicFake
from tests.fakes.gemini import GeminiFake
from tests.fakes.openai_chat import OllamaFake, OpenAIChatFake
from tests.fakes.openai_responses import OpenAIResponsesFake
from tests.fakes.providers import PROVIDERS
from tests.fakes.script import Failure, Reply, ToolCall, Usage
from tests.fakes.server import FakeUpstream, Request, Response

KEY = "sk-upstream-test-key"
TOOLS = (ToolCall("get_weather", {"city": "Paris", "units": "metric"}), ToolCall("get_time", {"tz": "Europe/Paris"}))
USAGE = Usage(input=100, output=40, cache_read=30, cache_write=20, reasoning=15)
USER = [{"role": "user", "content": "hi"}]


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    events = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


@pytest.fixture
def anthropic_up() -> Iterator[FakeUpstream[AnthropicFake]]:
    with FakeUpstream(AnthropicFake(api_key=KEY)) as up:
        yield up
    assert not up.errors and up.handler.replies.pending == 0


@pytest.fixture
def chat_up() -> Iterator[FakeUpstream[OpenAIChatFake]]:
    with FakeUpstream(OpenAIChatFake(api_key=KEY)) as up:
        yield up
    assert not up.errors and up.handler.replies.pending == 0


@pytest.fixture
def responses_up() -> Iterator[FakeUpstream[OpenAIResponsesFake]]:
    with FakeUpstream(OpenAIResponsesFake(api_key=KEY)) as up:
        yield up
    assert not up.errors and up.handler.replies.pending == 0


@pytest.fixture
def gemini_up() -> Iterator[FakeUpstream[GeminiFake]]:
    with FakeUpstream(GeminiFake(api_key=KEY)) as up:
        yield up
    assert not up.errors and up.handler.replies.pending == 0


def post_anthropic(up: FakeUpstream[Any], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(up.url + "/v1/messages", json=body, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})


def claude(up: FakeUpstream[Any], key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=up.url, api_key=key, max_retries=0)


def gpt(up: FakeUpstream[Any], key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.url + "/v1", api_key=key, max_retries=0)


def gemini(up: FakeUpstream[Any], key: str = KEY, version: str | None = None) -> genai.Client:
    # Keep the client in a variable while using it: google-genai closes its HTTP client when the Client is collected.
    return genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=up.url, api_version=version))


# --- HTTP server ---------------------------------------------------------------------------------------------------


def test_keep_alive_and_request_recording() -> None:
    with FakeUpstream(lambda request: Response(body=request.body)) as up, httpx.Client(base_url=up.url) as client:
        for number in range(30):
            answer = client.post(f"/echo?n={number}", json={"n": number}, headers={"X-Custom": "yes"})
            assert answer.json() == {"n": number}
        assert up.connections == 1
        requests = up.requests
        assert len(requests) == 30
        last = requests[-1]
        assert (last.method, last.target, last.path, last.query) == ("POST", "/echo?n=29", "/echo", {"n": "29"})
        assert last.headers["x-custom"] == last.headers["X-CUSTOM"] == "yes"
        assert last.json == {"n": 29} and json.loads(last.body) == {"n": 29}


def test_chunked_request_body() -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"a": '
        yield b"[1, 2]}"

    with FakeUpstream(lambda request: Response(body=request.body)) as up:
        answer = httpx.post(up.url + "/x", content=parts())
        assert answer.content == b'{"a": [1, 2]}'
        assert up.requests[0].headers["transfer-encoding"] == "chunked"
        assert up.requests[0].json == {"a": [1, 2]}


def test_expect_continue_and_http_1_0_over_a_raw_socket() -> None:
    with FakeUpstream(lambda request: Response(stream=[request.body, b"!"])) as up:
        with socket.create_connection(("127.0.0.1", up.port)) as sock:
            sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hi")
            reply = b""
            while not reply.endswith(b"0\r\n\r\n"):
                reply += sock.recv(1000)
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n")
        with socket.create_connection(("127.0.0.1", up.port)) as sock:
            # HTTP/1.0 knows no chunked coding: the stream is sent raw and ends when the server closes.
            sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
            received = b""
            while chunk := sock.recv(1000):
                received += chunk
            assert received.endswith(b"connection: close\r\n\r\n!")


def test_record_false_keeps_counts_only() -> None:
    with FakeUpstream(lambda request: Response(), record=False) as up:
        httpx.get(up.url)
        assert up.wait_for_requests(1) and up.request_count == 1 and up.requests == []


def test_stream_frames_arrive_one_by_one() -> None:
    frames = [b"one\n", b"two\n", b"three\n"]
    with FakeUpstream(lambda request: Response(stream=frames, chunk_delay=0.15)) as up:
        start = time.monotonic()
        arrivals = []
        with httpx.stream("GET", up.url + "/s") as answer:
            assert answer.headers["transfer-encoding"] == "chunked"
            for chunk in answer.iter_raw():
                arrivals.append((time.monotonic() - start, chunk))
        assert [chunk for _, chunk in arrivals] == frames
        # Each frame left on its own: the gaps between them are still there at the client.
        assert arrivals[-1][0] - arrivals[0][0] >= 0.25


def test_client_disconnect_mid_stream_is_noticed() -> None:
    with FakeUpstream(lambda request: Response(stream=[b"x" * 10] * 1000, chunk_delay=0.01)) as up:
        with httpx.stream("GET", up.url + "/s") as answer:
            next(answer.iter_raw())
        assert up.wait_for_disconnects(1, timeout=2)


def test_hang_until_the_client_times_out() -> None:
    with FakeUpstream(lambda request: Response(hang=True)) as up:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(up.url + "/h", timeout=0.3)
        assert up.wait_for_disconnects(1, timeout=2)
        assert len(up.requests) == 1
    # Leaving the context stopped the server although a response was still hanging: nothing answers any more.
    with pytest.raises(httpx.ConnectError):
        httpx.get(up.url + "/h", timeout=0.5)


def test_stall_after_some_frames() -> None:
    with FakeUpstream(lambda request: Response(stream=[b"a", b"b", b"c"], stall_after=2)) as up:
        received = b""
        with pytest.raises(httpx.ReadTimeout), httpx.stream("GET", up.url + "/s", timeout=0.3) as answer:
            for chunk in answer.iter_raw():
                received += chunk
        assert received == b"ab"
        assert up.wait_for_disconnects(1, timeout=2)


def test_concurrent_requests_are_served_in_parallel() -> None:
    with FakeUpstream(lambda request: Response(body=b"ok", latency=0.3)) as up:
        start = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(lambda _: httpx.get(up.url + "/").content, range(20)))
        assert bodies == [b"ok"] * 20
        assert time.monotonic() - start < 3  # one after the other would take 6 s


def test_handler_failure_is_a_500_and_recorded() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    with FakeUpstream(broken) as up:
        answer = httpx.get(up.url + "/")
        assert answer.status_code == 500 and b"boom" in answer.content
        assert len(up.errors) == 1


def test_failing_stream_closes_the_connection() -> None:
    def frames() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("generator broke")

    with FakeUpstream(lambda request: Response(stream=frames())) as up:
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", up.url) as answer:
            answer.read()
        assert [str(error) for error in up.errors] == ["generator broke"]


def test_port_in_use_is_reported() -> None:
    with FakeUpstream(lambda request: Response()) as up, pytest.raises(OSError):
        FakeUpstream(lambda request: Response(), port=up.port).start()


def test_standalone_process_serves_the_echo_reply() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.server", "--provider", "openai-chat", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        completion = gpt_for(url).chat.completions.create(model="bench-model", messages=USER)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == "Hello from the OpenAI Chat fake (bench-model)."
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    assert "Warning" not in stderr


def gpt_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_provider_has_a_default_reply(provider: str) -> None:
    fake = PROVIDERS[provider](default=Reply(chunks=2))
    assert fake.next_reply("m").text.endswith("fake (m).")
    fake.script(Reply(text="scripted"))
    assert [fake.next_reply("m").text, fake.next_reply("m").text[:10]] == ["scripted", "Hello from"]


# --- Anthropic -----------------------------------------------------------------------------------------------------


def test_anthropic_message(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    anthropic_up.script(Reply(text="Bonjour", reasoning="think first", usage=USAGE))
    message = claude(anthropic_up).messages.create(model="claude-test", max_tokens=256, messages=USER)  # type: ignore[arg-type]
    assert message.model == "claude-test" and message.id.startswith("msg_")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "think first" and thinking.signature
    assert text.type == "text" and text.text == "Bonjour"
    # Anthropic counts only the uncached input in input_tokens.
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (50, 30)
    assert (message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (20, 40)
    request = anthropic_up.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}" and request.json["max_tokens"] == 256


def test_anthropic_raw_json_validates_and_accepts_x_api_key(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    anthropic_up.script(Reply(tool_calls=TOOLS, stop_sequence=None))
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": "m", "max_tokens": 10, "messages": USER, "temperature": 0.5}
    answer = httpx.post(anthropic_up.url + "/v1/messages", json=body, headers=headers)
    assert answer.status_code == 200 and answer.headers["request-id"].startswith("req_")
    message = anthropic.types.Message.model_validate(answer.json())
    assert [block.type for block in message.content] == ["tool_use", "tool_use"]
    assert message.stop_reason == "tool_use"


def test_anthropic_stream_with_thinking_text_and_parallel_tools(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    anthropic_up.script(Reply(text="Checking both.", reasoning="Two lookups.", tool_calls=TOOLS, usage=USAGE))
    with claude(anthropic_up).messages.stream(model="claude-test", max_tokens=256, messages=USER) as stream:  # type: ignore[arg-type]
        events = list(stream)
        message = stream.get_final_message()
    thinking, text, first, second = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Two lookups." and thinking.signature
    assert text.type == "text" and text.text == "Checking both."
    assert first.type == "tool_use" and first.input == TOOLS[0].arguments and first.id.startswith("toolu_")
    assert second.type == "tool_use" and second.input == TOOLS[1].arguments and second.id != first.id
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (50, 40)
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    deltas = [event.delta.type for event in events if event.type == "content_block_delta"]
    assert {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"} <= set(deltas)


def test_anthropic_raw_stream_events(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    anthropic_up.script(Reply(text="Hi there", tool_calls=TOOLS[:1], chunks=2))
    body = {"model": "m", "max_tokens": 10, "messages": USER, "stream": True}
    answer = post_anthropic(anthropic_up, body)
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    adapter = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    for name, data in events:
        payload = json.loads(data)
        assert payload["type"] == name
        if name != "ping":
            adapter.validate_python(payload)
    fragments = [json.loads(data)["delta"] for name, data in events if name == "content_block_delta"]
    partial = "".join(delta["partial_json"] for delta in fragments if delta["type"] == "input_json_delta")
    assert json.loads(partial) == TOOLS[0].arguments
    assert len([delta for delta in fragments if delta["type"] == "input_json_delta"]) >= 3


def test_anthropic_errors(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    client = claude(anthropic_up)
    anthropic_up.script(Reply(error=Failure(529)), Reply(error=Failure(429, retry_after=7)))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model="m", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert overloaded.value.type == "overloaded_error" and overloaded.value.request_id
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="m", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.AuthenticationError) as denied:
        claude(anthropic_up, key="wrong").messages.create(model="m", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert denied.value.type == "authentication_error"


def test_anthropic_mid_stream_error(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    anthropic_up.script(Reply(text="partial", stream_error=Failure(529)))
    received = ""
    client = claude(anthropic_up)
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        client.messages.stream(model="m", max_tokens=10, messages=USER) as stream,  # type: ignore[arg-type]
    ):
        for text in stream.text_stream:
            received += text
    assert received == "partial"
    assert failed.value.type == "overloaded_error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": USER}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "n": 2}, "n: Extra inputs are not permitted"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "at least one message"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    *USER,
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                    {"role": "user", "content": "no result"},
                ],
            },
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}]}
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": "m",
                "max_tokens": 2000,
                "messages": USER,
                "thinking": {"type": "enabled", "budget_tokens": 4000},
            },
            "budget_tokens",
        ),
    ],
)
def test_anthropic_rejects_malformed_requests(
    anthropic_up: FakeUpstream[AnthropicFake], body: dict[str, Any], message: str
) -> None:
    answer = post_anthropic(anthropic_up, body)
    assert answer.status_code == 400
    error = answer.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_anthropic_version_header_and_beta_fields(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": USER, "context_management": {"edits": []}}
    url = anthropic_up.url + "/v1/messages?beta=true"
    assert httpx.post(url, json=body, headers={"x-api-key": KEY}).status_code == 400
    assert httpx.post(url, json=body, headers={"x-api-key": KEY, "anthropic-version": "1"}).status_code == 400
    beta = {"x-api-key": KEY, "anthropic-version": "1", "anthropic-beta": "context-management-2025-06-27"}
    assert httpx.post(url, json=body, headers=beta).status_code == 200


def test_anthropic_count_tokens_and_models(anthropic_up: FakeUpstream[AnthropicFake]) -> None:
    client = claude(anthropic_up)
    assert client.messages.count_tokens(model="m", messages=USER).input_tokens > 0  # type: ignore[arg-type]
    models = client.models.list()
    assert [model.id for model in models.data] == list(AnthropicFake.default_models)
    assert client.models.retrieve("claude-opus-4-1").display_name
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("nope")


# --- OpenAI Chat Completions ---------------------------------------------------------------------------------------


def test_chat_completion(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    chat_up.script(Reply(text="Hello", usage=USAGE))
    completion = gpt(chat_up).chat.completions.create(model="gpt-test", messages=USER)  # type: ignore[arg-type]
    assert completion.object == "chat.completion" and completion.model == "gpt-test"
    choice = completion.choices[0]
    assert choice.message.content == "Hello" and choice.message.tool_calls is None and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 40, 140)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 30
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 15
    assert chat_up.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_chat_raw_json_validates(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    chat_up.script(Reply(tool_calls=TOOLS, stop="tool_calls"))
    body = {"model": "m", "messages": USER}
    answer = httpx.post(chat_up.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    completion = ChatCompletion.model_validate(answer.json())
    message = completion.choices[0].message
    assert message.content is None and completion.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls or []
    assert [json.loads(call.function.arguments) for call in calls if call.type == "function"] == [
        TOOLS[0].arguments,
        TOOLS[1].arguments,
    ]


def test_chat_stream_with_parallel_tools_and_usage(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    chat_up.script(Reply(text="Let me check.", tool_calls=TOOLS, usage=USAGE))
    client = gpt(chat_up)
    with client.chat.completions.stream(
        model="gpt-test",
        messages=USER,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Let me check."
    calls = message.tool_calls or []
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        (call.name, call.arguments) for call in TOOLS
    ]
    assert len({call.id for call in calls}) == 2
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.total_tokens == 140
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(chunk.usage is None for chunk in chunks[:-1])
    # Arguments come in several fragments; id and name only in the first fragment of each call.
    fragments = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    assert len(fragments) > 4
    assert [fragment.index for fragment in fragments if fragment.id] == [0, 1]
    assert all(fragment.function and fragment.function.name is None for fragment in fragments if not fragment.id)


def test_chat_raw_stream_without_usage(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    chat_up.script(Reply(text="Hi"))
    body = {"model": "m", "messages": USER, "stream": True}
    answer = httpx.post(chat_up.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    events = sse_events(answer.text)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(data) for _, data in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert all("usage" not in json.loads(data) for _, data in events[:-1])


def test_chat_errors(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    client = gpt(chat_up)
    with pytest.raises(openai.AuthenticationError) as denied:
        gpt(chat_up, key="sk-wrong-key-123").chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert denied.value.code == "invalid_api_key" and "sk-wrong-key" not in str(denied.value)
    chat_up.script(Reply(error=Failure(429, "slow down", retry_after=2)))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert limited.value.code == "rate_limit_exceeded" and limited.value.response.headers["retry-after"] == "2"
    chat_up.script(Reply(text="partial", stream_error=Failure(500, "upstream broke")))
    received = ""
    with (
        pytest.raises(openai.APIError, match="upstream broke"),
        client.chat.completions.stream(model="m", messages=USER) as stream,  # type: ignore[arg-type]
    ):
        for event in stream:
            if event.type == "content.delta":
                received += event.delta
    assert received == "partial"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": USER, "max_tokens_to_sample": 5}, "Unrecognized request argument"),
        ({"model": "m"}, "Missing required parameter: 'messages'"),
        ({"model": "m", "messages": USER, "stream_options": {"include_usage": True}}, "only allowed when 'stream'"),
        (
            {
                "model": "m",
                "messages": [
                    *USER,
                    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {}}]},
                    {"role": "user", "content": "?"},
                ],
            },
            "did not have response messages: call_1",
        ),
        (
            {"model": "m", "messages": [*USER, {"role": "tool", "tool_call_id": "x", "content": "r"}]},
            "must be a response",
        ),
    ],
)
def test_chat_rejects_malformed_requests(
    chat_up: FakeUpstream[OpenAIChatFake], body: dict[str, Any], message: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        gpt(chat_up).post("/chat/completions", cast_to=ChatCompletion, body=body)


def test_chat_models(chat_up: FakeUpstream[OpenAIChatFake]) -> None:
    client = gpt(chat_up)
    assert [model.id for model in client.models.list()] == list(OpenAIChatFake.default_models)
    assert client.models.retrieve("gpt-5").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_ollama_flavour() -> None:
    with FakeUpstream(OllamaFake()) as up:
        up.script(Reply(text="ok", reasoning="hmm", tool_calls=TOOLS), Reply(text="again"))
        body = {"model": "llama3.2", "messages": USER, "stream": True, "unknown_option": 1}
        events = sse_events(httpx.post(up.url + "/v1/chat/completions", json=body).text)
        chunks = [json.loads(data) for _, data in events[:-1]]
        calls = [call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
        assert [json.loads(call["function"]["arguments"]) for call in calls] == [call.arguments for call in TOOLS]
        assert all(call["id"].startswith("call_") for call in calls)
        assert "".join(chunk["choices"][0]["delta"].get("reasoning", "") for chunk in chunks) == "hmm"
        assert all("usage" not in chunk for chunk in chunks)
        completion = gpt(up).chat.completions.create(model="llama3.2", messages=USER)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == "again"
        assert completion.usage is not None and completion.usage.prompt_tokens_details is None


# --- OpenAI Responses ----------------------------------------------------------------------------------------------


def test_responses_create(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    responses_up.script(Reply(text="Answer", reasoning="Thinking", tool_calls=TOOLS, usage=USAGE))
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]
    response = gpt(responses_up).responses.create(
        model="gpt-test",
        input="hi",
        tools=tools,  # type: ignore[arg-type]
        include=["reasoning.encrypted_content"],
    )
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.model == "gpt-test" and response.output_text == "Answer"
    reasoning, message, first, second = response.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Thinking" and reasoning.encrypted_content
    assert message.type == "message" and message.status == "completed"
    assert first.type == "function_call" and json.loads(first.arguments) == TOOLS[0].arguments
    assert second.type == "function_call" and second.name == "get_time" and second.call_id != first.call_id
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (100, 40, 140)
    assert usage.input_tokens_details.cached_tokens == 30 and usage.output_tokens_details.reasoning_tokens == 15


def test_responses_raw_json_validates(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    responses_up.script(Reply(text="cut", stop="max_tokens"))
    answer = httpx.post(
        responses_up.url + "/v1/responses",
        json={"model": "m", "input": "hi"},
        headers={"authorization": f"Bearer {KEY}"},
    )
    response = OpenAIResponse.model_validate(answer.json())
    assert response.status == "incomplete" and response.incomplete_details
    assert response.incomplete_details.reason == "max_output_tokens"
    assert "encrypted_content" not in answer.text


def test_responses_stream(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    responses_up.script(Reply(text="Answer here", reasoning="Thinking", tool_calls=TOOLS, usage=USAGE))
    with gpt(responses_up).responses.stream(model="gpt-test", input="hi") as stream:
        events = list(stream)
        response = stream.get_final_response()
    assert [event.sequence_number for event in events] == list(range(len(events)))
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.output_text.done",
        "response.function_call_arguments.done",
    ):
        assert kind in kinds
    assert response.output_text == "Answer here"
    calls = [item for item in response.output if item.type == "function_call"]
    assert [json.loads(call.arguments) for call in calls] == [call.arguments for call in TOOLS]
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 15


def test_responses_raw_stream_events(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    responses_up.script(Reply(text="abc", tool_calls=TOOLS[:1]))
    answer = httpx.post(
        responses_up.url + "/v1/responses",
        json={"model": "m", "input": "hi", "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    )
    adapter = TypeAdapter(ResponseStreamEvent)
    for name, data in sse_events(answer.text):
        event = adapter.validate_json(data)
        assert event.type == name


def test_responses_stream_failures(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    client = gpt(responses_up)
    responses_up.script(
        Reply(text="so far", stream_error=Failure(500, "model crashed")),
        Reply(text="so far", stream_error=Failure(429, "too fast", error_event=True)),
    )
    failed = list(client.responses.create(model="m", input="hi", stream=True))
    assert failed[-1].type == "response.failed"
    assert failed[-1].response.error and failed[-1].response.error.code == "server_error"
    errored = list(client.responses.create(model="m", input="hi", stream=True))
    assert errored[-1].type == "error" and errored[-1].code == "rate_limit_exceeded"


def test_responses_errors_and_validation(responses_up: FakeUpstream[OpenAIResponsesFake]) -> None:
    client = gpt(responses_up)
    responses_up.script(Reply(error=Failure(503, "overloaded")))
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="m", input="hi")
    with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'messages'") as unknown:
        client.post("/responses", cast_to=OpenAIResponse, body={"model": "m", "messages": USER})
    assert unknown.value.code == "unknown_parameter" and unknown.value.param == "messages"
    orphan = [{"type": "function_call_output", "call_id": "call_9", "output": "r"}]
    with pytest.raises(openai.BadRequestError, match="No tool call found"):
        client.responses.create(model="m", input=orphan)  # type: ignore[arg-type]
    unanswered = [{"type": "function_call", "call_id": "call_9", "name": "f", "arguments": "{}"}]
    with pytest.raises(openai.BadRequestError, match="No tool output found"):
        client.responses.create(model="m", input=unanswered)  # type: ignore[arg-type]
    assert client.responses.input_tokens.count(model="m", input="hello").input_tokens > 0


# --- Gemini --------------------------------------------------------------------------------------------------------


def test_gemini_generate_content(gemini_up: FakeUpstream[GeminiFake]) -> None:
    gemini_up.script(Reply(text="Answer", reasoning="Thinking", tool_calls=TOOLS, usage=USAGE))
    client = gemini(gemini_up)
    response = client.models.generate_content(model="gemini-test", contents="hi")
    assert response.model_version == "gemini-test" and response.response_id
    candidate = response.candidates[0]  # type: ignore[index]
    assert candidate.finish_reason == genai_types.FinishReason.STOP
    parts = candidate.content.parts  # type: ignore[union-attr]
    assert parts is not None and parts[0].thought and parts[0].text == "Thinking" and parts[1].text == "Answer"
    assert [(part.function_call.name, part.function_call.args) for part in parts[2:]] == [  # type: ignore[union-attr]
        (call.name, call.arguments) for call in TOOLS
    ]
    assert parts[2].thought_signature and not parts[3].thought_signature
    assert parts[2].function_call and parts[2].function_call.id is None
    usage = response.usage_metadata
    assert usage is not None and (usage.prompt_token_count, usage.candidates_token_count) == (100, 25)
    assert (usage.thoughts_token_count, usage.total_token_count, usage.cached_content_token_count) == (15, 140, 30)
    request = gemini_up.requests[0]
    assert request.path == "/v1/models/gemini-test:generateContent" and request.headers["x-goog-api-key"] == KEY


def test_gemini_stream_on_v1beta(gemini_up: FakeUpstream[GeminiFake]) -> None:
    gemini_up.script(Reply(text="Hello world", tool_calls=TOOLS, usage=USAGE, chunks=3))
    client = gemini(gemini_up, version="v1beta")
    chunks = list(client.models.generate_content_stream(model="gemini-test", contents="hi"))
    assert gemini_up.requests[0].target == "/v1beta/models/gemini-test:streamGenerateContent?alt=sse"
    assert "".join(chunk.text or "" for chunk in chunks[:-1]) == "Hello world"
    # Both calls arrive whole, in the last chunk, which also holds the finish reason and the complete usage.
    calls = chunks[-1].function_calls or []
    assert [(call.name, call.args) for call in calls] == [(call.name, call.arguments) for call in TOOLS]
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert all(chunk.candidates and chunk.candidates[0].finish_reason is None for chunk in chunks[:-1])
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.total_token_count == 140


def test_gemini_raw_stream_and_json_array(gemini_up: FakeUpstream[GeminiFake]) -> None:
    gemini_up.script(Reply(text="abcdef", chunks=2), Reply(text="abcdef", chunks=2))
    url = gemini_up.url + "/v1beta/models/g:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    sse = httpx.post(url + f"?alt=sse&key={KEY}", json=body)
    assert sse.text.endswith("\r\n\r\n") and "event:" not in sse.text
    frames = [json.loads(data) for _, data in sse_events(sse.text)]
    for frame in frames:
        genai_types.GenerateContentResponse.model_validate(frame)
    assert [frame["candidates"][0]["content"]["parts"][0]["text"] for frame in frames] == ["abc", "def"]
    array = httpx.post(url, json=body, headers={"x-goog-api-key": KEY}).json()
    assert [item["candidates"][0]["content"]["parts"][0]["text"] for item in array] == ["abc", "def"]


def test_gemini_errors(gemini_up: FakeUpstream[GeminiFake]) -> None:
    wrong = gemini(gemini_up, key="wrong")
    with pytest.raises(genai_errors.ClientError) as bad_key:
        wrong.models.generate_content(model="g", contents="hi")
    assert bad_key.value.code == 400 and bad_key.value.status == "INVALID_ARGUMENT"
    assert bad_key.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    client = gemini(gemini_up)
    gemini_up.script(Reply(error=Failure(429, retry_after=30)), Reply(error=Failure(503)))
    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model="g", contents="hi")
    assert limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "30s"
    with pytest.raises(genai_errors.ServerError) as unavailable:
        client.models.generate_content(model="g", contents="hi")
    assert unavailable.value.status == "UNAVAILABLE"
    gemini_up.script(Reply(text="partial", stream_error=Failure(503)))
    received = ""
    with pytest.raises(genai_errors.ServerError):
        for chunk in client.models.generate_content_stream(model="g", contents="hi"):
            received += chunk.text or ""
    assert received == "partial"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": [{"parts": [{"text": "x"}]}], "model": "g"}, 'Unknown name "model"'),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxTokens": 5}},
            "Unknown name \"maxTokens\" at 'generation_config'",
        ),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "a"}}, {"functionCall": {"name": "b"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}}}]},
                ]
            },
            "number of function response parts",
        ),
    ],
)
def test_gemini_rejects_malformed_requests(
    gemini_up: FakeUpstream[GeminiFake], body: dict[str, Any], message: str
) -> None:
    answer = httpx.post(gemini_up.url + "/v1beta/models/g:generateContent", json=body, headers={"x-goog-api-key": KEY})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]


def test_gemini_accepts_snake_case_and_missing_key_is_denied(gemini_up: FakeUpstream[GeminiFake]) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 5}}
    url = gemini_up.url + "/v1beta/models/g:generateContent"
    assert httpx.post(url, json=body, headers={"x-goog-api-key": KEY}).status_code == 200
    denied = httpx.post(url, json=body)
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED"


def test_gemini_count_tokens_and_models(gemini_up: FakeUpstream[GeminiFake]) -> None:
    client = gemini(gemini_up)
    assert (client.models.count_tokens(model="g", contents="hello").total_tokens or 0) > 0
    assert [model.name for model in client.models.list()] == [f"models/{name}" for name in GeminiFake.default_models]
    assert client.models.get(model="gemini-2.5-pro").output_token_limit == 65536


def test_gemini_function_call_ids_on_request() -> None:
    with FakeUpstream(GeminiFake(function_call_ids=True)) as up:
        up.script(Reply(tool_calls=TOOLS))
        client = gemini(up)
        calls = client.models.generate_content(model="g", contents="hi").function_calls or []
        assert len({call.id for call in calls}) == 2 and all(call.id for call in calls)
