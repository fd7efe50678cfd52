"""Focused checks of the Anthropic stream machines and response mapping: latency, ids, stop reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from translation.anthropic.response import decode_response, decode_stop, encode_response, encode_stop
from translation.anthropic.stream import StreamDecoder, StreamEncoder
from translation.anthropic.wire import STOP_FROM_WIRE, thinking_signature
from translation.codec import ClientContext, WireEvent
from translation.ir import (
    BlockStop,
    ReasoningDelta,
    ReasoningStart,
    Request,
    Response,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
    StopReason,
    StreamEvent,
    TextDelta,
    TextStart,
    ToolArgsDelta,
    ToolCallStart,
    Usage,
    Warnings,
)
from translation.sse import SSEEvent
from translation.streaming import ResponseBuilder

REQUEST = Request(model="claude-sonnet-4-5", messages=())
CLIENT = ClientContext(REQUEST, 1700000000)


def _sse(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(json.dumps(data), data["type"])


def _data(wire: WireEvent) -> dict[str, Any]:
    assert isinstance(wire.data, dict)
    return wire.data


def _start(message_id: str = "msg_1") -> SSEEvent:
    message = {"id": message_id, "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}
    return _sse({"type": "message_start", "message": message})


@pytest.mark.parametrize("wire", sorted(STOP_FROM_WIRE))
def test_every_anthropic_stop_reason_round_trips(wire: str) -> None:
    stop, _ = decode_stop(wire)
    assert stop is not StopReason.OTHER
    assert encode_stop(stop, Warnings()) == wire


@pytest.mark.parametrize("stop", [StopReason.ERROR, StopReason.OTHER])
def test_stop_reasons_without_anthropic_form_end_the_turn_with_a_warning(stop: StopReason) -> None:
    w = Warnings()
    assert encode_stop(stop, w) == "end_turn"
    assert [i.feature for i in w.items] == [f"stop_reason:{stop.value}"]


def test_unknown_stop_reason_is_kept_as_detail() -> None:
    assert decode_stop("brand_new_reason") == (StopReason.OTHER, "brand_new_reason")


def test_missing_tool_ids_are_synthesised_deterministically() -> None:
    body = {"id": "msg_9", "content": [{"type": "text", "text": "x"}, {"type": "tool_use", "name": "f", "input": {}}]}
    assert decode_response(body).value.parts[1].id == "call_msg_9_1"  # type: ignore[union-attr]
    decoder = StreamDecoder(REQUEST)
    decoder.feed(_start("msg_9"))
    (event,) = decoder.feed(
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "name": "f"}})
    )
    assert event == ToolCallStart(0, "call_msg_9_0", "f")


def test_whole_input_in_block_start_becomes_one_fragment() -> None:
    decoder = StreamDecoder(REQUEST)
    decoder.feed(_start())
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}
    decoder.feed(_sse({"type": "content_block_start", "index": 0, "content_block": block}))
    assert decoder.feed(_sse({"type": "content_block_stop", "index": 0})) == [ToolArgsDelta(0, '{"a":1}'), BlockStop(0)]


def test_decoder_emits_each_event_as_it_arrives() -> None:
    decoder = StreamDecoder(REQUEST)
    assert decoder.feed(_start()) == [ResponseStart("msg_1", "m", Usage(input_tokens=5, output_tokens=1))]
    text_block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert decoder.feed(_sse(text_block)) == [TextStart(0)]
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}
    assert decoder.feed(_sse(delta)) == [TextDelta(0, "a")]
    assert decoder.feed(SSEEvent('{"type": "ping"}', "ping")) == []
    assert decoder.feed(SSEEvent("not json", "content_block_delta")) == []
    assert [w.feature for w in decoder.warnings] == ["stream_event"]


def test_encoder_emits_each_event_as_it_arrives() -> None:
    encoder = StreamEncoder(CLIENT)
    assert [w.event for w in encoder.feed(ResponseStart("msg_1", "m", Usage(input_tokens=9)))] == ["message_start"]
    assert _data(encoder.feed(ToolCallStart(0, "call.1", "f"))[0])["content_block"]["id"] == "call_1"
    assert [w.event for w in encoder.feed(ToolArgsDelta(0, "{"))] == ["content_block_delta"]
    assert [w.event for w in encoder.feed(BlockStop(0))] == ["content_block_stop"]
    stop = encoder.feed(ResponseStop(StopReason.TOOL_USE, Usage(output_tokens=4)))
    assert [w.event for w in stop] == ["message_delta", "message_stop"]
    assert _data(stop[0])["usage"] == {"input_tokens": 9, "output_tokens": 4}
    assert encoder.finish() == []


def test_message_start_carries_real_input_tokens() -> None:
    encoder = StreamEncoder(CLIENT)
    (start,) = encoder.feed(ResponseStart("r", "m", Usage(input_tokens=100, cache_read_tokens=50)))
    assert _data(start)["message"]["usage"] == {"input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 0}
    assert _data(start)["message"]["model"] == "claude-sonnet-4-5"  # the name the client asked for


def test_signed_reasoning_streams_as_a_thinking_block() -> None:
    """Held until its signature says whose it is, then sent whole."""
    encoder = StreamEncoder(CLIENT)
    encoder.feed(ResponseStart("r", "m"))
    held: list[StreamEvent] = [
        ReasoningStart(0),
        ReasoningDelta(0, "a"),
        ReasoningDelta(0, "b"),
        SignatureDelta(0, thinking_signature("sig")),
    ]
    assert [w for event in held for w in encoder.feed(event)] == []
    wire = [w.data for w in encoder.feed(BlockStop(0))]
    assert wire == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "ab"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
    ]


def test_stream_and_whole_response_decode_to_the_same_response() -> None:
    body = {
        "id": "msg_1",
        "model": "m",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    events = [
        _start(),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        _sse({"type": "content_block_stop", "index": 0}),
        _sse(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            }
        ),
        _sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'},
            }
        ),
        _sse({"type": "content_block_stop", "index": 1}),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 7},
            }
        ),
        _sse({"type": "message_stop"}),
    ]
    decoder, builder = StreamDecoder(REQUEST), ResponseBuilder()
    for event in events:
        for ir in decoder.feed(event):
            builder.feed(ir)
    assert builder.response() == decode_response(body).value


def test_encode_response_uses_zero_only_for_required_usage_counts() -> None:
    response = Response(id="r", model="m", parts=(), stop=StopReason.END_TURN, usage=Usage())
    body = encode_response(response, CLIENT).value
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0}
