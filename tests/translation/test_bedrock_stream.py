"""Bedrock converse-stream through the IR: a Bedrock stream (real event-stream bytes, cut anywhere) decoded and
re-encoded for other clients, other upstreams' streams encoded for a Bedrock client and read back by boto3's own
event-stream parser, mid-stream exceptions, and streams that end early."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EventStreamError as BotocoreEventStreamError

from tests.translation.bedrocklib import parse_stream
from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock import CODEC as BEDROCK
from translation.bedrock.eventstream import EventStreamParser, encode_message, encode_wire_event
from translation.bedrock.stream import StreamDecoder as BedrockStreamDecoder
from translation.codec import ClientContext, WireEvent
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    FunctionTool,
    Message,
    OpaqueSignature,
    ReasoningDelta,
    ReasoningStart,
    Request,
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
    ToolCallStart,
    ToolKind,
    Usage,
)
from translation.openai_chat import CODEC as CHAT
from translation.sse import SSEEvent
from translation.streaming import ResponseBuilder

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REQUEST = Request(model=MODEL, messages=(Message(Role.USER, (TextPart("Weather in Paris?"),)),), stream=True)
CLIENT = ClientContext(Request(model="my-alias", messages=REQUEST.messages, stream=True), 1_700_000_000)

# A Claude turn on Bedrock: reasoning (text, then its signature), text, a tool call whose input arrives in pieces,
# then the stop reason and the usage; payloads carry the `p` padding Bedrock adds.
FRAMES: list[tuple[str, dict[str, Any]]] = [
    ("messageStart", {"p": "abcdefghijklmnopqrstuvwxyzABCDEFGH", "role": "assistant"}),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user wants "}}, "p": "ab"},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "weather."}}, "p": "abc"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqoBCkgIARAB"}}}),
    ("contentBlockStop", {"contentBlockIndex": 0, "p": "abcd"}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Let me check."}, "p": "a"}),
    ("contentBlockStop", {"contentBlockIndex": 1, "p": "abcdefg"}),
    (
        "contentBlockStart",
        {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_kZJMlvQm", "name": "get_weather"}}},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    ("messageStop", {"stopReason": "tool_use", "p": "abcdefghij"}),
    (
        "metadata",
        {
            "usage": {
                "inputTokens": 25,
                "outputTokens": 60,
                "totalTokens": 1285,
                "cacheReadInputTokens": 1200,
                "cacheWriteInputTokens": 0,
            },
            "metrics": {"latencyMs": 1530},
            "p": "abcdef",
        },
    ),
]
BODY = b"".join(encode_message(name, json.dumps(payload).encode()) for name, payload in FRAMES)
USAGE = Usage(input_tokens=25, cache_read_tokens=1200, cache_write_tokens=0, output_tokens=60)
SIGNATURE = OpaqueSignature(BEDROCK.dialect, SignatureKind.BEDROCK_SIGNATURE, "EqoBCkgIARAB")
EXPECTED: list[StreamEvent] = [
    ResponseStart("rid", MODEL),
    ReasoningStart(0),
    ReasoningDelta(0, "The user wants "),
    ReasoningDelta(0, "weather."),
    SignatureDelta(0, SIGNATURE),
    BlockStop(0),
    TextStart(1),
    TextDelta(1, "Let me check."),
    BlockStop(1),
    ToolCallStart(2, "tooluse_kZJMlvQm", "get_weather"),
    ToolArgsDelta(2, '{"city":'),
    ToolArgsDelta(2, '"Paris"}'),
    BlockStop(2),
    ResponseStop(StopReason.TOOL_USE, USAGE),
]


def _decode(chunks: list[bytes], request: Request = REQUEST) -> list[StreamEvent]:
    parser = EventStreamParser()
    decoder = BEDROCK.stream.StreamDecoder(request)
    events = [e for chunk in chunks for sse in parser.feed(chunk) for e in decoder.feed(sse)]
    return events + [e for sse in parser.flush() for e in decoder.feed(sse)] + decoder.finish()


def _with_id(events: list[StreamEvent], response_id: str = "rid") -> list[StreamEvent]:
    return [ResponseStart(response_id, e.model) if isinstance(e, ResponseStart) else e for e in events]


def test_the_fixture_is_what_boto3_reads() -> None:
    events = list(parse_stream([BODY]))
    assert [next(iter(e)) for e in events] == [name for name, _ in FRAMES]
    assert events[-1]["metadata"]["usage"]["cacheReadInputTokens"] == 1200


def test_decode() -> None:
    events = _decode([BODY])
    assert isinstance(events[0], ResponseStart) and events[0].id.startswith("bedrock_")
    assert _with_id(events) == EXPECTED


def test_the_routing_layer_can_name_the_response() -> None:
    decoder = BedrockStreamDecoder(REQUEST, response_id="req-1234")
    (start,) = decoder.feed(SSEEvent('{"role":"assistant"}', "messageStart"))
    assert start == ResponseStart("req-1234", MODEL)


def test_every_cut_gives_the_same_events() -> None:
    first = _decode([BODY])
    for cut in range(0, len(BODY) + 1, 7):
        assert _decode([BODY[:cut], BODY[cut:]]) == first, cut


def test_a_bedrock_stream_as_openai_chat_chunks() -> None:
    encoder = CHAT.stream.StreamEncoder(CLIENT)
    chunks = [w.data for e in _decode([BODY]) for w in encoder.feed(e)] + [w.data for w in encoder.finish()]
    deltas = [c["choices"][0]["delta"] for c in chunks if isinstance(c, dict) and c.get("choices")]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls = [call for d in deltas for call in d.get("tool_calls") or []]
    assert calls[0]["id"] == "tooluse_kZJMlvQm" and calls[0]["function"]["name"] == "get_weather"
    assert "".join(call["function"].get("arguments") or "" for call in calls) == '{"city":"Paris"}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if isinstance(c, dict) and c.get("choices")]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1] == "[DONE]"


def test_a_bedrock_stream_folds_into_the_same_answer_as_the_non_streamed_one() -> None:
    builder = ResponseBuilder()
    for event in _decode([BODY]):
        builder.feed(event)
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "reasoningContent": {
                            "reasoningText": {"text": "The user wants weather.", "signature": "EqoBCkgIARAB"}
                        }
                    },
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_kZJMlvQm", "name": "get_weather", "input": {"city": "Paris"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": FRAMES[-1][1]["usage"],
        "metrics": {"latencyMs": 1530},
    }
    expected = BEDROCK.response.decode_response(answer, request=REQUEST).value
    streamed = builder.response()
    assert (streamed.parts, streamed.stop, streamed.usage) == (expected.parts, expected.stop, expected.usage)


def _client_stream(events: list[StreamEvent]) -> tuple[list[WireEvent], list[str]]:
    encoder = BEDROCK.stream.StreamEncoder(CLIENT)
    wire = [w for e in events for w in encoder.feed(e)] + encoder.finish()
    return wire, [w.feature for w in encoder.warnings]


def test_same_dialect_stream_round_trip() -> None:
    wire, warnings = _client_stream(_decode([BODY]))
    assert warnings == []
    expected = [(name, {k: v for k, v in payload.items() if k != "p"}) for name, payload in FRAMES]
    expected[-1][1]["metrics"] = {"latencyMs": 0}  # the translation reads no clock; routing may fill it in
    assert [(w.event, w.data) for w in wire] == expected


def test_an_anthropic_stream_for_a_boto3_client() -> None:
    sse = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                               "model": "claude", "content": [],
                                                               "usage": {"input_tokens": 9, "output_tokens": 1,
                                                                         "cache_creation_input_tokens": 300}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Plan."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "anthropic-sig"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"dir":"/"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 33}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    decoder = ANTHROPIC.stream.StreamDecoder(REQUEST)
    events = [e for name, data in sse for e in decoder.feed(SSEEvent(json.dumps(data), name))] + decoder.finish()
    wire, warnings = _client_stream(events)
    assert warnings == ["reasoning_signature"]  # Anthropic's signature is not Bedrock's: the text alone goes out
    got = list(parse_stream([b"".join(encode_wire_event(w) for w in wire)]))
    assert got == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Plan."}}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockStart": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "toolu_1", "name": "ls"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"dir":"/"}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {
            "metadata": {
                "usage": {"inputTokens": 9, "outputTokens": 33, "totalTokens": 342, "cacheWriteInputTokens": 300},
                "metrics": {"latencyMs": 0},
            }
        },
    ]


def test_interleaved_blocks_go_out_one_after_the_other() -> None:
    events: list[StreamEvent] = [
        ResponseStart("r", "m"),
        ToolCallStart(0, "c0", "a"),
        ToolCallStart(1, "c1", "b"),
        ToolArgsDelta(1, "{}"),
        ToolArgsDelta(0, '{"x":1}'),
        BlockStop(0),
        BlockStop(1),
        ResponseStop(StopReason.TOOL_USE, Usage(input_tokens=1, output_tokens=2)),
    ]
    wire, _ = _client_stream(events)
    indices = [w.data["contentBlockIndex"] for w in wire if isinstance(w.data, dict) and "contentBlockIndex" in w.data]
    assert indices == [0, 0, 0, 1, 1, 1]


def test_custom_tool_calls_both_ways() -> None:
    request = Request(
        model=MODEL, messages=REQUEST.messages, tools=(FunctionTool("apply_patch", kind=ToolKind.CUSTOM),)
    )
    frames = [
        encode_message("messageStart", b'{"role":"assistant"}'),
        encode_message(
            "contentBlockStart",
            b'{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t1","name":"apply_patch"}}}',
        ),
        encode_message(
            "contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\\"input\\": \\"*** Be"}}}'
        ),
        encode_message("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"toolUse":{"input":"gin\\"}"}}}'),
        encode_message("contentBlockStop", b'{"contentBlockIndex":0}'),
        encode_message("messageStop", b'{"stopReason":"tool_use"}'),
    ]
    events = _decode(frames, request)
    assert events[1:4] == [
        ToolCallStart(0, "t1", "apply_patch", ToolKind.CUSTOM),
        ToolArgsDelta(0, "*** Begin"),
        BlockStop(0),
    ]
    assert isinstance(events[-1], ResponseStop)  # metadata never came: the stop is still known
    wire, _ = _client_stream(events)
    deltas = [w.data for w in wire if w.event == "contentBlockDelta"]
    assert deltas == [{"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"input":"*** Begin"}'}}}]


@pytest.mark.parametrize(
    ("exception", "kind", "status", "client_exception"),
    [
        ("throttlingException", ErrorKind.RATE_LIMITED, 429, "throttlingException"),
        # The kind is what crosses the IR: a Bedrock client gets the exception that reports it.
        ("modelStreamErrorException", ErrorKind.UPSTREAM_ERROR, 502, "internalServerException"),
        ("internalServerException", ErrorKind.UPSTREAM_ERROR, 500, "internalServerException"),
        ("validationException", ErrorKind.INVALID_REQUEST, 400, "validationException"),
        ("serviceUnavailableException", ErrorKind.OVERLOADED, 503, "serviceUnavailableException"),
    ],
)
def test_a_midstream_exception(exception: str, kind: ErrorKind, status: int, client_exception: str) -> None:
    body = BODY[: len(b"".join(encode_message(n, json.dumps(p).encode()) for n, p in FRAMES[:6]))]
    failure = encode_message(exception, b'{"message":"Something broke."}', "exception")
    events = _decode([body, failure])
    assert isinstance(events[-1], StreamError)
    error = events[-1].error
    assert (error.kind, error.http_status, error.message) == (kind, status, "Something broke.")
    assert not any(isinstance(e, ResponseStop) for e in events)

    chat = CHAT.stream.StreamEncoder(CLIENT)
    chunks = [w.data for e in events for w in chat.feed(e)] + [w.data for w in chat.finish()]
    assert any(isinstance(c, dict) and c.get("error", {}).get("message") == "Something broke." for c in chunks)

    wire, _ = _client_stream(events)
    stream = parse_stream([b"".join(encode_wire_event(w) for w in wire)])
    with pytest.raises(BotocoreEventStreamError) as caught:
        list(stream)
    assert caught.value.response["Error"]["Code"] == client_exception
    assert caught.value.response["Error"]["Message"] == "Something broke."


def test_a_stream_cut_short_is_an_error_never_a_success() -> None:
    events = _decode([BODY[:300]])
    assert isinstance(events[-1], StreamError) and events[-1].error.kind is ErrorKind.UPSTREAM_ERROR
    wire, _ = _client_stream([ResponseStart("r", "m"), TextStart(0), TextDelta(0, "partial")])
    assert (wire[-1].event, wire[-1].data) == (
        "internalServerException",
        {"message": "the upstream stream ended early"},
    )


def test_the_model_stream_error_keeps_the_original_message() -> None:
    payload = {"message": "Model stream error", "originalStatusCode": 400, "originalMessage": "prompt is too long"}
    events = _decode([encode_message("modelStreamErrorException", json.dumps(payload).encode(), "exception")])
    assert events[-1] == StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "Model stream error (prompt is too long)"))


def test_redacted_reasoning_and_signatures_for_a_bedrock_client() -> None:
    redacted = OpaqueSignature(BEDROCK.dialect, SignatureKind.BEDROCK_REDACTED, "b3BhcXVl")
    events: list[StreamEvent] = [
        ResponseStart("r", "m"),
        ReasoningStart(0),
        SignatureDelta(0, redacted),
        BlockStop(0),
        ResponseStop(StopReason.END_TURN),
    ]
    wire, warnings = _client_stream(events)
    assert warnings == []
    got = list(parse_stream([b"".join(encode_wire_event(w) for w in wire)]))
    assert got[1] == {
        "contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": b"opaque"}}}
    }
    assert _with_id(_decode([b"".join(encode_wire_event(w) for w in wire)]))[1:4] == [
        ReasoningStart(0),
        SignatureDelta(0, redacted),
        BlockStop(0),
    ]


def test_member_wrapped_events_and_unknown_members() -> None:
    """Events without a name, wrapped in their member (`{"contentBlockDelta": {...}}`, as boto3 yields them and
    some relays forward them), read the same; blocks the IR has no stream form for are skipped with a warning."""
    decoder = BedrockStreamDecoder(REQUEST, response_id="r")
    wire = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"contentBlockIndex": 0, "start": {"image": {"format": "png"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"citation": {"title": "t"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"text": "ok"}}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 5}}},
    ]
    events = [e for item in wire for e in decoder.feed(SSEEvent(json.dumps(item)))]
    assert events == [
        ResponseStart("r", MODEL),
        TextStart(0),
        TextDelta(0, "ok"),
        BlockStop(0),
        ResponseStop(StopReason.END_TURN, Usage(input_tokens=1, output_tokens=1)),
    ]
    assert [w.feature for w in decoder.warnings] == ["native:image", "native:citation"]
    assert decoder.finish() == []
