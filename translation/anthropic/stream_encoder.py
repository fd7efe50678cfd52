"""IR stream events -> Anthropic SSE events for a client (`StreamEncoder`, exported by `stream.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from translation.anthropic.response import encode_stop
from translation.anthropic.wire import DIALECT, usage_to_wire, wire_tool_id
from translation.codec import ClientContext, WireEvent
from translation.errors import ApiError, ErrorKind, error_body
from translation.ir import (
    BlockStop,
    OpaqueSignature,
    ReasoningDelta,
    ReasoningStart,
    RefusalStart,
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
    Usage,
    UsageUpdate,
    Warnings,
)
from translation.streaming import BlockSequencer


@dataclass(slots=True)
class _Block:
    """The block being streamed. `client_index` is None until its content_block_start went out: text blocks
    open at their first non-empty text (Anthropic rejects empty text blocks, pitfall 18); thinking blocks and
    CUSTOM calls are held until they end, the only point where their signature / JSON form is known."""

    kind: str  # "text" | "thinking" | "tool_use" | "custom"
    client_index: int | None = None
    held: list[str] = field(default_factory=list)
    signature: OpaqueSignature | None = None
    tool_use: dict[str, Any] | None = None  # the content_block_start of a held CUSTOM call


class StreamEncoder:
    def __init__(self, client: ClientContext) -> None:
        self.warnings: list[TranslationWarning] = []
        self._client = client
        self._sequencer = BlockSequencer()  # Anthropic blocks are strictly sequential
        self._blocks: dict[int, _Block] = {}
        self._next_index = 0
        self._usage = Usage()
        self._done = False
        self._warned: set[str] = set()

    def feed(self, event: StreamEvent) -> list[WireEvent]:
        if self._done:
            return []
        return [wire for sequenced in self._sequencer.feed(event) for wire in self._encode(event=sequenced)]

    def finish(self) -> list[WireEvent]:
        if self._done:
            return []
        # No ResponseStop or StreamError: the answer is incomplete, and the client must not take it as whole.
        return self._encode(StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended early")))

    def _encode(self, event: StreamEvent) -> list[WireEvent]:
        match event:
            case ResponseStart(id=response_id, usage=usage):
                self._usage = usage or Usage()
                return [_wire("message_start", message=self._message(response_id))]
            case TextStart(index=i) | RefusalStart(index=i):
                self._blocks[i] = _Block("text")
            case ReasoningStart(index=i):
                self._blocks[i] = _Block("thinking")
            case ToolCallStart(index=i, id=call_id, name=name, kind=kind):
                tool_use = {"type": "tool_use", "id": wire_tool_id(call_id), "name": name, "input": {}}
                if kind is ToolKind.CUSTOM:
                    self._blocks[i] = _Block("custom", tool_use=tool_use)
                else:
                    block = self._blocks[i] = _Block("tool_use")
                    return [self._open(block, tool_use)]
            case TextDelta(index=i, text=text) if text:
                block = self._blocks[i]
                out = [] if block.client_index is not None else [self._open(block, {"type": "text", "text": ""})]
                return [*out, self._delta(block, {"type": "text_delta", "text": text})]
            case ReasoningDelta(index=i, text=text):
                self._blocks[i].held.append(text)
            case ToolArgsDelta(index=i, fragment=fragment) if fragment:
                block = self._blocks[i]
                if block.kind == "custom":
                    block.held.append(fragment)
                else:
                    return [self._delta(block, {"type": "input_json_delta", "partial_json": fragment})]
            case SignatureDelta(index=i, signature=signature):
                block = self._blocks[i]
                if block.kind == "thinking":
                    block.signature = signature
                else:
                    self._warn("reasoning_signature", "a signature on a non-reasoning block has no Anthropic form")
            case BlockStop(index=i):
                return self._stop_block(self._blocks.pop(i))
            case ResponseStop():
                return self._response_stop(event)
            case StreamError(error=error):
                self._done = True
                return [WireEvent(error_body(DIALECT, error), "error")]
            case UsageUpdate(usage=usage):
                self._usage = self._usage.updated(usage)
        return []

    def _message(self, response_id: str) -> dict[str, Any]:
        """message_start's message: the input tokens go out here when known (pitfall 29)."""
        return {
            "id": response_id,
            "type": "message",
            "role": "assistant",
            "model": self._client.request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_to_wire(self._usage),
        }

    def _stop_block(self, block: _Block) -> list[WireEvent]:
        out: list[WireEvent] = []
        if block.kind == "thinking":
            out = self._thinking(block)
        elif block.kind == "custom" and block.tool_use is not None:
            # Anthropic clients only know object inputs: the freeform text goes out as {"input": text}.
            partial = json.dumps({"input": "".join(block.held)}, ensure_ascii=False, separators=(",", ":"))
            delta = {"type": "input_json_delta", "partial_json": partial}
            out = [self._open(block, block.tool_use), self._delta(block, delta)]
        if block.client_index is None:
            return out
        return [*out, _wire("content_block_stop", index=block.client_index)]

    def _thinking(self, block: _Block) -> list[WireEvent]:
        signature = block.signature
        if signature is None or signature.dialect is not DIALECT:
            # A thinking block without Anthropic's signature would be rejected when the client sends it back.
            feature = "unsigned_reasoning" if signature is None else "reasoning_signature"
            self._warn(feature, "reasoning not signed by Anthropic is not shown to an Anthropic client")
            return []
        if signature.kind is SignatureKind.ANTHROPIC_REDACTED:
            return [self._open(block, {"type": "redacted_thinking", "data": signature.value})]
        out = [self._open(block, {"type": "thinking", "thinking": "", "signature": ""})]
        if text := "".join(block.held):
            out.append(self._delta(block, {"type": "thinking_delta", "thinking": text}))
        return [*out, self._delta(block, {"type": "signature_delta", "signature": signature.value})]

    def _response_stop(self, event: ResponseStop) -> list[WireEvent]:
        self._done = True
        self._usage = self._usage.updated(event.usage or Usage())
        w = Warnings()
        delta = {"stop_reason": encode_stop(event.stop, w), "stop_sequence": event.stop_sequence}
        self.warnings.extend(w.items)
        return [
            _wire("message_delta", delta=delta, usage=usage_to_wire(self._usage, required=("output_tokens",))),
            _wire("message_stop"),
        ]

    def _open(self, block: _Block, content_block: dict[str, Any]) -> WireEvent:
        block.client_index = self._next_index
        self._next_index += 1
        return _wire("content_block_start", index=block.client_index, content_block=content_block)

    def _delta(self, block: _Block, delta: dict[str, Any]) -> WireEvent:
        return _wire("content_block_delta", index=block.client_index, delta=delta)

    def _warn(self, feature: str, detail: str) -> None:
        if feature not in self._warned:
            self._warned.add(feature)
            self.warnings.append(TranslationWarning(feature, detail))


def _wire(event_type: str, **fields: Any) -> WireEvent:
    return WireEvent({"type": event_type, **fields}, event_type)
