"""Dialect-independent stream machinery built on the IR event vocabulary (translation/ir/stream.py).

- `BlockSequencer`: turns possibly interleaved blocks into strictly sequential ones, for encoders whose
  dialect requires it, holding back only the blocks that cannot be sent yet.
- `ResponseBuilder`: folds a stream into a complete `Response` (non-streaming client with a streaming
  upstream, ledger usage, tests).
- `response_events`: the reverse, a complete `Response` replayed as a stream (streaming client with a
  non-streaming upstream).
- `GuardedDecoder`: a dialect's stream decoder that never raises; what it cannot read ends the stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from translation.codec import StreamDecoder
from translation.errors import ApiError, ErrorKind
from translation.ir.common import Extras, OpaqueSignature
from translation.ir.content import (
    Part,
    ReasoningPart,
    RefusalPart,
    TextPart,
    ToolCallPart,
)
from translation.ir.diagnostics import TranslationWarning
from translation.ir.response import Response, StopReason
from translation.ir.stream import (
    BlockStop,
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
    UsageUpdate,
)
from translation.sse import SSEEvent
from translation.usage import Usage

_BLOCK_STARTS = (TextStart, ReasoningStart, ToolCallStart, RefusalStart)
_BLOCK_EVENTS = (*_BLOCK_STARTS, TextDelta, ReasoningDelta, ToolArgsDelta, SignatureDelta, BlockStop)


class BlockSequencer:
    """Reorders block events so that one block is open at a time, renumbering indices 0, 1, 2… in the order
    blocks are emitted. The first block to start streams through untouched; a block that starts while
    another is open is held until the open one stops, then released (and streams live from then on)."""

    def __init__(self) -> None:
        self._current: int | None = None
        self._waiting: dict[int, list[StreamEvent]] = {}  # insertion order = start order
        self._renumbered: dict[int, int] = {}

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if not isinstance(event, _BLOCK_EVENTS):
            if isinstance(event, (ResponseStop, StreamError)):
                return [*self._release_all(), event]
            return [event]
        index = event.index
        if self._current is None and isinstance(event, _BLOCK_STARTS) and not self._waiting:
            self._current = index
        if index != self._current:
            self._waiting.setdefault(index, []).append(event)
            return []
        out = [self._renumber(event)]
        if isinstance(event, BlockStop):
            self._current = None
            out.extend(self._release_next())
        return out

    def _release_next(self) -> list[StreamEvent]:
        """Emit held blocks in start order until one is still open; that one becomes current."""
        out: list[StreamEvent] = []
        while self._waiting:
            index = next(iter(self._waiting))
            held = self._waiting.pop(index)
            out.extend(self._renumber(e) for e in held)
            if not isinstance(held[-1], BlockStop):
                self._current = index
                break
        return out

    def _release_all(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for held in self._waiting.values():
            out.extend(self._renumber(e) for e in held)
        self._waiting.clear()
        return out

    def _renumber(self, event: StreamEvent) -> StreamEvent:
        assert isinstance(event, _BLOCK_EVENTS)
        new = self._renumbered.setdefault(event.index, len(self._renumbered))
        return event if new == event.index else dataclasses.replace(event, index=new)


@dataclass(slots=True)
class _Block:
    start: TextStart | ReasoningStart | ToolCallStart | RefusalStart
    chunks: list[str] = field(default_factory=list)
    signature: OpaqueSignature | None = None

    def part(self) -> Part:
        text = "".join(self.chunks)
        match self.start:
            case ToolCallStart(id=call_id, name=name, kind=kind):
                return ToolCallPart.from_raw(call_id, name, text, kind=kind, signature=self.signature)
            case ReasoningStart(summary=summary):
                return ReasoningPart(text=text, summary=summary, signature=self.signature)
            case RefusalStart():
                return RefusalPart(text=text)
            case _:
                return TextPart(text=text, signature=self.signature)


class ResponseBuilder:
    """Accumulates IR stream events; `response()` gives the equivalent non-streamed `Response`."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created: int | None = None
        self.extras: Extras = {}
        self.usage = Usage()
        self.stop: ResponseStop | None = None
        self.error: ApiError | None = None
        self._blocks: dict[int, _Block] = {}

    def feed(self, event: StreamEvent) -> None:
        match event:
            case ResponseStart():
                self.id, self.model, self.created, self.extras = event.id, event.model, event.created, event.extras
                self.usage = self.usage.updated(event.usage or Usage())
            case TextStart() | ReasoningStart() | ToolCallStart() | RefusalStart():
                self._blocks[event.index] = _Block(event)
            case (
                TextDelta(index=i, text=text)
                | ReasoningDelta(index=i, text=text)
                | ToolArgsDelta(index=i, fragment=text)
            ):
                self._blocks[i].chunks.append(text)
            case SignatureDelta(index=i, signature=signature):
                self._blocks[i].signature = signature
            case UsageUpdate(usage=usage):
                self.usage = self.usage.updated(usage)
            case ResponseStop():
                self.stop = event
                self.usage = self.usage.updated(event.usage or Usage())
            case StreamError(error=error):
                self.error = error
            case BlockStop():
                pass

    def response(self) -> Response:
        """The response so far. A stream that ended without ResponseStop reports StopReason.ERROR."""
        stop = self.stop or ResponseStop(StopReason.ERROR, stop_detail="stream ended before its stop event")
        return Response(
            id=self.id,
            model=self.model,
            parts=tuple(self._blocks[i].part() for i in sorted(self._blocks)),
            stop=stop.stop,
            usage=self.usage,
            stop_sequence=stop.stop_sequence,
            stop_detail=stop.stop_detail,
            created=self.created,
            extras=self.extras,
        )


def response_events(response: Response) -> list[StreamEvent]:
    """Replay a complete response as a stream: one start, one delta and one stop per streamable part.

    Input usage goes on ResponseStart (as Anthropic clients expect it there), the full usage on ResponseStop.
    Parts that have no stream form (images, tool results, native parts) are skipped.
    """
    start_usage = dataclasses.replace(response.usage, output_tokens=None, reasoning_tokens=None)
    events: list[StreamEvent] = [
        ResponseStart(response.id, response.model, start_usage, response.created, response.extras)
    ]
    index = 0
    for part in response.parts:
        block: list[StreamEvent]
        match part:
            case TextPart(text=text, signature=signature):
                block = [TextStart(index), TextDelta(index, text)]
            case ReasoningPart(text=text, summary=summary, signature=signature):
                block = [ReasoningStart(index, summary)]
                block += [ReasoningDelta(index, text)] if text else []
            case ToolCallPart(id=call_id, name=name, raw_arguments=raw, kind=kind, signature=signature):
                block = [ToolCallStart(index, call_id, name, kind), ToolArgsDelta(index, raw)]
            case RefusalPart(text=text):
                block, signature = [RefusalStart(index), TextDelta(index, text)], None
            case _:
                continue
        if signature is not None:
            block.append(SignatureDelta(index, signature))
        events.extend([*block, BlockStop(index)])
        index += 1
    events.append(ResponseStop(response.stop, response.usage, response.stop_sequence, response.stop_detail))
    return events


class GuardedDecoder:
    """A dialect's `StreamDecoder` that never raises. An upstream event it cannot read — whatever the exception
    (a field of the wrong type such as `{"choices": "notalist"}`, a missing key), or text that is not text
    (`{"content": 5}` passed on as is) — ends the IR stream with a
    `StreamError`, as an upstream's own mid-stream error does, so the client gets its dialect's stream error
    event and a proper end instead of a proxy failure halfway through. The events decoded before it are kept.

    After any `StreamError` (the upstream's or this one) it emits nothing more: the stream is over.
    `failure` keeps the exception for the caller's log."""

    def __init__(self, decoder: StreamDecoder, source: str = "the upstream") -> None:
        self._decoder = decoder
        self._source = source
        self.failure: Exception | None = None
        self.ended = False
        self._current: SSEEvent | None = None  # the upstream event being decoded, for the error message

    @property
    def warnings(self) -> list[TranslationWarning]:
        return self._decoder.warnings

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self.ended:
            return []
        self._current = event
        try:
            return self._ending(self._decoder.feed(event))
        except Exception as exc:
            return self._failed(exc, event)

    def finish(self) -> list[StreamEvent]:
        if self.ended:
            return []
        self._current = None
        try:
            return self._ending(self._decoder.finish())
        except Exception as exc:
            return self._failed(exc, None)

    def end_with(self, error: ApiError) -> list[StreamEvent]:
        """End the stream with `error` (the caller found the upstream's bytes unusable), unless it already ended."""
        if self.ended:
            return []
        self.ended = True
        return [StreamError(error)]

    def _ending(self, events: list[StreamEvent]) -> list[StreamEvent]:
        for position, event in enumerate(events):
            if isinstance(event, StreamError):
                self.ended = True
            elif isinstance(event, _TEXT_EVENTS) and not _is_text(event):
                # A decoder passes a field on as the upstream typed it ({"content": 5}): caught here, before an
                # encoder or the ledger trips over it, as the same unreadable event.
                failure = TypeError(f"{type(event).__name__} carries {_text_of(event)!r}, not text")
                return events[:position] + self._failed(failure, None)
        return events

    def _failed(self, exc: Exception, event: SSEEvent | None) -> list[StreamEvent]:
        self.failure, self.ended = exc, True
        event = event or self._current
        what = f"an event it could not read ({_excerpt(event)})" if event is not None else "a stream it could not end"
        message = f"{self._source} sent {what}: {type(exc).__name__}: {exc}"
        return [StreamError(ApiError(ErrorKind.UPSTREAM_ERROR, message, status=502))]


_TEXT_EVENTS = (TextDelta, ReasoningDelta, ToolArgsDelta)


def _text_of(event: TextDelta | ReasoningDelta | ToolArgsDelta) -> object:
    return event.fragment if isinstance(event, ToolArgsDelta) else event.text


def _is_text(event: TextDelta | ReasoningDelta | ToolArgsDelta) -> bool:
    return isinstance(_text_of(event), str)


def _excerpt(event: SSEEvent, size: int = 120) -> str:
    data = event.data if len(event.data) <= size else event.data[:size] + "…"
    return f"event {event.event!r}, data {data!r}" if event.event else f"data {data!r}"
