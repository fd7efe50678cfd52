"""Malformed requests, fuzzed: every endpoint of every client API answers "no 5xx, no traceback, no hang".

Hypothesis mutates a valid request of each endpoint (a wrong JSON type at any field, a field removed, a value
nested 100,000 deep, huge numbers, lone surrogates and other odd unicode) and sends it to the ASGI application
in-process (tests/inprocess.py: the same consumers daphne runs), to a model routed to an upstream of the
client's own API (the body passes through) or of another API (the body is decoded and translated). The upstreams
are the provider fakes; a body a fake cannot make sense of is refused with a 400 as the real provider would, so
any 5xx seen here is the proxy's own.

The example budget is fixed and the search derandomized, so CI runs the same ~220 requests every time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmproxy_site.asgi import application
from tests.conftest import add_route
from tests.fakes.providers import make
from tests.fakes.server import Request, Response
from tests.fakes.transport import InProcessUpstream
from tests.inprocess import InProcessProxy
from tests.inprocess import passwordless_alice as alice  # noqa: F401  (nobody logs in: no password hashing)

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
    "max_tokens": 2048,  # more than the thinking budget, as Anthropic requires
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


class Failures(logging.Handler):
    """The proxy's "unexpected failure" log lines: each one is a traceback a client was answered 500 for."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def fuzz_proxy(inproc: InProcessProxy, alice_key: str) -> Iterator[tuple[InProcessProxy, str, Failures]]:
    """The in-process proxy (tests/inprocess.py) with an alias to a fake upstream of each API, and a watch on
    what it logs as errors."""
    failures = Failures()
    watched = [logging.getLogger(name) for name in ("routing", "django.request", "channels", "daphne")]
    for fmt in FORMATS:
        upstream = InProcessUpstream(Refusing(fmt))
        inproc.upstreams.add(upstream)
        add_route(fmt, fmt, upstream.url + BASE_PATH[fmt], alias=f"to-{fmt}", model="real-model")
    inproc.sync()
    for logger in watched:
        logger.addHandler(failures)
    try:
        yield inproc, alice_key, failures
    finally:
        for logger in watched:
            logger.removeHandler(failures)


def over_http(proxy: InProcessProxy, endpoint: Endpoint, model: str, body: bytes, key: str) -> tuple[int, bytes]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    if endpoint.dialect == "anthropic":
        headers["anthropic-version"] = "2023-06-01"
    path = endpoint.path.replace("{model}", model)
    response = proxy.http.post(path, content=body, headers=headers, timeout=ANSWER_WITHIN)
    return response.status_code, response.content


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
def test_a_malformed_request_is_a_4xx_in_the_clients_dialect(fuzz_proxy, endpoint: Endpoint) -> None:
    inproc, key, failures = fuzz_proxy
    for model in MODELS:  # the unmutated request is served, so the mutations start from a valid one
        valid = {**endpoint.body, "model": model} if "model" in endpoint.body else endpoint.body
        if endpoint.websocket:
            status, content = inproc.run(over_websocket(dumps({**valid, "type": "response.create"}), key))
        else:
            status, content = over_http(inproc, endpoint, model, dumps(valid), key)
        assert status == 200, f"{endpoint.name} to {model}: {content[:300]!r}"

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
            status, content = inproc.run(over_websocket(body, key))  # on the proxy's own event loop
        else:
            status, content = over_http(inproc, endpoint, model, body, key)
        check_answer(endpoint, status, content, time.monotonic() - started)
        logged = [r.getMessage() for r in failures.records]
        failures.records.clear()
        assert not logged, f"{endpoint.name}: the proxy logged {logged}"

    one_request()


# -- the two bodies issue 11 names -------------------------------------------------------------------------


def test_gemini_contents_of_the_wrong_type_is_a_400_naming_the_field(fuzz_proxy) -> None:
    inproc, key, _ = fuzz_proxy
    gemini = next(e for e in ENDPOINTS if e.name == "gemini-generate")
    for model in MODELS:  # passed through to Gemini, or translated for the others
        status, content = over_http(inproc, gemini, model, json.dumps({"contents": "x"}).encode(), key)
        if model == "to-gemini":
            assert status < 500, content  # passed through: Gemini itself judges the body
            continue
        error = json.loads(content)["error"]
        assert (status, error["status"]) == (400, "INVALID_ARGUMENT"), content
        assert error["message"] == "contents: expected an array, got a string"


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if not e.websocket], ids=lambda e: e.name)
def test_a_body_nested_100000_deep_is_a_400_in_the_clients_dialect(fuzz_proxy, endpoint: Endpoint) -> None:
    inproc, key, failures = fuzz_proxy
    status, content = over_http(inproc, endpoint, "to-openai-chat", dumps(deep(DEEP, "dict")), key)
    assert status == 400, content
    check_answer(endpoint, status, content, 0)
    assert "nested too deeply" in content.decode()
    assert not failures.records
