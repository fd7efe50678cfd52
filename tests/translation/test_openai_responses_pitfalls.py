"""Focused behaviours of the OpenAI Responses codec (docs/pitfalls.md numbers in the test names)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.translation.test_vectors import Vector, load_vectors
from translation.codec import ClientContext, TargetOptions
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    Effort,
    FunctionTool,
    HostedTool,
    Message,
    OpaqueSignature,
    ReasoningConfig,
    ReasoningPart,
    Request,
    Response,
    ResponseStart,
    ResponseStop,
    Role,
    Sampling,
    SignatureKind,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    TextStart,
    ThinkingMode,
    ToolCallPart,
    ToolKind,
    ToolResultPart,
    TranslationError,
    Usage,
    from_json,
)
from translation.openai_responses.request import decode_request, encode_request
from translation.openai_responses.response import decode_response, encode_response
from translation.openai_responses.stream import StreamDecoder, StreamEncoder
from translation.sse import SSEEvent
from translation.streaming import ResponseBuilder, response_events

TARGET = TargetOptions(model="gpt-5.5")
CLIENT = ClientContext(Request(model="codex-alias", messages=()), 1700000000)


def _request(*messages: Message, **fields: object) -> Request:
    return Request(model="m", messages=messages, **fields)  # type: ignore[arg-type]


def _encoded_stream(events: list[StreamEvent]) -> list[dict[str, Any]]:
    encoder = StreamEncoder(CLIENT)
    out = [w for e in events for w in encoder.feed(e)] + encoder.finish()
    return [w.data for w in out if isinstance(w.data, dict)]


# -- requests ------------------------------------------------------------------------------------------------


def test_an_unmappable_hosted_tool_is_left_out_naming_it() -> None:
    tool = HostedTool("code_execution", Dialect.ANTHROPIC, {"type": "code_execution_20250825", "name": "x"})
    result = encode_request(_request(tools=(tool,)), TARGET)
    assert "tools" not in result.value
    assert [(w.feature, w.path) for w in result.warnings] == [("hosted_tool:code_execution", "tools[0]")]


def test_several_candidates_are_refused() -> None:
    with pytest.raises(TranslationError) as raised:
        encode_request(_request(sampling=Sampling(candidate_count=2)), TARGET)
    assert raised.value.feature == "candidate_count"


@pytest.mark.parametrize(
    ("config", "reasoning"),
    [
        (ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=2048), {"effort": "low"}),
        (ReasoningConfig(mode=ThinkingMode.DISABLED), {"effort": "none"}),
        (ReasoningConfig(effort=Effort.XHIGH, include_thoughts=True), {"effort": "xhigh", "summary": "auto"}),
        (ReasoningConfig(mode=ThinkingMode.ADAPTIVE), None),
    ],
)
def test_reasoning_effort_and_budget_bridge_37(config: ReasoningConfig, reasoning: object) -> None:
    assert encode_request(_request(reasoning=config), TARGET).value.get("reasoning") == reasoning


def test_effort_minimal_stays_minimal_37() -> None:
    decoded = decode_request({"model": "m", "input": "x", "reasoning": {"effort": "minimal"}}).value
    assert decoded.reasoning == ReasoningConfig(effort=Effort.MINIMAL)
    assert encode_request(decoded, TARGET).value["reasoning"] == {"effort": "minimal"}


def test_only_responses_reasoning_state_is_replayed_byte_for_byte_33() -> None:
    own = OpaqueSignature(Dialect.OPENAI_RESPONSES, SignatureKind.RESPONSES_ENCRYPTED, "gAAA+/=", "rs_9")
    foreign = OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "EqQB")
    history = Message(Role.ASSISTANT, (ReasoningPart("a", True, own), ReasoningPart("b", signature=foreign)))
    result = encode_request(_request(history), TARGET)
    assert result.value["input"] == [
        {
            "type": "reasoning",
            "id": "rs_9",
            "summary": [{"type": "summary_text", "text": "a"}],
            "encrypted_content": "gAAA+/=",
        }
    ]
    assert [w.feature for w in result.warnings] == ["reasoning_signature"]


def test_tool_results_come_before_the_user_text_of_the_same_turn_6() -> None:
    turn = Message(Role.USER, (ToolResultPart("c1", (TextPart("ok"),)), TextPart("<system-reminder>x")))
    items = encode_request(_request(turn), TARGET).value["input"]
    assert [item["type"] for item in items] == ["function_call_output", "message"]


def test_a_custom_tool_stays_custom_with_its_grammar_16() -> None:
    body = {
        "model": "m",
        "input": [{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "*** Begin Patch"}],
        "tools": [{"type": "custom", "name": "apply_patch", "format": {"type": "text"}}],
    }
    decoded = decode_request(body).value
    (call,) = decoded.messages[0].parts
    assert isinstance(call, ToolCallPart) and call.kind is ToolKind.CUSTOM and call.arguments is None
    assert isinstance(decoded.tools[0], FunctionTool) and decoded.tools[0].kind is ToolKind.CUSTOM
    assert encode_request(decoded, TargetOptions(model="m")).value == body


def test_builtin_tools_are_hosted_tools_not_silently_dropped_17() -> None:
    tools = decode_request({"model": "m", "input": "x", "tools": [{"type": "local_shell"}, {"type": "web_search"}]})
    assert [(t.name, t.dialect) for t in tools.value.tools if isinstance(t, HostedTool)] == [
        ("local_shell", Dialect.OPENAI_RESPONSES),
        ("web_search", Dialect.OPENAI_RESPONSES),
    ]


# -- responses -----------------------------------------------------------------------------------------------


def test_unknown_usage_is_null_not_zero_29() -> None:
    body = encode_response(Response("r", "m", (TextPart("hi"),), StopReason.END_TURN), CLIENT).value
    assert body["usage"] is None
    assert decode_response({"id": "r", "status": "completed", "output": []}).value.usage == Usage()


def test_cached_tokens_stay_inside_input_tokens_30() -> None:
    usage = Usage(input_tokens=10, cache_read_tokens=90, output_tokens=5)
    body = encode_response(Response("r", "m", (), StopReason.END_TURN, usage), CLIENT).value
    assert body["usage"]["input_tokens"] == 100
    assert body["usage"]["input_tokens_details"]["cached_tokens"] == 90
    assert decode_response(
        {"id": "r", "status": "completed", "output": [], "usage": body["usage"]}
    ).value.usage == Usage(10, 90, 0, 5, 0)  # the wire's required cache_write_tokens and reasoning_tokens are 0


def test_a_response_survives_encode_then_decode() -> None:
    response = Response(
        "resp_1",
        "m",
        (TextPart("a"), ToolCallPart.from_raw("call_1", "f", '{"x":1}')),
        StopReason.TOOL_USE,
        Usage(1, 2, 0, 3, 1),  # every count the wire requires is known (cache_write_tokens is never null there)
    )
    decoded = decode_response(encode_response(response, CLIENT).value).value
    assert [(type(p), getattr(p, "text", None)) for p in decoded.parts] == [
        (type(p), getattr(p, "text", None)) for p in response.parts
    ]
    assert (decoded.stop, decoded.usage) == (response.stop, response.usage)


# -- streams -------------------------------------------------------------------------------------------------


def test_each_client_event_leaves_as_soon_as_its_ir_event_arrives_52() -> None:
    encoder = StreamEncoder(CLIENT)
    encoder.feed(ResponseStart("r", "m"))
    encoder.feed(TextStart(0))
    (delta,) = encoder.feed(TextDelta(0, "Hi"))
    assert isinstance(delta.data, dict) and delta.data["type"] == "response.output_text.delta"


def test_sequence_numbers_count_from_zero_without_gaps() -> None:
    for vector in load_vectors("openai_responses", "stream"):
        if "encode" in vector.directions:
            numbers = [e["data"]["sequence_number"] for e in vector.wire]
            assert numbers == list(range(len(numbers))), vector.name


def test_a_failure_is_never_reported_as_success_27() -> None:
    events = _encoded_stream([ResponseStart("r", "m"), StreamError(ApiError(ErrorKind.RATE_LIMITED, "slow"))])
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "rate_limit_exceeded"
    assert not any(e["type"] == "response.completed" for e in events)


@pytest.mark.parametrize("vector", [v for v in load_vectors("openai_responses", "stream") if "encode" in v.directions])
def test_encoded_streams_decode_back_to_the_same_response(vector: Vector) -> None:
    """Our own encoder's output, read back by our decoder, folds into the response the IR stream folds into —
    over SSE and as WebSocket frames (the same dicts, no `event:` name)."""
    ir = [from_json(StreamEvent, e) for e in vector.ir]
    expected, actual = ResponseBuilder(), ResponseBuilder()
    for event in ir:
        expected.feed(event)
    encoder = StreamEncoder(CLIENT)
    frames = [w for e in ir for w in encoder.feed(e)] + encoder.finish()
    decoder = StreamDecoder(Request(model="m", messages=()))
    for frame in frames:
        for event in decoder.feed(SSEEvent(json.dumps(frame.data))):
            actual.feed(event)
    for event in decoder.finish():
        actual.feed(event)
    want, got = expected.response(), actual.response()
    assert [type(p) for p in got.parts] == [type(p) for p in want.parts]
    assert [getattr(p, "text", getattr(p, "raw_arguments", None)) for p in got.parts] == [
        getattr(p, "text", getattr(p, "raw_arguments", None)) for p in want.parts
    ]
    failed = expected.error is not None or expected.stop is None  # a stream without an end is a failure
    assert (actual.error is not None) == failed
    assert failed or got.stop == want.stop


def test_a_whole_response_replayed_as_a_stream_matches_the_non_streamed_answer() -> None:
    response = Response(
        "resp_z", "m", (ReasoningPart("p", True), TextPart("t")), StopReason.END_TURN, Usage(1, None, None, 2)
    )
    events = _encoded_stream(response_events(response))
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["output"] == encode_response(response, CLIENT).value["output"]


def test_nothing_follows_the_terminal_event() -> None:
    decoder = StreamDecoder(Request(model="m", messages=()))
    done = {"type": "response.completed", "response": {"id": "r", "status": "completed", "output": []}}
    assert isinstance(decoder.feed(SSEEvent(json.dumps(done)))[-1], ResponseStop)
    assert decoder.feed(SSEEvent(json.dumps({"type": "error", "message": "late"}))) == []
    assert decoder.finish() == []
    encoder = StreamEncoder(CLIENT)
    encoder.feed(ResponseStop(StopReason.END_TURN))
    assert encoder.feed(BlockStop(0)) == [] and encoder.finish() == []
