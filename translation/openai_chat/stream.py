"""Chat Completions streams: `chat.completion.chunk` data frames <-> IR stream events.

Upstream side (StreamDecoder): tool-call fragments are keyed by `tool_calls[].index`, with id and name only
on the first fragment (pitfall 2); whole arguments in one chunk work the same (pitfall 3); a missing id is
made up deterministically. Calls of the functions standing in for CUSTOM tools (custom_tools.py) are the one
thing held back: their `{"input": …}` is unwrapped into one fragment when the call ends. The stop reason comes
with `finish_reason`, usage in a later `choices: []` chunk (requested with `stream_options.include_usage`), so
ResponseStop waits for the usage chunk, `[DONE]` or the end of the body.

Client side (StreamEncoder): one chunk per IR delta as it arrives, a role chunk first, tool calls numbered
0, 1, 2… in start order, a finish chunk, a usage chunk when the client asked for `include_usage`, `[DONE]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import ClientContext, WireEvent
from translation.custom_tools import custom_tool_names, unwrap_arguments
from translation.errors import ApiError, ErrorKind, error_body
from translation.ir import (
    BlockStop,
    ReasoningDelta,
    ReasoningStart,
    RefusalStart,
    Request,
    ResponseStart,
    ResponseStop,
    SignatureDelta,
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
    extras_for,
)
from translation.openai_chat.wire import (
    DIALECT,
    finish_reason,
    reasoning_text,
    stop_detail,
    stop_from_finish,
    stream_error,
    synthetic_call_id,
    usage_from_wire,
    usage_to_wire,
)
from translation.sse import SSEEvent

_DONE = "[DONE]"
_CONTENT_STARTS = {"text": TextStart, "reasoning": ReasoningStart, "refusal": RefusalStart}


class StreamDecoder:
    """`request` names the CUSTOM tools, whose calls come back as function calls unless the upstream took them
    natively (flag `custom_tools`)."""

    def __init__(self, request: Request) -> None:
        self.warnings: list[TranslationWarning] = []
        self._custom = custom_tool_names(request)
        self._held: dict[int, list[str]] = {}  # IR index -> argument fragments of a wrapped CUSTOM call
        self._started = False
        self._ended = False
        self._id = ""
        self._blocks = 0  # IR indices handed out so far
        self._content: tuple[str, int] | None = None  # the open text/reasoning/refusal block: (kind, IR index)
        self._tools: dict[Any, int] = {}  # wire tool-call index -> IR index
        self._open_tools: list[int] = []
        self._has_refusal = False
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self._ended:
            return []
        if event.data.strip() == _DONE:
            return self._stop(self._finish or "stop")
        try:
            payload = event.json()
        except ValueError:
            self.warnings.append(TranslationWarning("stream_data", "skipped a chunk that is not JSON"))
            return []
        if not isinstance(payload, Mapping):
            return []
        if payload.get("error") is not None:
            self._ended = True
            return [StreamError(stream_error(payload))]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._id = str(payload.get("id", ""))
            out.append(ResponseStart(self._id, str(payload.get("model", "")), created=payload.get("created")))
        for choice in payload.get("choices") or ():
            if choice.get("index", 0) == 0:  # n > 1 is refused, so any other choice is noise
                out.extend(self._delta(choice.get("delta") or {}))
                if choice.get("finish_reason"):
                    self._finish = choice["finish_reason"]
                    out.extend(self._close_all())
        usage = usage_from_wire(payload.get("usage"))
        if usage is not None:
            self._usage = usage
            if self._finish is None:
                out.append(UsageUpdate(usage))
            else:
                out.extend(self._stop(self._finish))
        return out

    def finish(self) -> list[StreamEvent]:
        if self._ended:
            return []
        if self._finish is not None:
            return self._stop(self._finish)
        self._ended = True
        message = "the upstream stream ended before its finish_reason"
        return [StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, message))]

    def _delta(self, delta: Mapping[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        reasoning = reasoning_text(delta)
        if reasoning is not None:
            out.extend(self._text("reasoning", reasoning))
        if delta.get("content"):
            out.extend(self._text("text", delta["content"]))
        if delta.get("refusal"):
            self._has_refusal = True
            out.extend(self._text("refusal", delta["refusal"]))
        for call in delta.get("tool_calls") or ():
            out.extend(self._tool_call(call.get("index", len(self._tools)), call))
        if delta.get("function_call"):  # legacy functions API: one call, no id
            out.extend(self._tool_call("function_call", {"function": delta["function_call"]}))
        return out

    def _text(self, kind: str, text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._content is None or self._content[0] != kind:
            out.extend(self._close_content())
            self._content = (kind, self._new_index())
            out.append(_CONTENT_STARTS[kind](self._content[1]))
        index = self._content[1]
        out.append(ReasoningDelta(index, text) if kind == "reasoning" else TextDelta(index, text))
        return out

    def _tool_call(self, key: Any, call: Mapping[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        custom = call.get("type") == "custom" or "custom" in call
        body: Mapping[str, Any] = call.get("custom" if custom else "function") or {}
        if key not in self._tools:
            out.extend(self._close_content())  # text before tool calls is finished: let sequencers flush it
            index = self._tools[key] = self._new_index()
            self._open_tools.append(index)
            call_id = call.get("id") or synthetic_call_id(self._id, len(self._tools) - 1)
            name = body.get("name") or ""
            if not custom and name in self._custom:
                self._held[index] = []  # a function call standing in for a CUSTOM call: unwrapped at its end
            kind = ToolKind.CUSTOM if custom or index in self._held else ToolKind.FUNCTION
            out.append(ToolCallStart(index, call_id, name, kind))
        fragment = body.get("input" if custom else "arguments")
        index = self._tools[key]
        if fragment and index in self._held:
            self._held[index].append(fragment)
        elif fragment:
            out.append(ToolArgsDelta(index, fragment))
        return out

    def _new_index(self) -> int:
        self._blocks += 1
        return self._blocks - 1

    def _close_content(self) -> list[StreamEvent]:
        if self._content is None:
            return []
        index, self._content = self._content[1], None
        return [BlockStop(index)]

    def _close_all(self) -> list[StreamEvent]:
        out = self._close_content()
        for index in self._open_tools:
            held = self._held.pop(index, None)
            if held:
                out.append(ToolArgsDelta(index, unwrap_arguments("".join(held))))
            out.append(BlockStop(index))
        self._open_tools.clear()
        return out

    def _stop(self, finish: str) -> list[StreamEvent]:
        if not self._started:
            self._ended = True
            return [StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended without any chunk"))]
        out = self._close_all()
        self._ended = True
        stop = stop_from_finish(finish, has_tool_calls=bool(self._tools), has_refusal=self._has_refusal)
        out.append(ResponseStop(stop, self._usage, stop_detail=stop_detail(finish, stop)))
        return out


class StreamEncoder:
    def __init__(self, client: ClientContext) -> None:
        self._client = client
        self._w = Warnings()
        self.warnings: list[TranslationWarning] = self._w.items
        stream_options = extras_for(client.request.extras, DIALECT).get("stream_options") or {}
        self._include_usage = bool(stream_options.get("include_usage"))
        self._id = ""
        self._created = client.created
        self._refusals: set[int] = set()  # IR indices of refusal blocks (their TextDeltas are refusal text)
        self._tools: dict[int, tuple[int, ToolKind]] = {}  # IR index -> (Chat tool_calls index, kind)
        self._usage = Usage()
        self._ended = False

    def feed(self, event: StreamEvent) -> list[WireEvent]:
        if self._ended:
            return []
        match event:
            case ResponseStart(id=response_id, created=created, usage=usage):
                self._id = response_id
                self._created = created if created is not None else self._created
                self._usage = self._usage.updated(usage or Usage())
                return [self._chunk({"role": "assistant", "content": ""})]
            case RefusalStart(index=index):
                self._refusals.add(index)
            case ToolCallStart(index=index, id=call_id, name=name, kind=kind):
                position = len(self._tools)
                self._tools[index] = (position, kind)
                field = "custom" if kind is ToolKind.CUSTOM else "function"
                start = {field: {"name": name, "input" if kind is ToolKind.CUSTOM else "arguments": ""}}
                return [self._chunk({"tool_calls": [{"index": position, "id": call_id, "type": field, **start}]})]
            case TextDelta(index=index, text=text) if text:
                return [self._chunk({"refusal" if index in self._refusals else "content": text})]
            case ReasoningDelta(text=text) if text:
                # Non-standard but additive: DeepSeek-aware clients show it, SDKs ignore unknown fields.
                return [self._chunk({"reasoning_content": text})]
            case ToolArgsDelta(index=index, fragment=fragment) if fragment:
                position, kind = self._tools[index]
                piece = (
                    {"custom": {"input": fragment}}
                    if kind is ToolKind.CUSTOM
                    else {"function": {"arguments": fragment}}
                )
                return [self._chunk({"tool_calls": [{"index": position, **piece}]})]
            case SignatureDelta(index=index):
                self._w.drop("reasoning_signature", "Chat clients cannot return signed reasoning", f"parts[{index}]")
            case UsageUpdate(usage=usage):
                self._usage = self._usage.updated(usage)
            case ResponseStop():
                return self._stop(event)
            case StreamError(error=error):
                self._ended = True
                return [WireEvent(error_body(DIALECT, error))]
        return []

    def finish(self) -> list[WireEvent]:
        if self._ended:
            return []
        self._ended = True
        error = ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended before the response was complete")
        return [WireEvent(error_body(DIALECT, error))]

    def _stop(self, event: ResponseStop) -> list[WireEvent]:
        self._ended = True
        self._usage = self._usage.updated(event.usage or Usage())
        out = [self._chunk({}, finish_reason(event.stop, event.stop_detail, self._w))]
        if self._include_usage:
            out.append(WireEvent({**self._frame(), "choices": [], "usage": usage_to_wire(self._usage)}))
        out.append(WireEvent(_DONE))
        return out

    def _frame(self) -> dict[str, Any]:
        model = self._client.request.model
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> WireEvent:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return WireEvent({**self._frame(), "choices": [choice]})
