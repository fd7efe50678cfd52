"""Gemini `streamGenerateContent?alt=sse` <-> IR stream events.

Upstream side: every data frame is a whole GenerateContentResponse holding only the new parts. Text and thought
parts extend the open block; each functionCall arrives whole and becomes its own block (one start, one delta with
all arguments, a stop: pitfalls 1 and 12). The stream has no end marker, so the ResponseStop comes from `finish()`.
Client side: one GenerateContentResponse per frame, emitted as soon as its IR event arrives; only a function call
is held, until its BlockStop, because Gemini sends `args` whole. finishReason and usage go in a last frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from translation.codec import ClientContext, WireEvent
from translation.custom_tools import custom_tool_names
from translation.errors import ApiError, ErrorKind, error_body, kind_for_status
from translation.gemini.parts import PartDecoder, PartEncoder
from translation.gemini.wire import (
    GEMINI,
    MODEL_ROLE,
    derived_id,
    finish_from_stop,
    include_thoughts,
    own_signature,
    rpc_http_status,
    signature_of,
    stop_from_finish,
    usage_from_metadata,
    usage_metadata,
)
from translation.ir import (
    BlockStop,
    OpaqueSignature,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ReasoningStart,
    RefusalStart,
    Request,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    TextStart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    TranslationWarning,
    Usage,
    UsageUpdate,
    Warnings,
)
from translation.sse import SSEEvent

# -- upstream side -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _OpenBlock:
    index: int
    thought: bool
    signed: bool = False


class StreamDecoder:
    def __init__(self, request: Request) -> None:
        self._w = Warnings()
        self.warnings: list[TranslationWarning] = self._w.items
        self._request = request
        self._parts: PartDecoder | None = None  # made on the first frame: synthesised ids need the response id
        self._open: _OpenBlock | None = None
        self._blocks = 0
        self._usage: Usage | None = None
        self._finish_reason: str | None = None
        self._block_reason: str | None = None
        self._has_calls = False
        self._ended = False

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self._ended:
            return []
        try:
            frame = event.json()
        except ValueError:
            return self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, "Gemini sent a stream frame that is not JSON"))
        if not isinstance(frame, dict):
            return self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, "Gemini sent a stream frame that is not an object"))
        if isinstance(frame.get("error"), dict):
            return self._fail(_upstream_error(frame["error"]))
        out: list[StreamEvent] = []
        usage = usage_from_metadata(frame.get("usageMetadata"))
        starting = self._parts is None
        if starting:
            response_id = str(frame.get("responseId") or derived_id(frame))
            self._parts = PartDecoder(f"call_{response_id}", custom_tool_names(self._request))
            model = str(frame.get("modelVersion") or self._request.model)
            out.append(ResponseStart(response_id, model, usage))
        for candidate in (frame.get("candidates") or [])[:1]:
            for i, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
                out.extend(self._part(part, f"candidates[0].content.parts[{i}]"))
            if candidate.get("finishReason"):
                self._finish_reason = str(candidate["finishReason"])
                out.extend(self._close())
        if usage is not None and not starting and usage != self._usage:
            out.append(UsageUpdate(usage))  # cumulative snapshots: only a changed one is news
        self._usage = usage or self._usage
        if block := (frame.get("promptFeedback") or {}).get("blockReason"):
            self._block_reason = str(block)
        return out

    def finish(self) -> list[StreamEvent]:
        if self._ended:
            return []
        if self._parts is None:
            return self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, "Gemini ended the stream without a response"))
        if self._finish_reason is None and self._block_reason is None:
            return [*self._close(), *self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, "Gemini stream cut short"))]
        self._ended = True
        if self._finish_reason is None:  # a blocked prompt is an empty refusal, not an error
            stop, detail = StopReason.REFUSAL, self._block_reason
        else:
            stop, detail = stop_from_finish(self._finish_reason, self._has_calls)
        return [*self._close(), ResponseStop(stop, self._usage, stop_detail=detail)]

    def _part(self, part: dict[str, Any], path: str) -> list[StreamEvent]:
        assert self._parts is not None
        if "text" in part and "functionCall" not in part:
            return self._text(str(part["text"]), part.get("thought") is True, signature_of(part))
        if "functionCall" in part:
            decoded = self._parts.decode(part, path)
            assert isinstance(decoded, ToolCallPart)
            self._has_calls = True
            return [*self._close(), *_whole_call(self._new_index(), decoded)]
        name = next(iter(part), "unknown")
        self._w.drop(f"native_part:{name}", f"Gemini part {name!r} has no stream form", path)
        return []

    def _text(self, text: str, thought: bool, signature: OpaqueSignature | None) -> list[StreamEvent]:
        if not text and signature is None:
            return []
        out: list[StreamEvent] = []
        block = self._open
        if block is None or block.thought != thought or block.signed:
            # A signature pins its part's position: text after a signed part starts a new block.
            out.extend(self._close())
            block = self._open = _OpenBlock(self._new_index(), thought)
            out.append(ReasoningStart(block.index, summary=True) if thought else TextStart(block.index))
        if text:
            out.append(ReasoningDelta(block.index, text) if thought else TextDelta(block.index, text))
        if signature is not None:
            block.signed = True
            out.append(SignatureDelta(block.index, signature))
        return out

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index, self._open = self._open.index, None
        return [BlockStop(index)]

    def _new_index(self) -> int:
        self._blocks += 1
        return self._blocks - 1

    def _fail(self, error: ApiError) -> list[StreamEvent]:
        self._ended = True
        return [StreamError(error)]


def _whole_call(index: int, call: ToolCallPart) -> list[StreamEvent]:
    events: list[StreamEvent] = [ToolCallStart(index, call.id, call.name, call.kind)]
    if call.raw_arguments:
        events.append(ToolArgsDelta(index, call.raw_arguments))
    if call.signature is not None:
        events.append(SignatureDelta(index, call.signature))
    return [*events, BlockStop(index)]


def _upstream_error(error: dict[str, Any]) -> ApiError:
    """`{"code": 500, "message": …, "status": "INTERNAL"}`: the HTTP status Gemini would have answered with
    is `code`; without a usable one, the google.rpc `status` name says it."""
    code = error.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    status = code if isinstance(code, int) and 400 <= code < 600 else rpc_http_status(error.get("status"))
    kind = kind_for_status(status) if status is not None else ErrorKind.UPSTREAM_ERROR
    return ApiError(kind, str(error.get("message") or "Gemini stream error"), status=status)


# -- client side ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    start: ToolCallStart
    fragments: list[str] = field(default_factory=list)
    signature: OpaqueSignature | None = None


class StreamEncoder:
    def __init__(self, client: ClientContext) -> None:
        self._w = Warnings()
        self.warnings: list[TranslationWarning] = self._w.items
        self._client = client
        self._parts = PartEncoder(self._w, for_client=True, include_thoughts=include_thoughts(client.request))
        self._response_id = ""
        self._usage = Usage()
        self._thought_blocks: set[int] = set()
        self._calls: dict[int, _Call] = {}
        self._ended = False

    def feed(self, event: StreamEvent) -> list[WireEvent]:
        if self._ended:
            return []
        match event:
            case ResponseStart(id=response_id, usage=usage):
                self._response_id = response_id
                self._usage = self._usage.updated(usage or Usage())
            case ReasoningStart(index=index):
                self._thought_blocks.add(index)
            case ToolCallStart(index=index):
                self._calls[index] = _Call(event)
            case TextDelta(index=index, text=text):
                return self._frame(TextPart(text), index)
            case ReasoningDelta(index=index, text=text):
                return self._frame(ReasoningPart(text, summary=True), index)
            case ToolArgsDelta(index=index, fragment=fragment):
                self._calls[index].fragments.append(fragment)
            case SignatureDelta(index=index, signature=signature):
                return self._signature(index, signature)
            case BlockStop(index=index) if index in self._calls:
                call = self._calls.pop(index)
                raw = "".join(call.fragments)
                start = call.start
                part = ToolCallPart.from_raw(start.id, start.name, raw, kind=start.kind, signature=call.signature)
                return self._frame(part, index)
            case UsageUpdate(usage=usage):
                self._usage = self._usage.updated(usage)
            case ResponseStop():
                return self._last_frame(event)
            case StreamError(error=error):
                self._ended = True
                return [WireEvent(error_body(GEMINI, error))]
            case TextStart() | RefusalStart() | BlockStop():
                pass
        return []

    def finish(self) -> list[WireEvent]:
        if self._ended:
            return []
        error = ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended before the response was complete")
        return self.feed(StreamError(error))

    def _signature(self, index: int, signature: OpaqueSignature) -> list[WireEvent]:
        if index in self._calls:
            self._calls[index].signature = signature  # rides on the functionCall part, sent at BlockStop
            return []
        if own_signature(signature, self._w, f"parts[{index}]") is None:
            return []
        if index in self._thought_blocks:
            return self._frame(ReasoningPart("", summary=True, signature=signature), index)
        return self._frame(TextPart("", signature=signature), index)  # Gemini's own shape: an empty signed part

    def _frame(self, part: Part, index: int) -> list[WireEvent]:
        parts = self._parts.encode(part, f"parts[{index}]")
        if not parts:
            return []
        return [WireEvent(self._envelope({"content": {"role": MODEL_ROLE, "parts": parts}, "index": 0}))]

    def _last_frame(self, stop: ResponseStop) -> list[WireEvent]:
        self._ended = True
        self._usage = self._usage.updated(stop.usage or Usage())
        candidate = {"finishReason": finish_from_stop(stop.stop, stop.stop_detail, self._w), "index": 0}
        frame = self._envelope(candidate)
        frame["usageMetadata"] = usage_metadata(self._usage)
        return [WireEvent(frame)]

    def _envelope(self, candidate: dict[str, Any]) -> dict[str, Any]:
        # modelVersion is the alias the client asked for, never the upstream's model.
        return {"candidates": [candidate], "modelVersion": self._client.request.model, "responseId": self._response_id}
