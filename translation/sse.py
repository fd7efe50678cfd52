"""Server-sent events: an incremental parser and an encoder (https://html.spec.whatwg.org/#event-stream-interpretation).

The parser takes bytes exactly as they come off the socket. Chunk boundaries may fall anywhere, including
between the \\r and \\n of a CRLF and inside a multi-byte UTF-8 character, so lines are split on bytes and
decoded only once complete. Lines may end in \\n, \\r\\n or \\r (Gemini ends events with \\r\\n\\r\\n, the
others with \\n\\n); all work, mixed too.

It runs in time linear in the bytes fed, however the stream is chunked: each byte is searched for a line
break once (`scanned_bytes` counts it), the buffer only ever holds the unfinished line, and a long line
arriving in many chunks is never re-scanned or re-copied. It holds at most `max_event_bytes` of one event
(its data lines and its unfinished line): beyond that `feed` raises `EventTooLarge`, so an upstream cannot
make the proxy hold an unbounded event in memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# What a proxy holds of one upstream event at most unless told otherwise (UPSTREAM_MAX_EVENT_BYTES).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_LINE_BREAK = re.compile(rb"[\r\n]")
_TEXT_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CR, _LF = 0x0D, 0x0A


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. `event` is None when the stream sent no `event:` line (Chat, Gemini)."""

    data: str
    event: str | None = None
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class EventTooLarge(ValueError):
    """One event grew past the parser's `max_event_bytes`. `events`: the complete events the same `feed` had
    parsed before it, so a caller can still deliver them. The parser is spent: later feeds raise again."""

    def __init__(self, limit: int, events: list[SSEEvent]) -> None:
        super().__init__(f"a stream event is larger than {limit} bytes")
        self.limit = limit
        self.events = events


class SSEParser:
    def __init__(self, max_event_bytes: int | None = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.scanned_bytes = 0  # bytes searched for a line break so far: the parser's work, linear in its input
        self._buffer = bytearray()  # the unfinished line, nothing else
        self._scanned = 0  # how much of `_buffer` is known to hold no line break
        self._pending_cr = False  # the last chunk ended in \r: a \n starting the next one belongs to it
        self._data: list[str] = []
        self._data_bytes = 0  # bytes of the data lines held for the event being read
        self._event: str | None = None
        self._id: str | None = None
        self._too_large = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._too_large:
            raise EventTooLarge(self._limit, [])
        if not chunk:
            return []
        start = 0
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == _LF:
                start = 1
        buffer = self._buffer
        buffer += memoryview(chunk)[start:]
        events: list[SSEEvent] = []
        line_start = 0
        position = self._scanned
        end = len(buffer)
        while (found := _LINE_BREAK.search(buffer, position)) is not None:
            at = found.start()
            self.scanned_bytes += at + 1 - position
            position = at + 1
            if buffer[at] == _CR:
                if position == end:
                    self._pending_cr = True  # maybe the first half of a \r\n split across chunks
                elif buffer[position] == _LF:
                    position += 1
            event = self._process(bytes(buffer[line_start:at]))
            line_start = position
            if event is not None:
                events.append(event)
            elif self._data_bytes > self._limit:
                self._overflow(events)
        self.scanned_bytes += end - position
        del buffer[:line_start]  # cheap: a bytearray drops its head without moving the rest
        self._scanned = len(buffer)
        if self._data_bytes + len(buffer) > self._limit:
            self._overflow(events)
        return events

    @property
    def _limit(self) -> int:
        return self.max_event_bytes if self.max_event_bytes is not None else 1 << 62

    def _overflow(self, events: list[SSEEvent]) -> None:
        self._too_large = True
        self._buffer = bytearray()
        self._data = []
        raise EventTooLarge(self._limit, events)

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last line without terminator is processed; an event missing its blank line is
        dispatched anyway (lenient, like the SDKs, so a truncated last event is not lost)."""
        if self._too_large:
            return []
        events: list[SSEEvent] = []
        if self._buffer:
            line, self._buffer, self._scanned = bytes(self._buffer), bytearray(), 0
            event = self._process(line)
            if event is not None:
                events.append(event)
        event = self._process(b"")
        if event is not None:
            events.append(event)
        return events

    def _process(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += len(raw)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # unknown fields (including "retry") are ignored, as the spec says

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = None  # an event with no data is not dispatched
            return None
        event = SSEEvent(data="\n".join(self._data), event=self._event or None, id=self._id)
        self._data = []
        self._data_bytes = 0
        self._event = None
        return event


def encode_event(data: Any, event: str | None = None) -> bytes:
    """One SSE frame. Dicts and lists are written as compact JSON; strings (e.g. `[DONE]`) as they are.

    Multi-line strings become several `data:` lines, which the parser joins back with \\n.
    """
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    lines = [f"event: {event}"] if event is not None else []
    lines.extend(f"data: {line}" for line in _TEXT_LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode("utf-8")
