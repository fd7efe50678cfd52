"""IR stream -> the Responses event sequence a Codex client relies on.

response.created, response.in_progress, then per output item: output_item.added, its part/delta/done events,
output_item.done (Codex builds its history from these items), and finally response.completed /
response.incomplete / response.failed carrying the whole output and usage. Every event has a
`sequence_number` (0, 1, 2, …). Items are emitted one after the other, so interleaved IR blocks (parallel calls
from a Chat upstream) go through `BlockSequencer`, which holds back only the blocks that cannot be sent yet.
The same `WireEvent.data` dicts serve as SSE payloads and as WebSocket text frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from translation.codec import ClientContext, WireEvent
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    BlockStop,
    OpaqueSignature,
    ReasoningDelta,
    ReasoningStart,
    RefusalStart,
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
)
from translation.openai_responses.response import envelope, message_item, reasoning_item
from translation.openai_responses.tools import namespaces
from translation.openai_responses.wire import (
    DIALECT,
    encode_status,
    error_event,
    failed_error,
    item_id,
    response_id,
)
from translation.streaming import BlockSequencer

_PREFIX = {"text": "msg", "refusal": "msg", "reasoning": "rs", "function_call": "fc", "custom_tool_call": "ctc"}


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    kind: str  # a key of _PREFIX
    output_index: int
    id: str
    chunks: list[str] = field(default_factory=list)
    summary: bool = False
    summary_open: bool = False
    signature: OpaqueSignature | None = None
    call: dict[str, Any] = field(default_factory=dict)  # call items: the fields fixed at the start

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def ref(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}


class StreamEncoder:
    def __init__(self, client: ClientContext) -> None:
        self.warnings: list[TranslationWarning] = []
        self._client = client
        self._sequencer = BlockSequencer()
        self._namespaces = namespaces(client.request.tools)
        self._sequence = 0
        self._rid = response_id(str(client.created))
        self._created: int | None = None
        self._usage = Usage()
        self._started = False
        self._finished = False
        self._open: dict[int, _Item] = {}
        self._output: list[dict[str, Any] | None] = []  # by output index; None while the item streams
        self._has_refusal = False

    def feed(self, event: StreamEvent) -> list[WireEvent]:
        if self._finished:
            return []
        out: list[WireEvent] = []
        for ordered in self._sequencer.feed(event):
            out += self._encode(ordered)
        return out

    def finish(self) -> list[WireEvent]:
        if self._finished:
            return []
        return self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, "the upstream stream ended before the response completed"))

    # -- dispatch --------------------------------------------------------------------------------------------

    def _encode(self, event: StreamEvent) -> list[WireEvent]:
        if isinstance(event, ResponseStart):
            return self._start(event)
        out = [] if self._started else self._start(None)
        match event:
            case TextStart(index=i):
                out += self._open_message(i, "text", {"type": "output_text", "text": "", "annotations": []})
            case RefusalStart(index=i):
                self._has_refusal = True
                out += self._open_message(i, "refusal", {"type": "refusal", "refusal": ""})
            case ReasoningStart(index=i, summary=summary):
                item = self._new_item(i, "reasoning")
                item.summary = summary
                out.append(self._added(item, {"type": "reasoning", "id": item.id, "summary": []}))
            case ToolCallStart(index=i, id=call_id, name=name, kind=kind):
                out += self._open_call(i, call_id, name, kind)
            case (
                TextDelta(index=i, text=text)
                | ReasoningDelta(index=i, text=text)
                | ToolArgsDelta(index=i, fragment=text)
            ):
                out += self._delta(self._open[i], text)
            case SignatureDelta(index=i, signature=signature):
                self._open[i].signature = signature
            case BlockStop(index=i):
                out += self._close(self._open.pop(i))
            case UsageUpdate(usage=usage):
                self._usage = self._usage.updated(usage)
            case ResponseStop():
                out += self._stop(event)
            case StreamError(error=error):
                out += self._fail(error)
        return out

    def _event(self, kind: str, **fields: Any) -> WireEvent:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return WireEvent(data, kind)

    def _envelope(self, status: str, **details: Any) -> dict[str, Any]:
        output = [item for item in self._output if item is not None]
        usage = self._usage if status != "in_progress" else None
        return envelope(self._client, self._rid, self._created, status, output, usage, **details)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def _start(self, event: ResponseStart | None) -> list[WireEvent]:
        self._started = True
        if event is not None:
            self._rid = response_id(event.id)
            self._created = event.created
            self._usage = self._usage.updated(event.usage or Usage())
        response = self._envelope("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _stop(self, event: ResponseStop) -> list[WireEvent]:
        self._finished = True
        self._usage = self._usage.updated(event.usage or Usage())
        status, details = encode_status(event.stop, has_refusal=self._has_refusal)
        if status == "failed":
            message = event.stop_detail or "the model produced no usable output"
            return self._fail(ApiError(ErrorKind.UPSTREAM_ERROR, message))
        response = self._envelope(status, incomplete_details=details)
        return [self._event(f"response.{status}", response=response)]

    def _fail(self, error: ApiError) -> list[WireEvent]:
        """Close what is still streaming as `incomplete`, then the `error` event and `response.failed` (its
        `error` object, its output the partial items): never a successful end for a broken stream."""
        self._finished = True
        out = [] if self._started else self._start(None)
        for index, item in sorted(self._open.items(), key=lambda entry: entry[1].output_index):
            del self._open[index]
            out += self._close(item, incomplete=True)
        fields = {k: v for k, v in error_event(error).items() if k != "type"}
        out.append(self._event("error", **fields))
        response = self._envelope("failed", error=failed_error(error))
        return [*out, self._event("response.failed", response=response)]

    # -- items -----------------------------------------------------------------------------------------------

    def _new_item(self, index: int, kind: str) -> _Item:
        output_index = len(self._output)
        item = _Item(kind, output_index, item_id(_PREFIX[kind], self._rid, output_index))
        self._output.append(None)
        self._open[index] = item
        return item

    def _added(self, item: _Item, wire: dict[str, Any]) -> WireEvent:
        return self._event("response.output_item.added", output_index=item.output_index, item=wire)

    def _open_message(self, index: int, kind: str, part: dict[str, Any]) -> list[WireEvent]:
        item = self._new_item(index, kind)
        added = self._added(item, message_item(item.id, [], status="in_progress"))
        return [added, self._event("response.content_part.added", **item.ref(), content_index=0, part=part)]

    def _open_call(self, index: int, call_id: str, name: str, kind: ToolKind) -> list[WireEvent]:
        custom = kind is ToolKind.CUSTOM
        item = self._new_item(index, "custom_tool_call" if custom else "function_call")
        item.call = {"type": item.kind, "id": item.id, "call_id": call_id, "name": name}
        if name in self._namespaces:
            item.call["namespace"] = self._namespaces[name]
        progress = {"input": ""} if custom else {"arguments": "", "status": "in_progress"}
        return [self._added(item, {**item.call, **progress})]

    def _delta(self, item: _Item, text: str) -> list[WireEvent]:
        item.chunks.append(text)
        match item.kind:
            case "text":
                return [
                    self._event("response.output_text.delta", **item.ref(), content_index=0, delta=text, logprobs=[])
                ]
            case "refusal":
                return [self._event("response.refusal.delta", **item.ref(), content_index=0, delta=text)]
            case "function_call":
                return [self._event("response.function_call_arguments.delta", **item.ref(), delta=text)]
            case "custom_tool_call":
                return [self._event("response.custom_tool_call_input.delta", **item.ref(), delta=text)]
        if not item.summary:
            return [self._event("response.reasoning_text.delta", **item.ref(), content_index=0, delta=text)]
        out = []
        if not item.summary_open:
            item.summary_open = True
            part = {"type": "summary_text", "text": ""}
            out.append(self._event("response.reasoning_summary_part.added", **item.ref(), summary_index=0, part=part))
        out.append(self._event("response.reasoning_summary_text.delta", **item.ref(), summary_index=0, delta=text))
        return out

    def _close(self, item: _Item, *, incomplete: bool = False) -> list[WireEvent]:
        """The item's closing events. `incomplete`: the upstream failed while it streamed, so its text is what
        arrived and its item says `status: "incomplete"`; a call's arguments are not declared done (they are
        a fragment, not a call to run), and a custom tool call, whose item has no status field, is not
        closed at all nor listed in the failed response."""
        text = item.text
        status = "incomplete" if incomplete else "completed"
        out: list[WireEvent] = []
        if item.kind in ("text", "refusal"):
            if item.kind == "text":
                part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
                out.append(
                    self._event("response.output_text.done", **item.ref(), content_index=0, text=text, logprobs=[])
                )
            else:
                part = {"type": "refusal", "refusal": text}
                out.append(self._event("response.refusal.done", **item.ref(), content_index=0, refusal=text))
            out.append(self._event("response.content_part.done", **item.ref(), content_index=0, part=part))
            wire = message_item(item.id, [part], status=status)
        elif item.kind == "reasoning":
            out += self._close_reasoning(item)
            warnings = Warnings()
            wire = reasoning_item(item.id, text, item.summary, item.signature, warnings)
            if incomplete:
                wire["status"] = status
            self.warnings.extend(warnings.items)
        elif incomplete and item.kind == "custom_tool_call":
            self.warnings.append(
                TranslationWarning("custom_tool_call", "a custom tool call cut short by the upstream was withheld")
            )
            return []
        elif incomplete:
            wire = {**item.call, "arguments": text, "status": status}
        else:
            if item.signature is not None and item.signature.dialect is not DIALECT:
                self.warnings.append(
                    TranslationWarning("reasoning_signature", "a call's thought signature cannot go to Responses")
                )
            if item.kind == "function_call":
                out.append(self._event("response.function_call_arguments.done", **item.ref(), arguments=text))
                wire = {**item.call, "arguments": text, "status": "completed"}
            else:
                out.append(self._event("response.custom_tool_call_input.done", **item.ref(), input=text))
                wire = {**item.call, "input": text}
        self._output[item.output_index] = wire
        return [*out, self._event("response.output_item.done", output_index=item.output_index, item=wire)]

    def _close_reasoning(self, item: _Item) -> list[WireEvent]:
        text = item.text
        if item.summary_open:
            part = {"type": "summary_text", "text": text}
            return [
                self._event("response.reasoning_summary_text.done", **item.ref(), summary_index=0, text=text),
                self._event("response.reasoning_summary_part.done", **item.ref(), summary_index=0, part=part),
            ]
        if not item.summary and text:
            return [self._event("response.reasoning_text.done", **item.ref(), content_index=0, text=text)]
        return []
