"""AWS event-stream framing (`application/vnd.amazon.eventstream`), which Bedrock's `converse-stream` and
`invoke-with-response-stream` answers use instead of SSE: an incremental parser and an encoder.

A message is `[total length u32][headers length u32][prelude CRC32 u32][headers][payload][message CRC32 u32]`
(big-endian; the prelude CRC covers the first 8 bytes, the message CRC everything before it). Headers are
`[name length u8][name][type u8][value]`; Bedrock uses string headers (type 7, `[length u16][utf-8]`):
`:message-type` (`event`, `exception` or `error`), `:event-type` / `:exception-type`, `:content-type`.

The parser turns each message into an `SSEEvent` so the rest of the proxy handles both framings alike: `event`
is the `:event-type` (`contentBlockDelta`), or the `:exception-type` for an exception (`throttlingException`),
or the `:error-code` for an error message; `data` is the JSON payload text (`{"message": …}` for an error
message, whose text rides in a header). It has the same shape and guarantees as `translation.sse.SSEParser`:
`feed(bytes) -> list[SSEEvent]` with chunk boundaries anywhere, time linear in the bytes fed, and at most
`max_event_bytes` of one message held (`EventTooLarge` beyond, known from the prelude before the body arrives).
A damaged frame (CRC mismatch, impossible lengths) raises `EventStreamError`: after it the byte stream cannot be
resynchronised, so the parser is spent.

Implemented here with `zlib.crc32` (the translation package takes only the standard library); the tests check it
against botocore's own `EventStreamBuffer` both ways.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

from translation.codec import WireEvent
from translation.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEEvent

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">III")
_PRELUDE_LENGTH = _PRELUDE.size  # 12
_CRC_LENGTH = 4
_MIN_MESSAGE = _PRELUDE_LENGTH + _CRC_LENGTH
_MAX_HEADERS_LENGTH = 128 * 1024  # what botocore accepts
_STRING = 7
# Fixed-size header value types: boolean true/false, byte, short, integer, long, (6, 7 variable), timestamp, uuid.
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (a CRC mismatch, impossible lengths, a malformed header).
    `events`: the complete messages the same `feed` had parsed before it."""

    def __init__(self, message: str, events: list[SSEEvent] | None = None) -> None:
        super().__init__(message)
        self.events = events or []


class EventStreamParser:
    def __init__(self, max_event_bytes: int | None = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._failed: Exception | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished message held: non-zero after the last feed means the stream was cut."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._failed is not None:  # spent: raise again, without the events already delivered
            if isinstance(self._failed, EventTooLarge):
                raise EventTooLarge(self._failed.limit, [])
            raise EventStreamError(str(self._failed))
        self._buffer += chunk
        events: list[SSEEvent] = []
        buffer = self._buffer
        start = 0
        try:
            while len(buffer) - start >= _PRELUDE_LENGTH:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer, start)
                if zlib.crc32(memoryview(buffer)[start : start + 8]) != prelude_crc:
                    raise EventStreamError("event stream prelude CRC mismatch", events)
                if total < _MIN_MESSAGE or headers_length > min(total - _MIN_MESSAGE, _MAX_HEADERS_LENGTH):
                    raise EventStreamError(f"event stream message lengths are impossible ({total}, {headers_length})")
                if self.max_event_bytes is not None and total > self.max_event_bytes:
                    raise EventTooLarge(self.max_event_bytes, events)
                if len(buffer) - start < total:
                    break
                view = memoryview(buffer)[start : start + total]
                (message_crc,) = struct.unpack_from(">I", view, total - _CRC_LENGTH)
                if zlib.crc32(view[: total - _CRC_LENGTH]) != message_crc:
                    raise EventStreamError("event stream message CRC mismatch", events)
                headers = _parse_headers(bytes(view[_PRELUDE_LENGTH : _PRELUDE_LENGTH + headers_length]))
                payload = bytes(view[_PRELUDE_LENGTH + headers_length : total - _CRC_LENGTH])
                view.release()
                events.append(_event(headers, payload))
                start += total
        except (EventStreamError, EventTooLarge) as exc:
            if isinstance(exc, EventStreamError):
                exc.events = events
            self._failed, self._buffer = exc, bytearray()
            raise
        del buffer[:start]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream. An unfinished message cannot be read and is dropped: `pending_bytes` tells it was there
        (the stream decoder then reports the stream as cut short, having seen no end)."""
        return []


def _parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    at, end = 0, len(data)
    try:
        while at < end:
            name_length = data[at]
            name = data[at + 1 : at + 1 + name_length].decode("utf-8")
            at += 1 + name_length
            value_type = data[at]
            at += 1
            if value_type in (6, _STRING):
                (length,) = struct.unpack_from(">H", data, at)
                raw = data[at + 2 : at + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("event stream header value overruns its headers")
                at += 2 + length
                headers[name] = raw.decode("utf-8") if value_type == _STRING else raw
            elif value_type in _FIXED_SIZES:
                size = _FIXED_SIZES[value_type]
                headers[name] = value_type == 0 if size == 0 else data[at : at + size]
                at += size
            else:
                raise EventStreamError(f"event stream header {name!r} has unknown type {value_type}")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event stream headers: {exc}") from exc
    if at != end:
        raise EventStreamError("event stream headers overrun their length")
    return headers


def _event(headers: dict[str, Any], payload: bytes) -> SSEEvent:
    message_type = headers.get(":message-type", "event")
    text = payload.decode("utf-8", "replace") or "{}"
    if message_type == "exception":
        return SSEEvent(data=text, event=str(headers.get(":exception-type", "exception")))
    if message_type == "error":
        message = str(headers.get(":error-message", ""))
        return SSEEvent(data=json.dumps({"message": message}), event=str(headers.get(":error-code", "error")))
    return SSEEvent(data=text, event=str(headers.get(":event-type", "")) or None)


# -- encoding ------------------------------------------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return bytes([len(raw_name)]) + raw_name + bytes([_STRING]) + struct.pack(">H", len(raw_value)) + raw_value


def encode_message(event_type: str, payload: bytes, message_type: str = "event") -> bytes:
    """One event-stream message: `message_type` "event" (`:event-type` = `event_type`) or "exception"
    (`:exception-type` = `event_type`), with a JSON payload, as Bedrock sends them and botocore reads them."""
    type_header = ":exception-type" if message_type == "exception" else ":event-type"
    headers = (
        _string_header(type_header, event_type)
        + _string_header(":content-type", "application/json")
        + _string_header(":message-type", message_type)
    )
    total = _MIN_MESSAGE + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def is_exception(event_type: str) -> bool:
    """Whether a Converse stream member is an exception (`throttlingException`) rather than an event."""
    return event_type.endswith("Exception")


def encode_wire_event(wire: WireEvent) -> bytes:
    """A Bedrock `StreamEncoder`'s `WireEvent` framed for the client: what SSE's `WireEvent.sse()` is for the
    other dialects. Exceptions (`event` ending in `Exception`) go out as `:message-type: exception`."""
    event_type = wire.event or ""
    data = wire.data if isinstance(wire.data, str) else json.dumps(wire.data, ensure_ascii=False, separators=(",", ":"))
    return encode_message(event_type, data.encode("utf-8"), "exception" if is_exception(event_type) else "event")


# -- InvokeModel streams: the model's own events, base64 inside `chunk` events ---------------------------------


def invoke_stream_event(event: SSEEvent) -> SSEEvent:
    """A message of `invoke-with-response-stream` as the model's own stream event: a `chunk` carries
    `{"bytes": base64 of one event of the model's API}` (for Claude, one Anthropic Messages event, whose `type`
    becomes the SSE event name), so the Anthropic codec can decode it. Exceptions pass through unchanged; a chunk
    that is not such a wrapper raises `EventStreamError`."""
    if event.event != "chunk":
        return event
    try:
        inner = base64.b64decode(json.loads(event.data)["bytes"], validate=True).decode("utf-8")
        kind = json.loads(inner).get("type")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EventStreamError(f"an invoke stream chunk is not base64 JSON: {exc}") from exc
    return SSEEvent(inner, kind if isinstance(kind, str) else None)


def encode_invoke_chunk(wire: WireEvent) -> bytes:
    """A model stream event (e.g. an Anthropic `StreamEncoder`'s `WireEvent`) framed as Bedrock's
    `invoke-with-response-stream` sends it: a `chunk` event with the event's JSON base64-encoded in `bytes`.
    Exception names (`…Exception`) go out as exception messages with the payload as it is."""
    event_type = wire.event or ""
    data = wire.data if isinstance(wire.data, str) else json.dumps(wire.data, ensure_ascii=False, separators=(",", ":"))
    if is_exception(event_type):
        return encode_message(event_type, data.encode("utf-8"), "exception")
    payload = json.dumps({"bytes": base64.b64encode(data.encode("utf-8")).decode("ascii")}, separators=(",", ":"))
    return encode_message("chunk", payload.encode("ascii"))
