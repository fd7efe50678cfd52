"""What a user sees through the proxy when client and upstream speak different APIs (the 12 translated pairs).

Errors keep their kind in the client's dialect, mid-stream failures stay failures, images keep their bytes,
reasoning and its settings cross over the way translation/README.md says, usage is converted per dialect,
dropped or refused features are announced, and real Claude Code / Codex / Gemini CLI requests are accepted
by a strict upstream of another format. The matrix test covers tool calls; this file covers the rest.

The proxy runs in-process (tests/inprocess.py): all of this is the pipeline's work. A mid-stream failure also
runs through a real daphne (`test_mid_stream_failure_through_a_real_server`): there the half-sent SSE answer and
its error event cross a real socket.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import ANY

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import User
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.fixtures import capture_records
from tests.inprocess import InProcessProxy, Proxy, http, sdk_http_client

FORMATS = ["anthropic", "openai-chat", "openai-responses", "gemini"]
PAIRS = [(c, u) for c in FORMATS for u in FORMATS if c != u]
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def key(transactional_db: None) -> str:
    """A proxy key whose owner has no password: hashing one costs ~0.3 s a test."""
    _, plaintext = ProxyKey.issue(User.objects.create(username="e2e"), label="e2e")
    return plaintext


@contextmanager
def route(proxy: Proxy, fmt: str, alias: str = "m", *, upstream_key: str | None = None, **options: Any) -> Iterator:
    """A fake upstream of `fmt` (strict, like the real APIs) behind `alias`, loaded by the proxy."""
    fake_context = (
        proxy.upstream(fmt, **options) if isinstance(proxy, InProcessProxy) else fake_upstream(fmt, **options)
    )
    with fake_context as fake:
        upstream = add_route("up", fmt, fake.url + BASE_PATH[fmt], alias=alias, model="real-model")
        if upstream_key is not None:
            upstream.set_api_key(upstream_key)
            upstream.save()
        proxy.sync()
        yield fake


def sdk(proxy: Proxy, key: str, fmt: str) -> Any:
    http_client = sdk_http_client(proxy)
    if fmt == "anthropic":
        return anthropic.Anthropic(api_key=key, base_url=proxy.url, max_retries=0, http_client=http_client)
    if fmt == "gemini":
        options = genai_types.HttpOptions(base_url=proxy.url, httpx_client=http_client)
        return genai.Client(api_key=key, http_options=options)
    return openai.OpenAI(api_key=key, base_url=proxy.url + "/v1", max_retries=0, http_client=http_client)


@dataclass
class Answer:
    text: str
    usage: dict[str, Any]  # the dialect's own usage object, as its SDK parsed it
    final: Any  # anthropic Message / Chat message or chunks / Responses Response / Gemini parts


def ask(proxy, key: str, fmt: str, content: Any = "Hello", *, stream: bool = False, **options: Any) -> Answer:
    """One user turn from `fmt`'s SDK; `content` and `options` are in that SDK's own shapes."""
    client = sdk(proxy, key, fmt)  # kept in a variable: a collected genai Client closes its connection
    if fmt == "anthropic":
        kwargs = {"model": "m", "max_tokens": 4096, "messages": [{"role": "user", "content": content}], **options}
        if stream:
            with client.messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**kwargs)
        text = "".join(b.text for b in message.content if b.type == "text")
        return Answer(text, message.usage.model_dump(exclude_none=True), message)
    if fmt == "openai-chat":
        messages = [{"role": "user", "content": content}]
        if not stream:
            completion = client.chat.completions.create(model="m", messages=messages, **options)
            message = completion.choices[0].message
            return Answer(message.content or "", completion.usage.model_dump(exclude_none=True), message)
        chunks = list(
            client.chat.completions.create(
                model="m", messages=messages, stream=True, stream_options={"include_usage": True}, **options
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = [c.usage for c in chunks if c.usage]
        return Answer(text, usage[-1].model_dump(exclude_none=True) if usage else {}, chunks)
    if fmt == "openai-responses":
        items = [{"role": "user", "content": content}]
        if stream:
            events = list(client.responses.create(model="m", input=items, stream=True, **options))
            response = next(e.response for e in events if e.type == "response.completed")
        else:
            response = client.responses.create(model="m", input=items, **options)
        return Answer(response.output_text, response.usage.model_dump(exclude_none=True), response)
    parts = content if isinstance(content, list) else [genai_types.Part(text=content)]
    request = {
        "model": "m",
        "contents": [genai_types.Content(role="user", parts=parts)],
        "config": genai_types.GenerateContentConfig(**options),
    }
    if stream:
        chunks = list(client.models.generate_content_stream(**request))
    else:
        chunks = [client.models.generate_content(**request)]
    got = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or []]
    text = "".join(p.text for p in got if p.text and not p.thought)
    return Answer(text, chunks[-1].usage_metadata.model_dump(exclude_none=True), got)


# --- 1. upstream errors keep their kind -------------------------------------------------------------------

# A failure of each kind as each provider sends it.
FAILURES = {
    "rate_limited": lambda fmt: Failure(429, "Slow down, please", retry_after=7),
    "overloaded": lambda fmt: (
        Failure(529, "Overloaded", type="overloaded_error")
        if fmt == "anthropic"
        else Failure(503, "The model is overloaded.")
    ),
    "invalid": lambda fmt: Failure(400, "messages.0.content: the frobnicator is out of range"),
}
# What a client gets for each kind: (status, SDK exception, kind as its envelope names it) for Anthropic,
# OpenAI (Chat and Responses: `type` and `code`) and Gemini clients.
SEEN = {
    "rate_limited": [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (429, openai.RateLimitError, ("rate_limit_error", "rate_limit_exceeded")),
        (429, genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
    ],
    "overloaded": [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (503, openai.InternalServerError, ("server_error", ANY)),
        (503, genai_errors.ServerError, "UNAVAILABLE"),
    ],
    "invalid": [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (400, openai.BadRequestError, ("invalid_request_error", ANY)),
        (400, genai_errors.ClientError, "INVALID_ARGUMENT"),
    ],
    "unauthenticated": [
        (401, anthropic.AuthenticationError, "authentication_error"),
        (401, openai.AuthenticationError, ("invalid_request_error", "invalid_api_key")),
        (401, genai_errors.ClientError, "UNAUTHENTICATED"),
    ],
}


def expect_error(proxy, key: str, fmt: str, kind: str, message: str = "") -> httpx.Response:
    """A plain request with `fmt`'s SDK fails with `kind`, in exactly `fmt`'s envelope, mentioning `message`."""
    status, exc_type, name = SEEN[kind][0 if fmt == "anthropic" else 2 if fmt == "gemini" else 1]
    with pytest.raises(exc_type) as caught:
        ask(proxy, key, fmt)
    error: Any = caught.value  # each SDK's error keeps the raw HTTP answer, as httpx read it
    response: httpx.Response = error.response
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if fmt == "anthropic":
        assert body == {"type": "error", "error": {"type": name, "message": ANY}}
    elif fmt == "gemini":
        assert body == {"error": {"code": status, "message": ANY, "status": name}}
    else:
        assert body == {"error": {"message": ANY, "type": name[0], "param": None, "code": name[1]}}
    assert message in body["error"]["message"]
    return response


def translated_pairs() -> pytest.MarkDecorator:
    """All translated (client, upstream) pairs."""
    params = [pytest.param(c, u, id=f"{c}>{u}") for c, u in PAIRS]
    return pytest.mark.parametrize(("client_fmt", "upstream_fmt"), params)


def error_params() -> list[Any]:
    params = []
    for kind in FAILURES:
        for c, u in PAIRS:
            params.append(pytest.param(kind, c, u, id=f"{kind}-{c}>{u}"))
    return params


@pytest.mark.parametrize(("kind", "client_fmt", "upstream_fmt"), error_params())
def test_upstream_error_keeps_its_kind_in_the_clients_dialect(inproc, key, kind, client_fmt, upstream_fmt):
    failure = FAILURES[kind](upstream_fmt)
    with route(inproc, upstream_fmt) as upstream:
        upstream.script(Reply(error=failure))
        response = expect_error(inproc, key, client_fmt, kind, failure.message)
    if kind == "rate_limited":
        assert response.headers.get("retry-after") == "7"


# For a wrong upstream key: an upstream whose provider answers it with 401 (Gemini says 400 API_KEY_INVALID).
@pytest.mark.parametrize(
    ("client_fmt", "upstream_fmt"),
    [
        ("anthropic", "openai-chat"),
        ("openai-chat", "anthropic"),
        ("openai-responses", "anthropic"),
        ("gemini", "openai-responses"),
    ],
)
def test_bad_upstream_key_is_an_authentication_error(inproc, key, client_fmt, upstream_fmt):
    with route(inproc, upstream_fmt, api_key="the-right-key", upstream_key="a-wrong-key") as upstream:
        expect_error(inproc, key, client_fmt, "unauthenticated")
        assert len(upstream.requests) == 1


# --- 2. a failure in the middle of a stream -----------------------------------------------------------------


def stream_until_failure(proxy, key: str, fmt: str) -> tuple[str, str, list[str]]:
    """Stream one answer with `fmt`'s SDK: (text received, error message seen, finish markers seen)."""
    client = sdk(proxy, key, fmt)
    text, finishes = [], []
    message = ""
    try:
        if fmt == "anthropic":
            kwargs = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
            with client.messages.stream(**kwargs) as events:
                for event in events:
                    if event.type == "text":
                        text.append(event.text)
                    if event.type in ("message_delta", "message_stop"):
                        finishes.append(event.type)
        elif fmt == "openai-chat":
            for chunk in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            ):
                for choice in chunk.choices:
                    text.append(choice.delta.content or "")
                    finishes += [choice.finish_reason] if choice.finish_reason else []
        elif fmt == "openai-responses":
            for event in client.responses.create(model="m", input="x", stream=True):
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
                elif event.type == "error":
                    message = event.message
                elif event.type == "response.failed":
                    message = message or (event.response.error.message if event.response.error else "failed")
                elif event.type in ("response.completed", "response.incomplete"):
                    finishes.append(event.type)
        else:
            for chunk in client.models.generate_content_stream(model="m", contents="x"):
                candidate = chunk.candidates[0] if chunk.candidates else None
                text.append(chunk.text or "")
                finishes += [candidate.finish_reason.value] if candidate and candidate.finish_reason else []
    except anthropic.APIStatusError as exc:
        message = exc.body["error"]["message"]
    except openai.APIError as exc:
        message = exc.message
    except genai_errors.APIError as exc:
        message = exc.message or ""
    return "".join(text), message, finishes


@translated_pairs()
def test_mid_stream_failure_reaches_the_client_as_a_failure(inproc, key, client_fmt, upstream_fmt):
    with route(inproc, upstream_fmt) as upstream:
        upstream.script(Reply(text="Half an ans", chunks=2, stream_error=Failure(500, "engine fell over")))
        text, message, finishes = stream_until_failure(inproc, key, client_fmt)
    assert text == "Half an ans"
    assert "engine fell over" in message
    assert finishes == [], "a failed stream must not end like a finished answer"


@pytest.mark.e2e
def test_mid_stream_failure_through_a_real_server(proxy, key):
    with route(proxy, "openai-chat") as upstream:
        upstream.script(Reply(text="Half an ans", chunks=2, stream_error=Failure(500, "engine fell over")))
        text, message, finishes = stream_until_failure(proxy, key, "anthropic")
    assert (text, finishes) == ("Half an ans", [])
    assert "engine fell over" in message


# --- 3. images -----------------------------------------------------------------------------------------------


def image_content(fmt: str, url: str = PNG_URL) -> Any:
    if fmt == "anthropic":
        source = {"type": "base64", "media_type": "image/png", "data": url.split(",", 1)[1]}
        return [{"type": "image", "source": source}, {"type": "text", "text": "What is this?"}]
    if fmt == "openai-chat":
        return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]
    if fmt == "openai-responses":
        return [{"type": "input_image", "image_url": url}, {"type": "input_text", "text": "What is this?"}]
    return [genai_types.Part(inline_data=genai_types.Blob(mime_type="image/png", data=PNG)), genai_types.Part(text="?")]


def from_data_url(url: str) -> tuple[str, bytes]:
    head, data = url.split(",", 1)
    assert head.startswith("data:") and head.endswith(";base64"), url[:60]
    return head[5:-7], base64.b64decode(data, validate=True)


def images_received(fmt: str, body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(media type, bytes) of every image in an upstream request body, read in that upstream's own shape."""
    if fmt == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        sources = [b["source"] for b in blocks if b["type"] == "image"]
        return [(s["media_type"], base64.b64decode(s["data"], validate=True)) for s in sources]
    if fmt == "openai-chat":
        parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
        return [from_data_url(p["image_url"]["url"]) for p in parts if p["type"] == "image_url"]
    if fmt == "openai-responses":
        items = body["input"] if isinstance(body["input"], list) else []
        parts = [p for i in items if isinstance(i.get("content"), list) for p in i["content"]]
        return [from_data_url(p["image_url"]) for p in parts if p["type"] == "input_image"]
    blobs = [p["inlineData"] for c in body["contents"] for p in c["parts"] if "inlineData" in p]
    return [(b["mimeType"], base64.b64decode(b["data"], validate=True)) for b in blobs]


@translated_pairs()
def test_base64_image_arrives_in_the_upstreams_shape_with_the_same_bytes(inproc, key, client_fmt, upstream_fmt):
    with route(inproc, upstream_fmt) as upstream:
        ask(inproc, key, client_fmt, image_content(client_fmt))
    assert images_received(upstream_fmt, upstream.requests[-1].json) == [("image/png", PNG)]


@pytest.mark.parametrize("upstream_fmt", ["anthropic", "openai-chat", "openai-responses"])
def test_gemini_rest_image_in_camel_case_keeps_its_bytes(inproc, key, upstream_fmt):
    # The REST spelling (the Gemini CLI's JS SDK sends it): camelCase keys, standard base64.
    blob = {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
    body = {"contents": [{"role": "user", "parts": [{"inlineData": blob}, {"text": "What is this?"}]}]}
    with route(inproc, upstream_fmt) as upstream:
        response = http(inproc).post(
            inproc.url + "/v1beta/models/m:generateContent", json=body, headers={"x-goog-api-key": key}
        )
    assert response.status_code == 200, response.text
    assert images_received(upstream_fmt, upstream.requests[-1].json) == [("image/png", PNG)]


def test_url_image_from_a_chat_client_reaches_anthropic_as_a_url_source(inproc, key):
    with route(inproc, "anthropic") as upstream:
        ask(inproc, key, "openai-chat", image_content("openai-chat", url="https://example.com/cat.png"))
    blocks = upstream.requests[-1].json["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


# --- 4. reasoning ------------------------------------------------------------------------------------------

THOUGHT = "The user greets me; greet back."


def test_anthropic_thinking_reaches_a_responses_client_as_a_reasoning_item(inproc, key):
    with route(inproc, "anthropic") as upstream:
        for stream in (False, True):
            upstream.script(Reply(text="Hi!", reasoning=THOUGHT))
            answer = ask(inproc, key, "openai-responses", stream=stream)
            reasoning, message = answer.final.output
            assert (reasoning.type, message.type, answer.text) == ("reasoning", "message", "Hi!")
            # Raw thinking is not a summary: it comes as reasoning_text content; Anthropic's signature stays behind.
            assert [(c.type, c.text) for c in reasoning.content] == [("reasoning_text", THOUGHT)]
            assert reasoning.summary == [] and reasoning.encrypted_content is None


# How a Gemini client asks for thoughts: not at all, with the SDK's ThinkingConfig, or in the API's camelCase.
THOUGHTS_ASKED = {
    "none": {},
    "sdk": {"thinking_config": genai_types.ThinkingConfig(include_thoughts=True)},
    "camelCase": {
        "http_options": genai_types.HttpOptions(
            extra_body={"generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
        )
    },
}


@pytest.mark.parametrize("asked", ["none", "sdk", "camelCase"])
def test_anthropic_thinking_reaches_a_gemini_client_as_a_thought_when_asked(inproc, key, asked):
    with route(inproc, "anthropic") as upstream:
        for stream in (False, True):
            upstream.script(Reply(text="Hi!", reasoning=THOUGHT))
            answer = ask(inproc, key, "gemini", stream=stream, **THOUGHTS_ASKED[asked])
            assert answer.text == "Hi!"
            assert "".join(p.text for p in answer.final if p.thought) == ("" if asked == "none" else THOUGHT)
            assert not any(p.thought_signature for p in answer.final), "Anthropic's signature means nothing to Gemini"


def test_chat_reasoning_content_never_becomes_an_anthropic_thinking_block(inproc, key):
    with route(inproc, "openai-chat", reasoning_field="reasoning_content") as upstream:
        upstream.script(Reply(text="Hi!", reasoning=THOUGHT), Reply(text="Hi!", reasoning=THOUGHT))
        client = sdk(inproc, key, "anthropic")
        kwargs = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}
        raw = client.messages.with_raw_response.create(**kwargs)
        assert "unsigned_reasoning" in raw.headers["x-llmproxy-warnings"]
        with client.messages.stream(**kwargs) as events:
            streamed = events.get_final_message()
    for message in (raw.parse(), streamed):
        assert [(b.type, b.text) for b in message.content] == [("text", "Hi!")]


# What each client sends to ask for reasoning, and what each upstream must receive in its own field.
EFFORT_ASKED = {
    "anthropic": {"thinking": {"type": "enabled", "budget_tokens": 2048}},
    "openai-chat": {"reasoning_effort": "high", "max_completion_tokens": 32000},
    "openai-responses": {"reasoning": {"effort": "medium"}, "max_output_tokens": 16000},
    "gemini": {"thinking_config": genai_types.ThinkingConfig(thinking_budget=4096), "max_output_tokens": 8192},
}
EFFORT_RECEIVED = {
    "anthropic": {
        "openai-chat": {"type": "enabled", "budget_tokens": 24576},
        "openai-responses": {"type": "enabled", "budget_tokens": 8192},
        "gemini": {"type": "enabled", "budget_tokens": 4096},
    },
    "openai-chat": {"anthropic": "low", "openai-responses": "medium", "gemini": "medium"},
    "openai-responses": {
        "anthropic": {"effort": "low"},
        "openai-chat": {"effort": "high"},
        "gemini": {"effort": "medium"},
    },
    "gemini": {
        "anthropic": {"thinkingBudget": 2048},
        "openai-chat": {"thinkingLevel": "HIGH"},
        "openai-responses": {"thinkingLevel": "MEDIUM"},
    },
}


def reasoning_received(fmt: str, body: dict[str, Any]) -> Any:
    if fmt == "anthropic":
        return body.get("thinking")
    if fmt == "openai-chat":
        return body.get("reasoning_effort")
    if fmt == "openai-responses":
        return body.get("reasoning")
    return body.get("generationConfig", {}).get("thinkingConfig")


@translated_pairs()
def test_reasoning_effort_arrives_in_the_upstreams_own_field(inproc, key, client_fmt, upstream_fmt):
    with route(inproc, upstream_fmt) as upstream:
        ask(inproc, key, client_fmt, **EFFORT_ASKED[client_fmt])
    assert reasoning_received(upstream_fmt, upstream.requests[-1].json) == EFFORT_RECEIVED[upstream_fmt][client_fmt]


# --- 5. usage ------------------------------------------------------------------------------------------------

# Usage(input=100, output=20, cache_read=40, reasoning=5) as each client dialect must report it.
USAGE_SEEN = {
    "anthropic": {"input_tokens": 60, "cache_read_input_tokens": 40, "output_tokens": 20},
    "openai-chat": {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 5},
    },
    "openai-responses": {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens_details": {"reasoning_tokens": 5},
    },
    "gemini": {
        "prompt_token_count": 100,
        "cached_content_token_count": 40,
        "candidates_token_count": 15,
        "thoughts_token_count": 5,
        "total_token_count": 120,
    },
}


def subset(seen: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The parts of `seen` that `expected` speaks about (other fields may be there, unknown or zero)."""
    return {
        k: subset(seen[k], v) if isinstance(v, dict) and isinstance(seen.get(k), dict) else seen.get(k)
        for k, v in expected.items()
    }


@translated_pairs()
def test_usage_is_converted_for_the_client(inproc, key, client_fmt, upstream_fmt):
    with route(inproc, upstream_fmt) as upstream:
        for stream in (False, True):
            upstream.script(Reply(text="Counted.", usage=Usage(input=100, output=20, cache_read=40, reasoning=5)))
            answer = ask(inproc, key, client_fmt, stream=stream)
            assert answer.text == "Counted."
            assert subset(answer.usage, USAGE_SEEN[client_fmt]) == USAGE_SEEN[client_fmt], f"stream={stream}"
    if upstream_fmt == "openai-chat":
        assert upstream.requests[-1].json["stream_options"]["include_usage"] is True


# --- 6. dropped and refused features ------------------------------------------------------------------------


def test_a_dropped_stop_sequence_is_announced(inproc, key):
    with route(inproc, "openai-responses") as upstream:
        client = sdk(inproc, key, "anthropic")
        kwargs = {
            "model": "m",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "x"}],
            "stop_sequences": ["END"],
        }
        whole = client.messages.with_raw_response.create(**kwargs)
        assert whole.parse().content[0].text
        with client.messages.with_streaming_response.create(**kwargs, stream=True) as streamed:
            assert "event: message_stop" in streamed.text()
        assert all("stop" not in request.json for request in upstream.requests)
    for response in (whole, streamed):
        assert "stop_sequences" in response.headers["x-llmproxy-warnings"].split(", ")


def test_several_choices_are_refused_before_any_upstream_call(inproc, key):
    with route(inproc, "anthropic") as upstream:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(inproc, key, "openai-chat", n=2)
        assert upstream.requests == []
    assert caught.value.status_code == 400
    assert caught.value.code == "n"
    assert "n" in caught.value.response.json()["error"]["message"].replace(",", " ").split()


# --- 7. real coding-agent requests --------------------------------------------------------------------------


def capture(client: str, episode: str) -> dict[str, Any]:
    """The last request of a captured two-turn tool episode (a tool call and its result in the history)."""
    records = capture_records(f"{client}/{episode}.jsonl")
    return [r for r in records if r.get("kind") == "http" and r.get("method") == "POST"][-1]


def test_claude_code_request_to_a_chat_upstream(inproc, key):
    record = capture("claude", "episode_tool_roundtrip")
    body = dict(record["body"])
    headers = {k.lower(): v for k, v in record["headers"] if k.lower() in ("anthropic-beta", "anthropic-version")}
    with route(inproc, "openai-chat", alias=body["model"]) as upstream:
        upstream.script(Reply(text="DONE", reasoning="It printed hello."))
        required = {name: body.pop(name) for name in ("model", "max_tokens", "messages")}
        body.pop("stream")
        client = sdk(inproc, key, "anthropic")
        with client.messages.stream(
            **required, extra_body=body, extra_headers=headers, extra_query={"beta": "true"}
        ) as s:
            message = s.get_final_message()
        sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.json["stream"] is True
    assert "x-anthropic-billing-header" not in json.dumps(sent.json)
    assert "You are a Claude agent" in json.dumps(sent.json["messages"][0])
    assert sent.json["reasoning_effort"] == "high"  # adaptive thinking with output_config.effort high
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "DONE")]
    assert message.stop_reason == "end_turn"


def test_codex_request_to_an_anthropic_upstream(inproc, key):
    # What Codex sends for a model name it does not know, such as a inproc alias.
    body = dict(capture("codex", "episode_unknown_model_alias")["body"])
    with route(inproc, "anthropic", alias=body["model"]) as upstream:
        upstream.script(Reply(text="DONE", reasoning="It printed hello."))
        required = {name: body.pop(name) for name in ("model", "input")}
        body.pop("stream")
        events = list(sdk(inproc, key, "openai-responses").responses.create(**required, stream=True, extra_body=body))
        sent = upstream.requests[-1]
    assert sent.path == "/v1/messages" and sent.json["stream"] is True
    assert "running in the Codex CLI" in json.dumps(sent.json["system"])
    assert [m["role"] for m in sent.json["messages"]][-2:] == ["assistant", "user"]  # the call, then its result
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "DONE"


def test_codex_hosted_tool_search_is_left_out_for_an_anthropic_upstream(inproc, key):
    # For an OpenAI model name (gpt-5.5) Codex also declares the hosted `tool_search` tool, which has no Anthropic
    # equivalent: it is left out with a warning (docs/compatibility.md), and the turn works.
    body = dict(capture("codex", "episode_http_sse")["body"])
    with route(inproc, "anthropic", alias=body["model"]) as upstream:
        upstream.script(Reply(text="DONE"))
        with http(inproc).stream(
            "POST", inproc.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}
        ) as response:
            assert response.status_code == 200, response.read()
            warnings = response.headers["x-llmproxy-warnings"]
            events = [line for line in response.iter_lines() if line.startswith("event: ")]
        sent = upstream.requests[-1].json
    assert "hosted_tool:tool_search" in warnings
    assert events[-1] == "event: response.completed"
    assert "tool_search" not in json.dumps(sent["tools"])


def test_gemini_cli_request_to_a_chat_upstream(inproc, key):
    record = capture("gemini", "episode_pinned_model")
    model = record["path"].split("/models/")[1].split(":")[0]
    with route(inproc, "openai-chat", alias=model, reasoning_field="reasoning_content") as upstream:
        upstream.script(Reply(text="DONE", reasoning="It printed hello."))
        with http(inproc).stream(
            "POST",
            inproc.url + record["path"],
            params={"alt": "sse"},
            json=record["body"],
            headers={"x-goog-api-key": key},
        ) as response:
            assert response.status_code == 200, response.read()
            frames = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
        sent = upstream.requests[-1]
    assert sent.json["stream"] is True and sent.json["stream_options"]["include_usage"] is True
    assert sent.json["reasoning_effort"] == "medium"  # thinkingBudget 8192
    chunks = [genai_types.GenerateContentResponse.model_validate(frame) for frame in frames]
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or []]
    assert "".join(p.text for p in parts if p.text and not p.thought) == "DONE"
    assert "".join(p.text for p in parts if p.text and p.thought) == "It printed hello."  # includeThoughts was set
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
