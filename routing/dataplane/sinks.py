"""Where an exchange's answer goes: the one thing that differs between HTTP (JSON or SSE) and the Responses
WebSocket (one text frame per event). The pipeline and the relay speak only to a `Sink`.

A sink knows whether anything reached the client yet (`started`): before that a failure is a whole error
answer with its status; after it, the dialect's stream error event.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from routing.dataplane.asgi_io import JSON_CONTENT_TYPE, SSE_HEADERS, Send, send_bytes
from translation.bedrock.eventstream import CONTENT_TYPE as EVENT_STREAM_CONTENT_TYPE
from translation.bedrock.eventstream import encode_invoke_chunk, encode_wire_event
from translation.codec import WireEvent
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, error_body, error_headers, status_for, stream_error_event

if TYPE_CHECKING:
    from usage.captures import ExchangeCapture

Headers = list[tuple[bytes, bytes]]
EVENT_STREAM_HEADERS: Headers = [(b"content-type", EVENT_STREAM_CONTENT_TYPE.encode()), (b"cache-control", b"no-cache")]


class Sink:
    """The delivery side of an exchange. `events_only`: the transport cannot carry an upstream's raw bytes
    or a whole JSON body (the WebSocket), so the relay hands it parsed events."""

    events_only = False

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.started = False
        # Keeps a copy of what reached the client, after each send (usage.captures); None when not captured.
        self.capture: ExchangeCapture | None = None

    async def whole(self, status: int, content: bytes, content_type: bytes, headers: Headers) -> None:
        raise NotImplementedError

    async def json(self, status: int, payload: Any, headers: Headers | None = None) -> None:
        await self.whole(status, json.dumps(payload).encode(), JSON_CONTENT_TYPE, headers or [])

    async def open_stream(self, headers: Headers) -> None:
        """The upstream's stream began: status and headers go to the client now, not with the first event."""
        raise NotImplementedError

    async def chunk(self, data: bytes) -> None:
        """Raw bytes of a same-dialect upstream stream (never called when `events_only`)."""
        raise NotImplementedError

    async def events(self, events: Sequence[WireEvent]) -> None:
        raise NotImplementedError

    async def close_stream(self) -> None:
        raise NotImplementedError

    async def fail(self, error: ApiError) -> None:
        """Tell the client about a failure: a whole error answer before anything was sent, else a stream
        error event that ends the stream."""
        raise NotImplementedError


class HttpSink(Sink):
    """HTTP: a JSON body, or a stream of SSE frames. `aws`: an AWS SDK on the bedrock-runtime paths, whose
    streams are AWS event-stream messages (so the relay hands this sink parsed events, never raw bytes) and whose
    errors are Bedrock's (the exception name in `x-amzn-ErrorType`), whichever body the path takes."""

    def __init__(self, dialect: Dialect, send: Send, *, aws: bool = False) -> None:
        super().__init__(dialect)
        self._send = send
        self.aws = aws
        self.events_only = aws
        self.error_dialect = Dialect.BEDROCK if aws else dialect

    async def whole(self, status: int, content: bytes, content_type: bytes, headers: Headers) -> None:
        self.started = True
        await send_bytes(self._send, status, content, content_type, headers)
        if self.capture is not None:
            self.capture.to_client(content, status)

    async def open_stream(self, headers: Headers) -> None:
        self.started = True
        start = EVENT_STREAM_HEADERS if self.aws else SSE_HEADERS
        await self._send({"type": "http.response.start", "status": 200, "headers": start + headers})
        # ASGI servers may hold the start message until the first body message (daphne does): an empty body
        # message puts the headers on the wire now, so a client that times out waiting for headers (Gemini
        # CLI: 60 s) is not left waiting through a long prompt prefill.
        await self._send({"type": "http.response.body", "body": b"", "more_body": True})

    async def chunk(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        if self.capture is not None:
            self.capture.to_client(data, 200)

    async def events(self, events: Sequence[WireEvent]) -> None:
        if not events:
            return
        if not self.aws:
            await self.chunk(b"".join(wire.sse() for wire in events))
            return
        if self.dialect is Dialect.BEDROCK:
            data = b"".join(encode_wire_event(wire) for wire in events if isinstance(wire.data, dict))
        else:
            data = b"".join(encode_invoke_chunk(wire) for wire in events if isinstance(wire.data, dict))
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        if self.capture is not None:  # the events as text: AWS's binary framing would read as noise
            self.capture.to_client(b"".join(wire.sse() for wire in events), 200)

    async def close_stream(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})

    async def fail(self, error: ApiError) -> None:
        dialect = self.error_dialect
        if self.started:
            event = stream_error_event(dialect, error)
            await self._send({"type": "http.response.body", "body": event})
            if self.capture is not None:
                self.capture.to_client(event)
            return
        headers = [(b"retry-after", error.retry_after.encode())] if error.retry_after else []
        if error.kind is ErrorKind.BUDGET_EXHAUSTED:
            headers.append((b"x-should-retry", b"false"))  # the SDKs (and Claude Code) would retry a 429 in vain
        headers += [(name.encode(), value.encode()) for name, value in error_headers(dialect, error).items()]
        await self.json(status_for(dialect, error), error_body(dialect, error), headers)


def ws_error_event(error: ApiError) -> dict[str, Any]:
    """The Responses WebSocket `error` event (protocols.md §3.4): the HTTP status and the OpenAI error object."""
    body = error_body(Dialect.OPENAI_RESPONSES, error)["error"]
    return {"type": "error", "status": status_for(Dialect.OPENAI_RESPONSES, error), "error": body}


def _ws_shaped(data: dict[str, Any]) -> dict[str, Any]:
    """An SSE-style `error` event (code/message/param at the top) in the WebSocket shape the SDK parses."""
    if data.get("type") != "error" or isinstance(data.get("error"), dict):
        return data
    code = data.get("code")
    error = {"type": "server_error", "code": code, "message": data.get("message") or "", "param": data.get("param")}
    shaped: dict[str, Any] = {"type": "error", "error": error}
    if "sequence_number" in data:
        shaped["sequence_number"] = data["sequence_number"]
    return shaped


class WebSocketSink(Sink):
    """Responses over WebSocket: every event is one JSON text frame, tagged with the frame's `stream_id`
    when the client gave one (several responses may run at once on one connection)."""

    events_only = True

    def __init__(self, send_text: Callable[[str], Awaitable[None]], stream_id: str | None) -> None:
        super().__init__(Dialect.OPENAI_RESPONSES)
        self._send_text = send_text
        self.stream_id = stream_id

    async def frame(self, data: dict[str, Any]) -> None:
        data = _ws_shaped(data)
        if self.stream_id is not None:
            data = {**data, "stream_id": self.stream_id}
        self.started = True
        text = json.dumps(data)
        await self._send_text(text)
        if self.capture is not None:
            self.capture.to_client(text.encode() + b"\n", 200)

    async def open_stream(self, headers: Headers) -> None:
        pass  # a WebSocket has no per-response headers: the first event is the start

    async def events(self, events: Sequence[WireEvent]) -> None:
        for wire in events:
            if isinstance(wire.data, dict):  # a string (Chat's `[DONE]`) is an SSE-only marker
                await self.frame(wire.data)

    async def close_stream(self) -> None:
        pass

    async def fail(self, error: ApiError) -> None:
        await self.frame(ws_error_event(error))
