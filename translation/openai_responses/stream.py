"""Responses streams: `StreamDecoder` (upstream events -> IR) here, `StreamEncoder` (IR -> client events) in
stream_encoder.py. WebSocket frames are the same event objects, one per frame (routing wraps each in an
SSEEvent), so the decoder reads the event type from the JSON `type`, not from the SSE `event:` line.

Each output item becomes IR blocks as soon as its events arrive: one block per message content part, one per
call, one per reasoning item (summary segments joined with a blank line, as the non-streamed decoder does).
Upstreams that skip deltas and send text or arguments only in `.done` / `output_item.done` (pitfall 3) get
the whole value as one delta there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    OpaqueSignature,
    ReasoningDelta,
    ReasoningStart,
    RefusalStart,
    Request,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
    SignatureKind,
    StreamError,
    StreamEvent,
    TextDelta,
    TextStart,
    ToolArgsDelta,
    ToolCallStart,
    ToolKind,
    TranslationWarning,
)
from translation.openai_responses.stream_encoder import StreamEncoder
from translation.openai_responses.wire import (
    DIALECT,
    decode_error,
    decode_stop,
    decode_usage,
    stop_detail,
    synthetic_call_id,
)
from translation.sse import SSEEvent

__all__ = ["StreamDecoder", "StreamEncoder"]

_CALL_KINDS = {"function_call": ToolKind.FUNCTION, "custom_tool_call": ToolKind.CUSTOM}
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass(slots=True)
class _Block:
    index: int
    streamed: bool = False  # any delta sent: a later `.done` value is then already known to the client


@dataclass(slots=True)
class _Item:
    type: str
    block: _Block | None = None  # calls and reasoning: one block per item
    parts: dict[int, _Block] = field(default_factory=dict)  # messages: one block per content part
    summary: bool | None = None  # reasoning: summary text (True) or raw reasoning text (False), once known
    segments: int = 0  # reasoning summary parts seen


class StreamDecoder:
    def __init__(self, request: Request) -> None:
        self.warnings: list[TranslationWarning] = []
        self._request = request
        self._id = ""
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: set[int] = set()
        self._items: dict[int, _Item] = {}
        self._has_calls = False
        self._has_refusal = False

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self._finished:
            return []
        try:
            data = event.json()
        except ValueError:
            return []
        if not isinstance(data, Mapping):
            return []
        kind = str(data.get("type") or event.event or "")
        out: list[StreamEvent] = []
        response = data.get("response")
        if isinstance(response, Mapping) and not self._started:
            out.append(self._start(response))
        handler = _HANDLERS.get(kind)
        if handler is not None:
            out.extend(handler(self, data))
        return out

    def finish(self) -> list[StreamEvent]:
        if self._finished:
            return []
        self._finished = True
        message = "the upstream stream ended before response.completed"
        return [StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, message))]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def _start(self, response: Mapping[str, Any]) -> ResponseStart:
        self._started = True
        self._id = str(response.get("id", ""))
        usage = decode_usage(response.get("usage")) if response.get("usage") else None
        created = response.get("created_at")
        created_at = int(created) if isinstance(created, (int, float)) else None
        return ResponseStart(self._id, str(response.get("model", self._request.model)), usage, created_at)

    def _terminal(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        response = data.get("response") if isinstance(data.get("response"), Mapping) else {}
        assert isinstance(response, Mapping)
        out: list[StreamEvent] = [BlockStop(i) for i in sorted(self._open)]
        self._open.clear()
        self._finished = True
        status = response.get("status") or str(data.get("type", "")).removeprefix("response.")
        if status == "failed":
            return [*out, StreamError(decode_error(response.get("error")))]
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        stop = decode_stop(status, reason, has_calls=self._has_calls, has_refusal=self._has_refusal)
        usage = decode_usage(response.get("usage")) if response.get("usage") else None
        return [*out, ResponseStop(stop, usage, stop_detail=stop_detail(status, reason))]

    def _error(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        self._finished = True
        nested = data.get("error")  # the WebSocket shape nests the fields and adds the HTTP status
        return [StreamError(decode_error(nested if isinstance(nested, Mapping) else data, data.get("status")))]

    # -- blocks ----------------------------------------------------------------------------------------------

    def _new_block(self) -> _Block:
        block = _Block(self._next_index)
        self._next_index += 1
        self._open.add(block.index)
        return block

    def _stop(self, block: _Block | None) -> list[StreamEvent]:
        if block is None or block.index not in self._open:
            return []
        self._open.discard(block.index)
        return [BlockStop(block.index)]

    def _item(self, data: Mapping[str, Any], default_type: str = "") -> _Item:
        output_index = int(data.get("output_index", 0))
        item = data.get("item") if isinstance(data.get("item"), Mapping) else {}
        assert isinstance(item, Mapping)
        return self._items.setdefault(output_index, _Item(str(item.get("type", default_type))))

    def _item_added(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        item = data.get("item")
        if not isinstance(item, Mapping):
            return []
        state = self._item(data)
        if state.type in _CALL_KINDS:
            return self._start_call(state, item, int(data.get("output_index", 0)))
        if state.type not in ("message", "reasoning"):
            self.warnings.append(
                TranslationWarning(f"native:{state.type}", f"{state.type} output has no neutral stream form")
            )
        return []

    def _start_call(self, state: _Item, item: Mapping[str, Any], output_index: int) -> list[StreamEvent]:
        state.block = self._new_block()
        self._has_calls = True
        call_id = str(item.get("call_id") or synthetic_call_id(self._id, output_index))
        return [ToolCallStart(state.block.index, call_id, str(item.get("name", "")), _CALL_KINDS[state.type])]

    def _content_block(self, data: Mapping[str, Any], refusal: bool) -> tuple[_Block, list[StreamEvent]]:
        """The block of a message content part, opened on first sight (content_part.added may be missing)."""
        state = self._item(data, "message")
        content_index = int(data.get("content_index", 0))
        block = state.parts.get(content_index)
        if block is not None:
            return block, []
        block = state.parts[content_index] = self._new_block()
        self._has_refusal = self._has_refusal or refusal
        return block, [RefusalStart(block.index) if refusal else TextStart(block.index)]

    def _part_added(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        part = data.get("part") if isinstance(data.get("part"), Mapping) else {}
        assert isinstance(part, Mapping)
        _, out = self._content_block(data, part.get("type") == "refusal")
        return out

    def _text_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        block, out = self._content_block(data, str(data.get("type")).startswith("response.refusal"))
        block.streamed = True
        return [*out, TextDelta(block.index, str(data.get("delta", "")))]

    def _text_done(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        refusal = str(data.get("type")).startswith("response.refusal")
        block, out = self._content_block(data, refusal)
        text = str(data.get("refusal" if refusal else "text") or "")
        return [*out, *self._fill(block, text, TextDelta)]

    def _part_done(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        part = data.get("part") if isinstance(data.get("part"), Mapping) else {}
        assert isinstance(part, Mapping)
        refusal = part.get("type") == "refusal"
        block, out = self._content_block(data, refusal)
        out += self._fill(block, str(part.get("refusal" if refusal else "text") or ""), TextDelta)
        return [*out, *self._stop(block)]

    def _fill(self, block: _Block, text: str, make: Any) -> list[StreamEvent]:
        """The whole value from a `.done` event when no delta carried it (pitfall 3)."""
        if block.streamed or not text:
            return []
        block.streamed = True
        event: StreamEvent = make(block.index, text)
        return [event]

    def _args_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        state = self._items.get(int(data.get("output_index", 0)))
        if state is None or state.block is None:
            return []
        state.block.streamed = True
        return [ToolArgsDelta(state.block.index, str(data.get("delta", "")))]

    def _args_done(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        state = self._items.get(int(data.get("output_index", 0)))
        if state is None or state.block is None:
            return []
        raw = data.get("arguments", data.get("input"))
        return self._fill(state.block, str(raw or ""), ToolArgsDelta)

    # -- reasoning -------------------------------------------------------------------------------------------

    def _reasoning_block(self, data: Mapping[str, Any], summary: bool) -> tuple[_Item, list[StreamEvent]]:
        state = self._item(data, "reasoning")
        if state.block is not None:
            return state, []
        state.block = self._new_block()
        state.summary = summary
        return state, [ReasoningStart(state.block.index, summary)]

    def _summary_part(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        state, out = self._reasoning_block(data, True)
        if not state.summary:
            return out
        state.segments += 1
        if state.segments > 1 and state.block is not None:
            out.append(ReasoningDelta(state.block.index, "\n\n"))  # segments join like the non-streamed decode
        return out

    def _reasoning_delta(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        summary = str(data.get("type")).startswith("response.reasoning_summary")
        state, out = self._reasoning_block(data, summary)
        if state.summary is not summary or state.block is None:
            return out  # raw reasoning text alongside a summary: the summary is what the IR keeps
        if summary and state.segments == 0:
            state.segments = 1
        state.block.streamed = True
        return [*out, ReasoningDelta(state.block.index, str(data.get("delta", "")))]

    def _reasoning_done(self, state: _Item, item: Mapping[str, Any]) -> list[StreamEvent]:
        summary = [str(s.get("text", "")) for s in item.get("summary") or () if isinstance(s, Mapping)]
        content = [str(c.get("text", "")) for c in item.get("content") or () if isinstance(c, Mapping)]
        out: list[StreamEvent] = []
        if state.block is None:
            state.block = self._new_block()
            out.append(ReasoningStart(state.block.index, bool(summary)))
        out += self._fill(state.block, "\n\n".join(summary or content), ReasoningDelta)
        encrypted = item.get("encrypted_content")
        if isinstance(encrypted, str):
            item_id = str(item["id"]) if item.get("id") else None
            signature = OpaqueSignature(DIALECT, SignatureKind.RESPONSES_ENCRYPTED, encrypted, item_id)
            out.append(SignatureDelta(state.block.index, signature))
        return [*out, *self._stop(state.block)]

    # -- item done -------------------------------------------------------------------------------------------

    def _item_done(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        item = data.get("item")
        if not isinstance(item, Mapping):
            return []
        output_index = int(data.get("output_index", 0))
        state = self._item(data)
        if state.type == "reasoning":
            return self._reasoning_done(state, item)
        if state.type in _CALL_KINDS:
            out = [] if state.block is not None else self._start_call(state, item, output_index)
            assert state.block is not None
            raw = item.get("arguments" if state.type == "function_call" else "input")
            return [*out, *self._fill(state.block, str(raw or ""), ToolArgsDelta), *self._stop(state.block)]
        if state.type == "message":
            return self._message_done(data, item)
        return []

    def _message_done(self, data: Mapping[str, Any], item: Mapping[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for content_index, part in enumerate(item.get("content") or ()):
            if not isinstance(part, Mapping):
                continue
            refusal = part.get("type") == "refusal"
            block, started = self._content_block({**data, "content_index": content_index}, refusal)
            text = str(part.get("refusal" if refusal else "text") or "")
            out += [*started, *self._fill(block, text, TextDelta), *self._stop(block)]
        for block in self._item(data).parts.values():
            out += self._stop(block)
        return out


_HANDLERS = {
    "response.output_item.added": StreamDecoder._item_added,
    "response.output_item.done": StreamDecoder._item_done,
    "response.content_part.added": StreamDecoder._part_added,
    "response.content_part.done": StreamDecoder._part_done,
    "response.output_text.delta": StreamDecoder._text_delta,
    "response.output_text.done": StreamDecoder._text_done,
    "response.refusal.delta": StreamDecoder._text_delta,
    "response.refusal.done": StreamDecoder._text_done,
    "response.function_call_arguments.delta": StreamDecoder._args_delta,
    "response.function_call_arguments.done": StreamDecoder._args_done,
    "response.custom_tool_call_input.delta": StreamDecoder._args_delta,
    "response.custom_tool_call_input.done": StreamDecoder._args_done,
    "response.reasoning_summary_part.added": StreamDecoder._summary_part,
    "response.reasoning_summary_text.delta": StreamDecoder._reasoning_delta,
    "response.reasoning_text.delta": StreamDecoder._reasoning_delta,
    **{name: StreamDecoder._terminal for name in _TERMINAL},
    "error": StreamDecoder._error,
}
