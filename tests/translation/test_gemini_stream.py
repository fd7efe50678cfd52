"""Focused Gemini stream behaviours: no buffering, distinct call indices, stream/body parity, terminal events."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from translation.codec import ClientContext
from translation.errors import ApiError, ErrorKind
from translation.gemini.response import decode_response
from translation.gemini.stream import StreamDecoder, StreamEncoder
from translation.ir import (
    BlockStop,
    FunctionTool,
    Request,
    ResponseStart,
    ResponseStop,
    StopReason,
    StreamError,
    TextDelta,
    TextStart,
    ToolArgsDelta,
    ToolCallStart,
    ToolKind,
)
from translation.sse import SSEEvent
from translation.streaming import ResponseBuilder

REQUEST = Request(model="gemini-2.5-flash", messages=())


def _frame(*parts: dict[str, Any], finish: str | None = None, **extra: Any) -> SSEEvent:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return SSEEvent(json.dumps({"candidates": [candidate], "responseId": "r1", "modelVersion": "g", **extra}))


def test_each_frame_is_translated_when_it_arrives() -> None:
    """Pitfall 52: nothing waits for the end of the stream."""
    decoder = StreamDecoder(REQUEST)
    assert decoder.feed(_frame({"text": "Hel"})) == [ResponseStart("r1", "g"), TextStart(0), TextDelta(0, "Hel")]
    assert decoder.feed(_frame({"text": "lo"})) == [TextDelta(0, "lo")]


def test_parallel_calls_get_distinct_indices_and_ids() -> None:
    """Pitfall 1: never one index for several calls."""
    decoder = StreamDecoder(REQUEST)
    events = decoder.feed(
        _frame({"functionCall": {"name": "f", "args": {"a": 1}}}, {"functionCall": {"name": "f", "args": {"b": 2}}})
    )
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.id) for s in starts] == [(0, "call_r1_0"), (1, "call_r1_1")]
    assert [e for e in events if isinstance(e, ToolArgsDelta)] == [
        ToolArgsDelta(0, '{"a":1}'),
        ToolArgsDelta(1, '{"b":2}'),
    ]


def test_custom_tool_calls_come_back_as_raw_input() -> None:
    request = Request(model="m", messages=(), tools=(FunctionTool("apply_patch", kind=ToolKind.CUSTOM),))
    decoder = StreamDecoder(request)
    events = decoder.feed(_frame({"functionCall": {"id": "x", "name": "apply_patch", "args": {"input": "*** Begin"}}}))
    assert ToolCallStart(0, "x", "apply_patch", ToolKind.CUSTOM) in events
    assert ToolArgsDelta(0, "*** Begin") in events


def test_a_folded_stream_equals_the_whole_body() -> None:
    """The same answer streamed or not gives the same IR response (usage, stop reason, parts)."""
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 9}
    parts = [
        {"text": "think", "thought": True},
        {"text": "answer", "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "f", "args": {}}},
    ]
    body = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage,
        "responseId": "r1",
        "modelVersion": "g",
    }
    decoder = StreamDecoder(REQUEST)
    builder = ResponseBuilder()
    for event in [*decoder.feed(SSEEvent(json.dumps(body))), *decoder.finish()]:
        builder.feed(event)
    whole = decode_response(body).value
    # Stream events carry no extras, so the synthetic-id marker exists only on the whole body's call.
    whole = dataclasses.replace(whole, parts=tuple(dataclasses.replace(p, extras={}) for p in whole.parts))
    assert builder.response() == whole
    assert builder.response().stop is StopReason.TOOL_USE


def test_a_frame_that_is_not_json_ends_the_stream_with_an_error() -> None:
    decoder = StreamDecoder(REQUEST)
    (event,) = decoder.feed(SSEEvent("{oops"))
    assert isinstance(event, StreamError)
    assert decoder.feed(_frame({"text": "late"})) == [] and decoder.finish() == []


def test_an_empty_stream_is_an_error_not_an_empty_success() -> None:
    (event,) = StreamDecoder(REQUEST).finish()
    assert isinstance(event, StreamError)


def _encoder() -> StreamEncoder:
    return StreamEncoder(ClientContext(REQUEST, 1700000000))


def test_encoder_sends_text_at_once_and_holds_a_call_only_until_its_stop() -> None:
    encoder = _encoder()
    encoder.feed(ResponseStart("id", "up"))
    assert encoder.feed(TextStart(0)) == []
    assert len(encoder.feed(TextDelta(0, "a"))) == 1
    assert encoder.feed(ToolCallStart(1, "c", "f")) == []
    assert encoder.feed(ToolArgsDelta(1, '{"x":')) == []
    assert encoder.feed(ToolArgsDelta(1, "1}")) == []
    (frame,) = encoder.feed(BlockStop(1))
    assert isinstance(frame.data, dict)
    assert frame.data["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "c", "name": "f", "args": {"x": 1}}}
    ]


def test_encoder_ignores_everything_after_a_terminal_event() -> None:
    encoder = _encoder()
    encoder.feed(ResponseStart("id", "up"))
    (last,) = encoder.feed(ResponseStop(StopReason.END_TURN))
    assert isinstance(last.data, dict) and last.data["candidates"][0]["finishReason"] == "STOP"
    assert encoder.feed(StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "late"))) == []
    assert encoder.finish() == []
