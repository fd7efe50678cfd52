"""A Responses client whose upstream fails midway: every item still streaming is closed with status
`incomplete` (never `completed`), and the stream ends with `response.failed` carrying those partial items and
an `error` {code, message}; every event validates strictly against the openai SDK."""

from __future__ import annotations

import json
from typing import Any

from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from translation.codec import ClientContext
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    FunctionTool,
    Message,
    ReasoningDelta,
    ReasoningStart,
    Request,
    ResponseStart,
    Role,
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
from translation.openai_responses import CODEC

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
REQUEST = Request(
    model="codex-alias",
    messages=(Message(Role.USER, (TextPart("go"),)),),
    tools=(FunctionTool("shell", parameters={"type": "object"}), FunctionTool("apply_patch", kind=ToolKind.CUSTOM)),
)


def run(events: list[StreamEvent], *, finish: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    encoder = CODEC.stream.StreamEncoder(ClientContext(REQUEST, 1_700_000_000))
    wire = [w for event in events for w in encoder.feed(event)] + (encoder.finish() if finish else [])
    frames: list[dict[str, Any]] = []
    for w in wire:
        assert isinstance(w.data, dict) and w.event == w.data["type"]
        frames.append(w.data)
        EVENT.validate_json(json.dumps(w.data), strict=True)
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    return frames, [w.feature for w in encoder.warnings]


START = ResponseStart("up1", "m", Usage.from_openai(100, 0, cached_tokens=40))
FAILURE = StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "Internal error", status=500))


def _done_items(frames: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {f["output_index"]: f["item"] for f in frames if f["type"] == "response.output_item.done"}


def test_open_items_close_incomplete_and_the_response_fails() -> None:
    frames, warnings = run(
        [
            START,
            ReasoningStart(0, summary=True),
            ReasoningDelta(0, "plan: "),
            BlockStop(0),  # finished before the failure: completed as usual
            TextStart(1),
            TextDelta(1, "Running the tes"),
            ToolCallStart(2, "call_1", "shell"),
            ToolArgsDelta(2, '{"cmd": "pyt'),
            ReasoningStart(3),
            ReasoningDelta(3, "half a thou"),
            FAILURE,
        ]
    )
    items = _done_items(frames)
    assert [items[i]["type"] for i in sorted(items)] == ["reasoning", "message", "function_call", "reasoning"]
    assert "status" not in items[0]  # completed reasoning items carry no status, as before
    assert [items[i]["status"] for i in (1, 2, 3)] == ["incomplete"] * 3
    assert items[1]["content"] == [{"type": "output_text", "text": "Running the tes", "annotations": []}]
    assert items[2]["arguments"] == '{"cmd": "pyt'
    assert items[3]["content"] == [{"type": "reasoning_text", "text": "half a thou"}]

    types = [f["type"] for f in frames]
    # The partial text is closed like any text; the partial arguments are never declared done.
    assert types.count("response.output_text.done") == 1 and types.count("response.content_part.done") == 1
    assert "response.function_call_arguments.done" not in types
    assert types[-2:] == ["error", "response.failed"]
    assert frames[-2]["code"] == "server_error" and frames[-2]["message"] == "Internal error"

    failed = frames[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Internal error"}
    assert failed["output"] == [items[i] for i in sorted(items)]
    assert failed["usage"]["input_tokens_details"] == {"cached_tokens": 40, "cache_write_tokens": 0}
    assert failed["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert warnings == []


def test_nothing_is_ever_completed_after_a_failure() -> None:
    frames, _ = run([START, TextStart(0), TextDelta(0, "x"), FAILURE, BlockStop(0)])
    assert [f["type"] for f in frames][-1] == "response.failed"
    assert all(f.get("item", {}).get("status") != "completed" for f in frames)


def test_upstream_that_just_ends_fails_the_same_way() -> None:
    frames, _ = run([START, ToolCallStart(0, "call_1", "shell"), ToolArgsDelta(0, "{")], finish=True)
    assert _done_items(frames)[0]["status"] == "incomplete"
    assert frames[-1]["type"] == "response.failed"
    assert frames[-1]["response"]["error"]["code"] == "server_error"


def test_partial_custom_tool_call_is_withheld() -> None:
    """A custom call item has no status field to say `incomplete`; a half patch must not look like a call
    to run, so it gets no done event and is not in the failed response's output."""
    frames, warnings = run(
        [START, ToolCallStart(0, "call_p", "apply_patch", ToolKind.CUSTOM), ToolArgsDelta(0, "*** Begin"), FAILURE]
    )
    assert _done_items(frames) == {}
    assert frames[-1]["response"]["output"] == []
    assert warnings == ["custom_tool_call"]


def test_failed_response_error_code_is_one_the_sdk_knows() -> None:
    """`response.error.code` is a closed set: an overload or rate limit maps into it; the `error` event keeps
    the precise code."""
    overloaded = StreamError(ApiError(ErrorKind.OVERLOADED, "busy"))
    frames, _ = run([START, overloaded])
    assert frames[-2]["code"] == "server_is_overloaded"
    assert frames[-1]["response"]["error"] == {"code": "server_error", "message": "busy"}
    limited = StreamError(ApiError(ErrorKind.BUDGET_EXHAUSTED, "quota"))
    frames, _ = run([START, limited])
    assert frames[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
