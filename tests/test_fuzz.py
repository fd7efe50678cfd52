"""Malformed requests, fuzzed: every endpoint of every client API answers "no 5xx, no traceback, no hang".

Hypothesis mutates a valid request of each endpoint (a wrong JSON type at any field, a field removed, a value
nested 100,000 deep, huge numbers, lone surrogates and other odd unicode) and sends it in-process to the ASGI
application (the same consumers daphne runs), once to a model routed to an upstream of the client's own API
(the body passes through) and once to each other API (the body is decoded and translated). The upstreams are
the provider fakes; a body a fake cannot make sense of is refused with a 400 as the real provider would, so
any 5xx seen here is the proxy's own.

The example budget is fixed and the search derandomized, so CI runs the same ~220 requests every time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmproxy_site.asgi import application
from routing.runtime.live import live_config
from routing.upstream import client as upstream_module
from tests.conftest import add_route
from tests.fakes.providers import make
from tests.fakes.server import FakeUpstream, Request, Response

pytestmark = pytest.mark.django_db(transaction=True)

FORMATS = ("anthropic", "openai-chat", "openai-responses", "gemini")
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}
MODELS = tuple(f"to-{fmt}" for fmt in FORMATS)  # alias "to-X": an upstream speaking X
ANSWER_WITHIN = 15.0  # seconds: a request that takes longer counts as a hang
EXAMPLES_PER_ENDPOINT = 25  # x 9 endpoints: the fixed budget

IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

ANTHROPIC = {
    "model": "m",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": "c2ln"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
    "tools": [{"name": "weather", "description": "Weather by city", "input_schema": SCHEMA}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "temperature": 1,
    "top_p": 0.9,
    "top_k": 5,
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u-1"},
    "stream": False,
}

CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": SCHEMA}}],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "parallel_tool_calls": True,
    "max_tokens": 64,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["END"],
    "seed": 7,
    "n": 1,
    "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA, "strict": True}},
    "user": "u-1",
    "metadata": {"team": "a"},
    "stream": True,
    "stream_options": {"include_usage": True},
}

RESPONSES = {
    "model": "m",
    "instructions": "Be brief.",
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_image", "image_url": f"data:image/png;base64,{IMAGE}"}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look it up."}]},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
    ],
    "tools": [{"type": "function", "name": "weather", "description": "Weather", "parameters": SCHEMA}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "max_output_tokens": 64,
    "temperature": 0.5,
    "top_p": 0.9,
    "reasoning": {"effort": "low", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}, "verbosity": "low"},
    "store": False,
    "metadata": {"team": "a"},
    "stream": False,
}

GEMINI = {
    "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [{"text": "Weather in Paris?"}, {"inlineData": {"mimeType": "image/png", "data": IMAGE}}],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Look it up.", "thought": True},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            ],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"result": "Sunny"}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather", "parameters": SCHEMA}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {
        "maxOutputTokens": 64,
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 5,
        "stopSequences": ["END"],
        "candidateCount": 1,
        "responseMimeType": "application/json",
        "responseSchema": SCHEMA,
        "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}

ANTHROPIC_COUNT = {k: v for k, v in ANTHROPIC.items() if k in ("model", "system", "messages", "tools", "thinking")}
RESPONSES_COUNT = {k: v for k, v in RESPONSES.items() if k in ("model", "instructions", "input", "tools")}
GEMINI_COUNT = {"contents": GEMINI["contents"]}


@dataclass(frozen=True)
class Endpoint:
    name: str
    dialect: str  # the client's API: the shape its errors must have
    path: str  # "{model}" filled in for Gemini
    body: dict[str, Any]
    websocket: bool = False


ENDPOINTS = [
    Endpoint("anthropic-messages", "anthropic", "/v1/messages", ANTHROPIC),
    Endpoint("anthropic-count-tokens", "anthropic", "/v1/messages/count_tokens", ANTHROPIC_COUNT),
    Endpoint("chat-completions", "openai", "/v1/chat/completions", CHAT),
    Endpoint("responses", "openai", "/v1/responses", RESPONSES),
    Endpoint("responses-input-tokens", "openai", "/v1/responses/input_tokens", RESPONSES_COUNT),
    Endpoint("responses-websocket", "openai-ws", "/v1/responses", RESPONSES, websocket=True),
    Endpoint("gemini-generate", "gemini", "/v1beta/models/{model}:generateContent", GEMINI),
    Endpoint("gemini-stream", "gemini", "/v1beta/models/{model}:streamGenerateContent?alt=sse", GEMINI),
    Endpoint("gemini-count-tokens", "gemini", "/v1beta/models/{model}:countTokens", GEMINI_COUNT),
]


# -- strategies ----------------------------------------------------------------------------------------------

DEEP = 100_000


def deep(depth: int, container: str) -> Any:
    """A value nested `depth` levels; built as text, since Python cannot build (or dump) it recursively."""
    return _Raw(("[" * depth + "]" * depth) if container == "list" else ('{"a":' * depth + "1" + "}" * depth))


@dataclass(frozen=True)
class _Raw:
    """JSON text spliced into the body as is."""

    text: str


ODD_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "\ud800",
        "\udfff\ud800",
        "\u202e\u200b",
        "\U0001d518\U0001d52b" * 50,
        "a" * 10_000,
        "NaN",
        "null",
        "{}",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324]),
    ODD_TEXT,
    st.text(max_size=20),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["type", "text", "x", "role"]), inner, max_size=3)
    ),
    max_leaves=6,
)
NESTED = st.builds(deep, st.sampled_from([200, 900, 960, 990, 1_001, 5_000, DEEP]), st.sampled_from(["list", "dict"]))
REPLACEMENT = st.one_of(JUNK, JUNK, JUNK, JUNK, JUNK, JUNK, JUNK, JUNK, JUNK, NESTED)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field and item of a JSON value, outermost first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def mutate(body: Any, path: tuple[Any, ...], action: str, replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    copy = dict(body) if isinstance(body, dict) else list(body)
    if not rest and action == "delete":
        del copy[head]
    else:
        copy[head] = mutate(copy[head], rest, action, replacement)
    return copy


def dumps(value: Any) -> bytes:
    """JSON with `_Raw` text spliced in (and lone surrogates escaped, as a JSON encoder in any language may)."""
    spliced: list[str] = []

    def mark(obj: Any) -> Any:
        if isinstance(obj, _Raw):
            spliced.append(obj.text)
            return f"__raw_{len(spliced) - 1}__"
        raise TypeError(obj)

    text = json.dumps(value, default=mark)
    for index, raw in enumerate(spliced):
        text = text.replace(f'"__raw_{index}__"', raw)
    return text.encode()


@st.composite
def bodies(draw: st.DrawFn, endpoint: Endpoint) -> tuple[str, bytes]:
    """(model, body): a valid request with one to three mutations, or a whole body that is not a request."""
    model = draw(st.sampled_from(MODELS))
    body: Any = {**endpoint.body, "model": model} if "model" in endpoint.body else dict(endpoint.body)
    if endpoint.websocket:
        body["type"] = "response.create"
    whole = draw(st.integers(0, 19))
    if whole == 0:
        return model, draw(st.sampled_from([b"", b"{", b"[1]", b'"x"', b"null", b"\xff\xfe", b'{"a":1}{']))
    if whole == 1:
        return model, dumps(draw(NESTED))
    for _ in range(draw(st.integers(1, 3))):
        where = list(paths(body))
        if not where:
            break
        # Half the mutations hit a top-level field or its direct items: most of what a decoder reads first.
        shallow = [path for path in where if len(path) <= 2]
        path = draw(st.sampled_from(shallow) if shallow and draw(st.booleans()) else st.sampled_from(where))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete"]))
        body = mutate(body, path, action, draw(REPLACEMENT))
    return model, dumps(body)


# -- the proxy under test ------------------------------------------------------------------------------------


class Refusing:
    """A provider fake that refuses, with a 400 in its own envelope, any body it cannot make sense of (a real
    provider validates its input): the fake's own failures would otherwise be 500s relayed by the proxy."""

    def __init__(self, fmt: str) -> None:
        self.fake = make(fmt, strict=False)

    def __call__(self, request: Request) -> Response:
        try:
            response = self.fake(request)
        except Exception:
            return self.fake.fail(400, "Invalid request body")
        return response if response.status < 500 else self.fake.fail(400, "Invalid request body")


def _halt_background_work() -> None:
    """Stop the refresher the first request started on this test's loop."""
    try:
        from routing.runtime.worker import worker
    except ImportError:  # before the background worker module: the live config's own task
        task = getattr(live_config, "_task", None)
        if task is not None:
            task.cancel()
    else:
        worker.halt()


class Failures(logging.Handler):
    """The proxy's "unexpected failure" log lines: each one is a traceback a client was answered 500 for."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def proxy_loop(alice_key: str) -> Iterator[tuple[asyncio.AbstractEventLoop, str, Failures]]:
    """One event loop for all the examples of a test (the proxy's snapshot and upstream pool live on it), four
    fake upstreams and an alias to each."""
    servers = [FakeUpstream(Refusing(fmt)) for fmt in FORMATS]
    failures = Failures()
    watched = [logging.getLogger(name) for name in ("routing", "django.request", "channels", "daphne")]
    loop = asyncio.new_event_loop()
    for logger in watched:
        logger.addHandler(failures)
    try:
        for fmt, server in zip(FORMATS, servers, strict=True):
            server.__enter__()
            add_route(fmt, fmt, server.url + BASE_PATH[fmt], alias=f"to-{fmt}", model="real-model")
        loop.run_until_complete(live_config.reload())
        yield loop, alice_key, failures
    finally:
        for logger in watched:
            logger.removeHandler(failures)
        loop.run_until_complete(_stop_proxy(loop))
        loop.close()
        for server in servers:
            server.__exit__(None, None, None)


async def _stop_proxy(loop: asyncio.AbstractEventLoop) -> None:
    _halt_background_work()
    client = upstream_module._clients.pop(loop, None)
    if client is not None:
        await client.aclose()


async def over_http(endpoint: Endpoint, model: str, body: bytes, key: str) -> tuple[int, bytes]:
    path = endpoint.path.replace("{model}", model)
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]
    if endpoint.dialect == "anthropic":
        headers.append((b"anthropic-version", b"2023-06-01"))
    communicator = HttpCommunicator(application, "POST", path, body, headers)
    response = await communicator.get_response(timeout=ANSWER_WITHIN)
    await communicator.wait(timeout=ANSWER_WITHIN)
    return response["status"], response["body"]


async def over_websocket(body: bytes, key: str) -> tuple[int, bytes]:
    """One `response.create` frame: the status of its error event (200 when it completed) and the events."""
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"openai-beta", b"responses_websockets=2026-02-06")]
    communicator = WebsocketCommunicator(application, "/v1/responses", headers=headers)
    connected, _ = await communicator.connect(timeout=ANSWER_WITHIN)
    assert connected
    try:
        await communicator.send_to(text_data=body.decode("utf-8", "replace") or " ")
        events: list[Any] = []
        while True:
            output = await communicator.receive_output(timeout=ANSWER_WITHIN)
            if output["type"] == "websocket.close":
                return (500 if output.get("code") == 1011 else 400), json.dumps(events).encode()
            event = json.loads(output["text"])
            events.append(event)
            if event.get("type") == "error":
                return event["status"], json.dumps(event).encode()
            if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                return 200, json.dumps(events).encode()
    finally:
        await communicator.disconnect()


def check_answer(endpoint: Endpoint, status: int, content: bytes, elapsed: float) -> None:
    text = content.decode("utf-8", "replace")
    assert status < 500, f"{endpoint.name}: HTTP {status}: {text[:500]}"
    assert elapsed < ANSWER_WITHIN, f"{endpoint.name}: answered after {elapsed:.1f}s"
    assert "Traceback" not in text and "Internal proxy error" not in text, text[:500]
    if status < 400:
        return
    error = json.loads(content)
    if endpoint.dialect == "anthropic":
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}, error
    elif endpoint.dialect == "gemini":
        assert error["error"]["code"] == status and isinstance(error["error"]["status"], str), error
    elif endpoint.dialect == "openai-ws":
        assert error["type"] == "error" and isinstance(error["error"]["message"], str), error
    else:
        assert isinstance(error["error"]["message"], str) and isinstance(error["error"]["type"], str), error
    if status == 400:
        message = error["error"]["message"]
        assert message and "Traceback" not in message, error


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_a_malformed_request_is_a_4xx_in_the_clients_dialect(proxy_loop, endpoint: Endpoint) -> None:
    loop, key, failures = proxy_loop

    @settings(
        max_examples=EXAMPLES_PER_ENDPOINT,
        derandomize=True,
        deadline=None,  # the bound is ANSWER_WITHIN, per request
        database=None,  # CI and a laptop run the same examples
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(bodies(endpoint))
    def one_request(drawn: tuple[str, bytes]) -> None:
        model, body = drawn
        started = time.monotonic()
        if endpoint.websocket:
            status, content = loop.run_until_complete(over_websocket(body, key))
        else:
            status, content = loop.run_until_complete(over_http(endpoint, model, body, key))
        check_answer(endpoint, status, content, time.monotonic() - started)
        logged = [r.getMessage() for r in failures.records]
        failures.records.clear()
        assert not logged, f"{endpoint.name}: the proxy logged {logged}"

    one_request()
