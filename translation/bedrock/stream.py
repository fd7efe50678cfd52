"""Bedrock `converse-stream`: `StreamDecoder` (upstream events -> IR events) and `StreamEncoder` (IR events ->
client events).

The events arrive in AWS event-stream framing; `translation/bedrock/eventstream.py` turns each message into an
`SSEEvent` whose `event` is the member name (`messageStart`, `contentBlockStart`, `contentBlockDelta`,
`contentBlockStop`, `messageStop`, `metadata`, or an exception such as `throttlingException`) and whose `data` is
its JSON payload. The encoder's `WireEvent`s are framed back with `eventstream.encode_wire_event`.

Grammar: `messageStart`, then per block an optional `contentBlockStart` (tool calls only: text and reasoning
blocks begin with their first delta), `contentBlockDelta`s, `contentBlockStop`; then `messageStop` with the stop
reason and last `metadata` with the usage. The decoder ends the IR stream at `metadata` (or at the end of the
body, when only `metadata` is missing). Payloads may carry a padding field `p`, which is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.bedrock.errors import stream_error
from translation.bedrock.eventstream import is_exception
from translation.bedrock.response import decode_stop, encode_stop, synthetic_call_id
from translation.bedrock.tools import custom_tools
from translation.bedrock.wire import (
    DIALECT,
    derived_id,
    reasoning_signature,
    redacted_signature,
    usage_from_wire,
    usage_to_wire,
    wire_tool_id,
)
from translation.codec import ClientContext, WireEvent
from translation.custom_tools import unwrap_arguments, wrap_json
from translation.errors import ApiError, ErrorKind, bedrock_stream_exception
from translation.ir import (
    BlockStop,
    ReasoningDelta,
    ReasoningStart,
    RefusalStart,
    Request,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
    SignatureKind,
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
    UsageUpdate,
    Warnings,
)
from translation.sse import SSEEvent
from translation.streaming import BlockSequencer

__all__ = ["StreamDecoder", "StreamEncoder"]

_MEMBERS = frozenset(
    {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"}
)


@dataclass(slots=True)
class _Block:
    """An upstream content block under its IR index. `kind`: "text", "reasoning" or "tool"; CUSTOM calls hold
    their `{"input": …}` fragments until the block ends, the only point where they can be unwrapped."""

    index: int
    kind: str
    custom: bool = False
    held: list[str] = field(default_factory=list)


class StreamDecoder:
    """Converse stream events in, IR events out, each as soon as its upstream event arrives.

    `response_id`: the id to report; routing should pass the `x-amzn-RequestId` response header, since the
    stream carries no id (without it, one is derived from the first event, unique only through its padding).
    """

    def __init__(self, request: Request, response_id: str | None = None) -> None:
        self.warnings: list[TranslationWarning] = []
        self._request = request
        self._custom = custom_tools(request)
        self._response_id = response_id
        self._blocks: dict[Any, _Block] = {}
        self._next_index = 0
        self._usage = Usage()
        self._started = False
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
        name = event.event
        if name is None and isinstance(data, dict) and len(data) == 1 and next(iter(data)) in _MEMBERS:
            name, data = next(iter(data.items()))  # the member-wrapped form {"contentBlockDelta": {...}}
        if not isinstance(data, dict) or name is None:
            return []
        if is_exception(name):
            self._done = True
            return [StreamError(stream_error(name, data))]
        out = self._start(event.data) if not self._started else []
        match name:
            case "contentBlockStart":
                out += self._block_start(data.get("contentBlockIndex"), data.get("start"))
            case "contentBlockDelta":
                out += self._block_delta(data.get("contentBlockIndex"), data.get("delta"))
            case "contentBlockStop":
                out += self._block_stop(data.get("contentBlockIndex"))
            case "messageStop":
                stop, detail = decode_stop(data.get("stopReason"))
                additional = data.get("additionalModelResponseFields")
                sequence = additional.get("stop_sequence") if isinstance(additional, Mapping) else None
                self._stop = (stop, sequence if isinstance(sequence, str) else None, detail)
            case "metadata":
                self._usage = self._usage.updated(usage_from_wire(data.get("usage")))
                out += self._end() if self._stop is not None else [UsageUpdate(self._usage)]
        return out  # messageStart, and members newer than this codec

    def finish(self) -> list[StreamEvent]:
        if self._done:
            return []
        if self._stop is not None:  # only the metadata event went missing: the answer is complete
            return self._end()
        self._done = True
        out = self._start("") if not self._started else []
        return [*out, StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended before messageStop"))]

    def _start(self, first_payload: str) -> list[StreamEvent]:
        """ResponseStart, at the first event. Without an id from routing, one is derived from that event, whose
        random padding (`p`) Bedrock varies per stream."""
        self._started = True
        response_id = self._response_id or derived_id("stream", self._request.model, first_payload)
        self._response_id = response_id
        return [ResponseStart(response_id, self._request.model)]

    def _open(self, wire_index: Any, kind: str, custom: bool = False) -> _Block:
        block = self._blocks[wire_index] = _Block(self._next_index, kind, custom)
        self._next_index += 1
        return block

    def _block_start(self, wire_index: Any, start: Any) -> list[StreamEvent]:
        tool_use = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(tool_use, Mapping) or wire_index in self._blocks:
            member = next(iter(start), "unknown") if isinstance(start, Mapping) else "unknown"
            self._warn(f"native:{member}", f"a streamed {member} block has no stream form in the IR")
            return []
        name = str(tool_use.get("name", ""))
        custom = name in self._custom
        block = self._open(wire_index, "tool", custom)
        call_id = str(tool_use.get("toolUseId") or synthetic_call_id(self._response_id or "", block.index))
        return [ToolCallStart(block.index, call_id, name, ToolKind.CUSTOM if custom else ToolKind.FUNCTION)]

    def _block_delta(self, wire_index: Any, delta: Any) -> list[StreamEvent]:
        if not isinstance(delta, Mapping):
            return []
        block = self._blocks.get(wire_index)
        if isinstance(text := delta.get("text"), str):
            out: list[StreamEvent] = []
            if block is None:
                block = self._open(wire_index, "text")
                out.append(TextStart(block.index))
            return [*out, TextDelta(block.index, text)] if text else out
        if isinstance(reasoning := delta.get("reasoningContent"), Mapping):
            out = []
            if block is None:
                block = self._open(wire_index, "reasoning")
                out.append(ReasoningStart(block.index))
            if isinstance(text := reasoning.get("text"), str) and text:
                out.append(ReasoningDelta(block.index, text))
            if isinstance(signature := reasoning.get("signature"), str) and signature:
                out.append(SignatureDelta(block.index, reasoning_signature(signature)))
            if isinstance(redacted := reasoning.get("redactedContent"), str):
                out.append(SignatureDelta(block.index, redacted_signature(redacted)))
            return out
        if isinstance(tool_use := delta.get("toolUse"), Mapping) and block is not None and block.kind == "tool":
            fragment = str(tool_use.get("input") or "")
            if block.custom:
                block.held.append(fragment)
                return []
            return [ToolArgsDelta(block.index, fragment)] if fragment else []
        member = next(iter(delta), "unknown")
        self._warn(f"native:{member}", f"a streamed {member} delta has no place in the IR stream")
        return []

    def _block_stop(self, wire_index: Any) -> list[StreamEvent]:
        block = self._blocks.pop(wire_index, None)
        if block is None:
            return []
        out: list[StreamEvent] = []
        if block.custom and block.held:
            out.append(ToolArgsDelta(block.index, unwrap_arguments("".join(block.held), ToolKind.CUSTOM)))
        return [*out, BlockStop(block.index)]

    def _end(self) -> list[StreamEvent]:
        self._done = True
        out: list[StreamEvent] = [e for wire in list(self._blocks) for e in self._block_stop(wire)]
        stop, sequence, detail = self._stop or (StopReason.END_TURN, None, None)
        return [*out, ResponseStop(stop, self._usage, sequence, detail)]

    def _warn(self, feature: str, detail: str) -> None:
        if feature not in self._warned:
            self._warned.add(feature)
            self.warnings.append(TranslationWarning(feature, detail))


# -- encoder -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _OutBlock:
    """A block being sent to the client. `client_index` is None until its first event went out (text and
    reasoning blocks open with their first delta); CUSTOM calls are held until they end (`{"input": text}`)."""

    kind: str  # "text" | "reasoning" | "tool" | "custom"
    client_index: int | None = None
    held: list[str] = field(default_factory=list)
    tool_use: dict[str, Any] | None = None


class StreamEncoder:
    """IR events in, Converse stream events out (`WireEvent(data=payload, event=member name)`); blocks are made
    sequential first (`BlockSequencer`), as Bedrock sends them. `metadata.metrics.latencyMs` is 0: the
    translation package reads no clock, routing may fill it in."""

    def __init__(self, client: ClientContext) -> None:
        self.warnings: list[TranslationWarning] = []
        self._client = client
        self._sequencer = BlockSequencer()
        self._blocks: dict[int, _OutBlock] = {}
        self._next_index = 0
        self._usage = Usage()
        self._done = False
        self._warned: set[str] = set()

    def feed(self, event: StreamEvent) -> list[WireEvent]:
        if self._done:
            return []
        return [wire for sequenced in self._sequencer.feed(event) for wire in self._encode(sequenced)]

    def finish(self) -> list[WireEvent]:
        if self._done:
            return []
        # No ResponseStop or StreamError: the answer is incomplete, and the client must not take it as whole.
        return self._encode(StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended early")))

    def _encode(self, event: StreamEvent) -> list[WireEvent]:
        match event:
            case ResponseStart(usage=usage):
                self._usage = usage or Usage()
                return [WireEvent({"role": "assistant"}, "messageStart")]
            case TextStart(index=i) | RefusalStart(index=i):
                self._blocks[i] = _OutBlock("text")
            case ReasoningStart(index=i):
                self._blocks[i] = _OutBlock("reasoning")
            case ToolCallStart(index=i, id=call_id, name=name, kind=kind):
                tool_use = {"toolUseId": wire_tool_id(call_id), "name": name}
                if kind is ToolKind.CUSTOM:
                    self._blocks[i] = _OutBlock("custom", tool_use=tool_use)
                else:
                    block = self._blocks[i] = _OutBlock("tool")
                    return [self._open(block, tool_use)]
            case TextDelta(index=i, text=text) if text:
                return self._delta(self._blocks[i], {"text": text})
            case ReasoningDelta(index=i, text=text) if text:
                return self._delta(self._blocks[i], {"reasoningContent": {"text": text}})
            case ToolArgsDelta(index=i, fragment=fragment) if fragment:
                block = self._blocks[i]
                if block.kind == "custom":
                    block.held.append(fragment)
                    return []
                return self._delta(block, {"toolUse": {"input": fragment}})
            case SignatureDelta(index=i, signature=signature):
                block = self._blocks[i]
                if block.kind != "reasoning":
                    self._warn("reasoning_signature", "a signature on a non-reasoning block has no Bedrock form")
                elif signature.dialect is not DIALECT:
                    self._warn("reasoning_signature", f"a {signature.dialect.value} signature has no Bedrock form")
                elif signature.kind is SignatureKind.BEDROCK_REDACTED:
                    return self._delta(block, {"reasoningContent": {"redactedContent": signature.value}})
                else:
                    return self._delta(block, {"reasoningContent": {"signature": signature.value}})
            case BlockStop(index=i):
                return self._stop_block(self._blocks.pop(i))
            case UsageUpdate(usage=usage):
                self._usage = self._usage.updated(usage)
            case ResponseStop():
                return self._response_stop(event)
            case StreamError(error=error):
                self._done = True
                return [WireEvent({"message": error.message}, bedrock_stream_exception(error))]
        return []

    def _open(self, block: _OutBlock, tool_use: dict[str, Any]) -> WireEvent:
        block.client_index = self._next_index
        self._next_index += 1
        return WireEvent({"contentBlockIndex": block.client_index, "start": {"toolUse": tool_use}}, "contentBlockStart")

    def _delta(self, block: _OutBlock, delta: dict[str, Any]) -> list[WireEvent]:
        if block.client_index is None:
            block.client_index = self._next_index
            self._next_index += 1
        return [WireEvent({"contentBlockIndex": block.client_index, "delta": delta}, "contentBlockDelta")]

    def _stop_block(self, block: _OutBlock) -> list[WireEvent]:
        out: list[WireEvent] = []
        if block.kind == "custom" and block.tool_use is not None:
            # Bedrock clients only know object inputs: the freeform text goes out as {"input": text}.
            delta = {"toolUse": {"input": wrap_json("".join(block.held))}}
            out = [self._open(block, block.tool_use), *self._delta(block, delta)]
        if block.client_index is None:
            return out
        return [*out, WireEvent({"contentBlockIndex": block.client_index}, "contentBlockStop")]

    def _response_stop(self, event: ResponseStop) -> list[WireEvent]:
        self._done = True
        self._usage = self._usage.updated(event.usage or Usage())
        w = Warnings()
        stop_reason = encode_stop(event.stop, event.stop_detail, w)
        self.warnings.extend(w.items)
        message_stop: dict[str, Any] = {"stopReason": stop_reason}
        metadata = {"usage": usage_to_wire(self._usage), "metrics": {"latencyMs": 0}}
        return [WireEvent(message_stop, "messageStop"), WireEvent(metadata, "metadata")]

    def _warn(self, feature: str, detail: str) -> None:
        if feature not in self._warned:
            self._warned.add(feature)
            self.warnings.append(TranslationWarning(feature, detail))
