"""Server-sent events: an incremental parser and an encoder (https://html.spec.whatwg.org/#event-stream-interpretation).

The parser takes bytes exactly as they come off the socket. Chunk boundaries may fall anywhere, including
between the \\r and \\n of a CRLF and inside a multi-byte UTF-8 character, so lines are split on bytes and
decoded only once complete. Gemini ends events with \\r\\n\\r\\n, the others with \\n\\n; both work.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_END_OF_LINE = re.compile(rb"\r\n|\r|\n")
_TEXT_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. `event` is None when the stream sent no `event:` line (Chat, Gemini)."""

    data: str
    event: str | None = None
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False  # the last chunk ended in \r: a \n starting the next one belongs to it
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._buffer += chunk
        events: list[SSEEvent] = []
        for line in self._complete_lines():
            event = self._process(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last line without terminator is processed; an event missing its blank line is
        dispatched anyway (lenient, like the SDKs, so a truncated last event is not lost)."""
        events: list[SSEEvent] = []
        if self._buffer:
            line, self._buffer = self._buffer, b""
            event = self._process(line)
            if event is not None:
                events.append(event)
        event = self._process(b"")
        if event is not None:
            events.append(event)
        return events

    def _complete_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        for match in _END_OF_LINE.finditer(self._buffer):
            lines.append(self._buffer[start : match.start()])
            start = match.end()
        # A lone \r at the very end may be the first half of a \r\n split across chunks.
        self._pending_cr = start == len(self._buffer) and self._buffer.endswith(b"\r")
        self._buffer = self._buffer[start:]
        return lines

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
