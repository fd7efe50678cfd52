"""Everything the translation emits to a client validates strictly against that client's official SDK types.

Sources: every response and stream vector under tests/translation/vectors (decoded with its own upstream codec
when the vector is a decode vector, else its IR as written), plus hand-made streams that exercise reasoning,
parallel tool calls, cache and reasoning tokens, and an upstream that fails midway. Each is encoded for every
client dialect (`encode_response` for bodies, `StreamEncoder` for streams) and every object is validated with
pydantic strict mode (no coercion: a "3" is not an int) from its JSON text, as a client would parse it:

- Responses: `openai.types.responses.Response`, the `ResponseStreamEvent` union
- Chat: `ChatCompletion`, `ChatCompletionChunk` (error chunks: `{"error": openai.types.ErrorObject}`)
- Anthropic: `anthropic.types.Message`, the `RawMessageStreamEvent` union (error events: `ErrorResponse`)
- Gemini: `google.genai.types.GenerateContentResponse` by its camelCase aliases only (error frames: the
  `{"error": {code, message, status}}` the SDK raises from)

Beyond what pydantic checks, a field the SDK does not know is an error too (OpenAI and Anthropic models accept
and keep unknown fields; Gemini's forbid them), so a misspelt field cannot slip through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse as AnthropicErrorResponse
from google.genai.types import GenerateContentResponse
from openai.types import ErrorObject as OpenAIErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from translation.anthropic import CODEC as ANTHROPIC
from translation.codec import ClientContext, Codec, WireEvent
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.gemini import CODEC as GEMINI
from translation.ir import (
    BlockStop,
    FunctionTool,
    Message,
    OpaqueSignature,
    ReasoningDelta,
    ReasoningPart,
    ReasoningStart,
    Request,
    Response,
    ResponseStart,
    ResponseStop,
    Role,
    SignatureDelta,
    SignatureKind,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    TextStart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageUpdate,
    from_json,
)
from translation.openai_chat import CODEC as CHAT
from translation.openai_responses import CODEC as RESPONSES
from translation.sse import SSEParser, encode_event

VECTORS = Path(__file__).parent / "vectors"
CODECS: dict[str, Codec] = {
    "anthropic": ANTHROPIC,
    "openai_chat": CHAT,
    "openai_responses": RESPONSES,
    "gemini": GEMINI,
}
CLIENTS = [ANTHROPIC, CHAT, RESPONSES, GEMINI]
CREATED = 1_700_000_000

DEFAULT_REQUEST = Request(
    model="client-alias",
    messages=(Message(Role.USER, (TextPart("weather in Paris and Rome?"),)),),
    tools=(
        FunctionTool("get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}}),
    ),
)


# -- sources ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str
    client_request: Request
    response: Response | None = None
    events: tuple[StreamEvent, ...] = ()


def _decode_stream(codec: Codec, request: Request, wire: list[dict[str, Any]]) -> list[StreamEvent]:
    data = b"".join(encode_event(e["data"], e.get("event")) for e in wire)
    parser, decoder = SSEParser(), codec.stream.StreamDecoder(request)
    events: list[StreamEvent] = []
    for sse in [*parser.feed(data), *parser.flush()]:
        events += decoder.feed(sse)
    return events + decoder.finish()


def _vector_sources() -> Iterator[Source]:
    for path in sorted(VECTORS.glob("*/*.json")):
        raw = json.loads(path.read_text())
        if raw["kind"] not in ("response", "stream"):
            continue
        folder, name = path.parent.name, f"{path.parent.name}/{path.stem}"
        client = raw.get("client", {}).get("request")
        client_request = from_json(Request, client) if client else DEFAULT_REQUEST
        upstream_request = from_json(Request, raw.get("request", {"model": "upstream-model", "messages": []}))
        decode = folder in CODECS and "decode" in raw.get("directions", ("decode", "encode"))
        if raw["kind"] == "response":
            if decode:
                response = CODECS[folder].response.decode_response(raw["wire"], request=upstream_request).value
            else:
                response = from_json(Response, raw["ir"])
            yield Source(name, client_request, response=response)
        else:
            if decode:
                events = _decode_stream(CODECS[folder], upstream_request, raw["wire"])
            else:
                events = [from_json(StreamEvent, e) for e in raw["ir"]]
            yield Source(name, client_request, events=tuple(events))


CACHED = Usage.from_anthropic(input_tokens=20, output_tokens=5, cache_read_input_tokens=1000)
FINAL = Usage.from_anthropic(
    input_tokens=20, output_tokens=180, cache_read_input_tokens=1000, cache_creation_input_tokens=300
)


def _rich_stream(ending: list[StreamEvent]) -> tuple[StreamEvent, ...]:
    """Signed reasoning, text, then two interleaved tool calls (a Chat upstream streams them side by side)."""
    return (
        ResponseStart("up_1", "upstream-model", CACHED, created=CREATED),
        ReasoningStart(0),
        ReasoningDelta(0, "The user wants two cities."),
        SignatureDelta(0, OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "sig-abc")),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Checking both."),
        BlockStop(1),
        ToolCallStart(2, "call_paris", "get_weather"),
        ToolCallStart(3, "call_rome", "get_weather"),
        ToolArgsDelta(2, '{"city":'),
        ToolArgsDelta(3, '{"city":"Rome"}'),
        ToolArgsDelta(2, '"Paris"}'),
        BlockStop(3),
        BlockStop(2),
        UsageUpdate(Usage.from_openai(1320, 150, cached_tokens=1000, reasoning_tokens=60)),
        *ending,
    )


def _failed_midway() -> tuple[StreamEvent, ...]:
    """Reasoning done, then text, a summary and a tool call all still open when the upstream fails."""
    return (
        ResponseStart("up_2", "upstream-model", CACHED, created=CREATED),
        ReasoningStart(0),
        ReasoningDelta(0, "Thinking"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "The weather in Par"),
        ToolCallStart(2, "call_paris", "get_weather"),
        ToolArgsDelta(2, '{"ci'),
        ReasoningStart(3, summary=True),
        ReasoningDelta(3, "Summary so f"),
        StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "Internal error", status=500)),
    )


def _hand_made() -> Iterator[Source]:
    yield Source(
        "hand/stream_reasoning_tools_cache",
        DEFAULT_REQUEST,
        events=_rich_stream([ResponseStop(StopReason.TOOL_USE, FINAL)]),
    )
    yield Source("hand/stream_failed_midway", DEFAULT_REQUEST, events=_failed_midway())
    yield Source(
        "hand/stream_overloaded_before_output",
        DEFAULT_REQUEST,
        events=(ResponseStart("up_3", "upstream-model"), StreamError(ApiError(ErrorKind.OVERLOADED, "Overloaded"))),
    )
    yield Source("hand/stream_cut_short", DEFAULT_REQUEST, events=_rich_stream([])[:8])
    yield Source(
        "hand/stream_max_tokens_no_usage",
        DEFAULT_REQUEST,
        events=(
            ResponseStart("up_4", "upstream-model"),
            TextStart(0),
            TextDelta(0, "Hel"),
            BlockStop(0),
            ResponseStop(StopReason.MAX_TOKENS),
        ),
    )
    yield Source(
        "hand/response_reasoning_tools_cache",
        DEFAULT_REQUEST,
        response=Response(
            id="up_5",
            model="upstream-model",
            parts=(
                ReasoningPart(
                    "Two cities.",
                    signature=OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "sig"),
                ),
                TextPart("Checking both."),
                ToolCallPart.from_raw("call_paris", "get_weather", '{"city":"Paris"}'),
                ToolCallPart.from_raw("call_rome", "get_weather", '{"city":"Rome"}'),
            ),
            stop=StopReason.TOOL_USE,
            usage=FINAL,
            created=CREATED,
        ),
    )
    yield Source(
        "hand/response_no_usage",
        DEFAULT_REQUEST,
        response=Response(id="up_6", model="upstream-model", parts=(TextPart("Hi"),), stop=StopReason.END_TURN),
    )


SOURCES = [*_vector_sources(), *_hand_made()]
RESPONSES_SOURCES = [s for s in SOURCES if s.response is not None]
STREAM_SOURCES = [s for s in SOURCES if s.response is None]


def test_sources_cover_every_dialect_and_shape() -> None:
    """The loader found vectors of each upstream dialect (a broken glob would make the tests below vacuous)."""
    prefixes = {s.name.split("/")[0] for s in SOURCES}
    assert {"anthropic", "openai_chat", "openai_responses", "gemini", "neutral", "hand"} <= prefixes
    assert len(RESPONSES_SOURCES) > 30 and len(STREAM_SOURCES) > 40


# -- strict validation ------------------------------------------------------------------------------------------


def _unknown_fields(value: Any, path: str = "$") -> list[str]:
    """Fields the SDK model kept as extras: the SDK does not know them."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{k}" for k in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _unknown_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found += _unknown_fields(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _unknown_fields(item, f"{path}.{key}")
    return found


# Fields emitted on purpose that the SDK types lack, each with its reason:
KNOWN_EXTRAS = {
    # Chat: DeepSeek-style reasoning text, additive (README: the Chat encoder's reasoning form).
    "$.choices[0].delta.reasoning_content",
    "$.choices[0].message.reasoning_content",
    # Responses: `store` is echoed from the request as the OpenAI API does; openai 3.54's Response lacks it.
    "$.store",
}


def strict(adapter: TypeAdapter[Any], obj: Any, **options: Any) -> Any:
    model = adapter.validate_json(json.dumps(obj), strict=True, **options)
    unknown = [f for f in _unknown_fields(model) if f not in KNOWN_EXTRAS]
    assert unknown == [], f"fields the SDK does not define: {unknown}"
    return model


def _chat_usage(body: dict[str, Any]) -> dict[str, Any]:
    """Known gap, kept on purpose: the Chat encoder leaves a count the upstream did not report out of `usage`
    (test_openai_chat_pitfalls: never written as 0), while the SDK's CompletionUsage requires all three. Only
    a missing count is filled in here; a wrong type or any other field still fails."""
    usage = body.get("usage")
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage.setdefault(key, 0)
    return body


def _chat_chunk(frame: dict[str, Any]) -> None:
    """A Chat chunk. Known gap: the SDK's streaming tool-call delta only has `type: "function"`, and how
    OpenAI streams a custom (freeform) tool call is unverified (protocols.md §3.2); the encoder sends
    `type: "custom"` with a `custom` object, checked here by shape instead."""
    for choice in frame.get("choices", []):
        for call in choice["delta"].get("tool_calls", []):
            if call.get("type") == "custom" or "custom" in call:
                custom = call.pop("custom")
                assert call.pop("type", "custom") == "custom"
                assert set(custom) <= {"name", "input"} and all(isinstance(v, str) for v in custom.values())
    strict(CHAT_CHUNK, _chat_usage(frame))


RESPONSE = TypeAdapter(OpenAIResponse)


def _by_type(union: Any) -> dict[str, TypeAdapter[Any]]:
    """One adapter per event `type` of a discriminated SDK union (clearer failures than the whole union)."""
    members = get_args(get_args(union)[0]) if get_origin(union) is Annotated else get_args(union)
    return {get_args(m.model_fields["type"].annotation)[0]: TypeAdapter(m) for m in members}


RESPONSE_EVENTS = _by_type(ResponseStreamEvent)
CHAT_COMPLETION = TypeAdapter(ChatCompletion)
CHAT_CHUNK = TypeAdapter(ChatCompletionChunk)
OPENAI_ERROR = TypeAdapter(OpenAIErrorObject)
ANTHROPIC_MESSAGE = TypeAdapter(AnthropicMessage)
ANTHROPIC_EVENTS = _by_type(RawMessageStreamEvent)
ANTHROPIC_ERROR = TypeAdapter(AnthropicErrorResponse)
GEMINI_RESPONSE = TypeAdapter(GenerateContentResponse)
BY_ALIAS = {"by_alias": True, "by_name": False}


def validate_body(client: Dialect, body: dict[str, Any]) -> None:
    match client:
        case Dialect.OPENAI_RESPONSES:
            strict(RESPONSE, body)
        case Dialect.OPENAI_CHAT:
            strict(CHAT_COMPLETION, _chat_usage(json.loads(json.dumps(body))))
        case Dialect.ANTHROPIC:
            strict(ANTHROPIC_MESSAGE, body)
        case Dialect.GEMINI:
            strict(GEMINI_RESPONSE, body, **BY_ALIAS)


def _gemini_error(frame: dict[str, Any]) -> None:
    assert frame.keys() == {"error"}
    error = frame["error"]
    assert error.keys() == {"code", "message", "status"}
    assert type(error["code"]) is int and isinstance(error["message"], str) and isinstance(error["status"], str)


def validate_stream(client: Dialect, wire: list[WireEvent]) -> None:
    frames = [w.data for w in wire]
    match client:
        case Dialect.OPENAI_RESPONSES:
            for w in wire:
                assert isinstance(w.data, dict) and w.event == w.data["type"]
                strict(RESPONSE_EVENTS[w.data["type"]], w.data)
            assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
            assert frames[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
        case Dialect.OPENAI_CHAT:
            for frame in frames:
                if frame == "[DONE]":
                    continue
                assert isinstance(frame, dict)
                if "error" in frame:
                    assert frame.keys() == {"error"}
                    strict(OPENAI_ERROR, frame["error"])
                else:
                    _chat_chunk(json.loads(json.dumps(frame)))
        case Dialect.ANTHROPIC:
            for w in wire:
                assert isinstance(w.data, dict) and w.event == w.data["type"]  # the SDK skips unnamed events
                if w.event == "error":
                    strict(ANTHROPIC_ERROR, w.data)
                elif w.event != "ping":
                    strict(ANTHROPIC_EVENTS[w.data["type"]], w.data)
        case Dialect.GEMINI:
            for frame in frames:
                assert isinstance(frame, dict)
                if "error" in frame:
                    _gemini_error(frame)
                else:
                    strict(GEMINI_RESPONSE, frame, **BY_ALIAS)


def encode_stream(client: Codec, source: Source) -> list[WireEvent]:
    encoder = client.stream.StreamEncoder(ClientContext(source.client_request, CREATED))
    wire = [w for event in source.events for w in encoder.feed(event)]
    return wire + encoder.finish()


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect.value)
@pytest.mark.parametrize("source", RESPONSES_SOURCES, ids=lambda s: s.name)
def test_encoded_response_validates_strictly(source: Source, client: Codec) -> None:
    assert source.response is not None
    body = client.response.encode_response(source.response, ClientContext(source.client_request, CREATED)).value
    validate_body(client.dialect, body)


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect.value)
@pytest.mark.parametrize("source", STREAM_SOURCES, ids=lambda s: s.name)
def test_encoded_stream_validates_strictly(source: Source, client: Codec) -> None:
    validate_stream(client.dialect, encode_stream(client, source))


# -- the validators reject what they should ---------------------------------------------------------------------

Break = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: Any) -> Break:
    def apply(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop(path: list[str | int]) -> Break:
    def apply(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


RICH = next(s for s in RESPONSES_SOURCES if s.name == "hand/response_reasoning_tools_cache")


@pytest.mark.parametrize(
    ("client", "break_"),
    [
        (RESPONSES, _drop(["usage", "input_tokens_details", "cached_tokens"])),
        (RESPONSES, _set(["usage", "output_tokens"], "180")),  # strict: no str -> int coercion
        (RESPONSES, _set(["output", 0, "statuz"], "completed")),  # a field the SDK does not know
        (CHAT, _drop(["choices", 0, "finish_reason"])),
        (ANTHROPIC, _set(["usage", "input_tokens"], 20.0)),
        (GEMINI, _set(["usage_metadata"], {})),  # snake_case is not the wire name
    ],
)
def test_validators_reject_broken_bodies(client: Codec, break_: Break) -> None:
    assert RICH.response is not None
    body = client.response.encode_response(RICH.response, ClientContext(RICH.client_request, CREATED)).value
    validate_body(client.dialect, body)
    break_(body)
    with pytest.raises((AssertionError, ValueError)):
        validate_body(client.dialect, body)
