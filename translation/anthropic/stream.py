"""Anthropic Messages streams: `StreamDecoder` (upstream SSE -> IR events) and, re-exported from
`stream_encoder`, `StreamEncoder` (IR events -> client SSE)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.anthropic.errors import stream_error
from translation.anthropic.response import decode_stop, synthetic_call_id
from translation.anthropic.stream_encoder import StreamEncoder
from translation.anthropic.tools import wrapped_tools
from translation.anthropic.wire import redacted_signature, thinking_signature, usage_from_wire
from translation.custom_tools import unwrap_arguments
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    ReasoningDelta,
    ReasoningStart,
    Request,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextStart,
    ToolArgsDelta,
    ToolCallStart,
    ToolKind,
    TranslationWarning,
    Usage,
)
from translation.sse import SSEEvent

__all__ = ["StreamDecoder", "StreamEncoder"]


@dataclass(slots=True)
class _Block:
    """An upstream content block being streamed, under its IR index."""

    index: int
    # Tool blocks only: the `input` of content_block_start (normally {}), whether deltas came, and for calls
    # wrapped as {"input": …} (tools.py) their kind and the fragments held until the block ends.
    start_input: Any = None
    streamed: bool = False
    wrapped_kind: ToolKind | None = None
    held: list[str] = field(default_factory=list)


class StreamDecoder:
    """Anthropic SSE events in, IR events out, each as soon as its upstream event arrives.

    Block indices are renumbered because block types without a stream form in the IR (server tool use and
    its results) are skipped with a warning. Calls to wrapped tools are the one thing held back: their
    `{"input": …}` can only be unwrapped once complete.
    """

    def __init__(self, request: Request) -> None:
        self.warnings: list[TranslationWarning] = []
        self._wrapped = wrapped_tools(request)
        self._blocks: dict[int, _Block] = {}
        self._next_index = 0
        self._usage = Usage()
        self._response_id = ""
        self._stop: tuple[StopReason, str | None, str | None] | None = None
        self._done = False
        self._warned: set[str] = set()

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self._done:
            return []
        try:
            data = event.json()
        except ValueError:
            self._warn("stream_event", f"ignored an upstream event that is not JSON: {event.data[:80]!r}")
            return []
        if not isinstance(data, dict):
            return []
        match data.get("type") or event.event:
            case "message_start":
                return self._message_start(data.get("message") or {})
            case "content_block_start":
                return self._block_start(data.get("index"), data.get("content_block") or {})
            case "content_block_delta":
                return self._block_delta(data.get("index"), data.get("delta") or {})
            case "content_block_stop":
                return self._block_stop(data.get("index"))
            case "message_delta":
                self._message_delta(data)
                return []
            case "message_stop":
                return self._end()
            case "error":
                self._done = True
                return [StreamError(stream_error(data))]
        return []  # ping, and event types newer than this codec

    def finish(self) -> list[StreamEvent]:
        if self._done:
            return []
        if self._stop is not None:  # only message_stop went missing: the answer is complete
            return self._end()
        self._done = True
        return [StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended before message_stop"))]

    def _message_start(self, message: Mapping[str, Any]) -> list[StreamEvent]:
        self._usage = usage_from_wire(message.get("usage"))
        self._response_id = str(message.get("id", ""))
        return [ResponseStart(self._response_id, str(message.get("model", "")), self._usage)]

    def _block_start(self, wire_index: Any, block: Mapping[str, Any]) -> list[StreamEvent]:
        block_type = str(block.get("type"))
        if block_type not in ("text", "thinking", "redacted_thinking", "tool_use"):
            self._warn(f"native:{block_type}", f"the {block_type} block has no stream form in the IR")
            return []
        index = self._next_index
        self._next_index += 1
        state = self._blocks[wire_index] = _Block(index)
        match block_type:
            case "text":
                text = str(block.get("text") or "")
                return [TextStart(index), *([TextDelta(index, text)] if text else [])]
            case "thinking":
                out: list[StreamEvent] = [ReasoningStart(index)]
                if thinking := str(block.get("thinking") or ""):
                    out.append(ReasoningDelta(index, thinking))
                if signature := str(block.get("signature") or ""):
                    out.append(SignatureDelta(index, thinking_signature(signature)))
                return out
            case "redacted_thinking":
                return [ReasoningStart(index), SignatureDelta(index, redacted_signature(str(block.get("data", ""))))]
        name = str(block.get("name", ""))
        state.start_input = block.get("input")
        state.wrapped_kind = self._wrapped.get(name)
        kind = ToolKind.CUSTOM if state.wrapped_kind is ToolKind.CUSTOM else ToolKind.FUNCTION
        call_id = str(block.get("id") or synthetic_call_id(self._response_id, index))
        return [ToolCallStart(index, call_id, name, kind)]

    def _block_delta(self, wire_index: Any, delta: Mapping[str, Any]) -> list[StreamEvent]:
        state = self._blocks.get(wire_index)
        if state is None:
            return []  # a delta of a skipped block
        index = state.index
        match delta.get("type"):
            case "text_delta":
                return [TextDelta(index, str(delta.get("text", "")))]
            case "thinking_delta":
                return [ReasoningDelta(index, str(delta.get("thinking", "")))]
            case "signature_delta":
                return [SignatureDelta(index, thinking_signature(str(delta.get("signature", ""))))]
            case "input_json_delta":
                fragment = str(delta.get("partial_json", ""))
                state.streamed = True
                if state.wrapped_kind is not None:
                    state.held.append(fragment)
                    return []
                return [ToolArgsDelta(index, fragment)] if fragment else []
            case "citations_delta":
                self._warn("citations", "citations have no place in the IR stream")
        return []

    def _block_stop(self, wire_index: Any) -> list[StreamEvent]:
        state = self._blocks.pop(wire_index, None)
        if state is None:
            return []
        out: list[StreamEvent] = []
        raw = "".join(state.held)
        if not state.streamed and state.start_input:
            # Some Anthropic-style servers put the whole input in content_block_start and send no deltas.
            raw = json.dumps(state.start_input, ensure_ascii=False, separators=(",", ":"))
            if state.wrapped_kind is None:
                out.append(ToolArgsDelta(state.index, raw))
        if state.wrapped_kind is not None and raw:
            out.append(ToolArgsDelta(state.index, unwrap_arguments(raw, state.wrapped_kind)))
        return [*out, BlockStop(state.index)]

    def _message_delta(self, data: Mapping[str, Any]) -> None:
        delta = data.get("delta") or {}
        if delta.get("stop_reason") is not None:
            stop, detail = decode_stop(delta["stop_reason"], delta.get("stop_details"))
            self._stop = (stop, delta.get("stop_sequence"), detail)
        self._usage = self._usage.updated(usage_from_wire(data.get("usage")))

    def _end(self) -> list[StreamEvent]:
        self._done = True
        out: list[StreamEvent] = [e for wire in list(self._blocks) for e in self._block_stop(wire)]
        stop, sequence, detail = self._stop or (StopReason.END_TURN, None, None)
        return [*out, ResponseStop(stop, self._usage, sequence, detail)]

    def _warn(self, feature: str, detail: str) -> None:
        if feature not in self._warned:
            self._warned.add(feature)
            self.warnings.append(TranslationWarning(feature, detail))
