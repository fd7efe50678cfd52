"""AWS event-stream framing (translation/bedrock/eventstream.py) against botocore's own parser, both ways: what the
proxy frames for a Bedrock client is what boto3 reads, and what Bedrock (or botocore-compatible framing) sends is
what the proxy reads, however the bytes are cut."""

from __future__ import annotations

import base64
import binascii
import json
import struct

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import EventStreamError as BotocoreEventStreamError

from tests.translation.bedrocklib import parse_invoke_stream, parse_stream
from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock.eventstream import (
    EventStreamError,
    EventStreamParser,
    encode_invoke_chunk,
    encode_message,
    encode_wire_event,
    invoke_stream_event,
)
from translation.codec import WireEvent
from translation.ir import Message, Request, Role, StopReason, TextPart
from translation.sse import EventTooLarge, SSEEvent
from translation.streaming import ResponseBuilder


def _botocore_messages(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


# An independent encoder written from the format description (binascii, not zlib; every header type), checked
# against botocore below, so the parser is not only ever fed its own encoder's bytes.
def _header(name: str, value_type: int, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([value_type]) + value


def _string(value: str) -> bytes:
    return struct.pack(">H", len(value.encode())) + value.encode()


def _frame(headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def _bedrock_event(event_type: str, payload: dict[str, object]) -> bytes:
    headers = (
        _header(":event-type", 7, _string(event_type))
        + _header(":content-type", 7, _string("application/json"))
        + _header(":message-type", 7, _string("event"))
    )
    return _frame(headers, json.dumps(payload).encode())


ALL_HEADER_TYPES = (
    _header("t", 0, b"")
    + _header("f", 1, b"")
    + _header("byte", 2, b"\x07")
    + _header("short", 3, struct.pack(">h", -3))
    + _header("int", 4, struct.pack(">i", 70000))
    + _header("long", 5, struct.pack(">q", 2**40))
    + _header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02")
    + _header("time", 8, struct.pack(">q", 1_700_000_000_000))
    + _header("uuid", 9, bytes(range(16)))
    + _header(":event-type", 7, _string("contentBlockDelta"))
    + _header(":message-type", 7, _string("event"))
)

# A Converse stream as Bedrock sends it, padding field `p` included.
STREAM = [
    _bedrock_event("messageStart", {"p": "abcdefgh", "role": "assistant"}),
    _bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hé ☃"}, "p": "abcd"}),
    _bedrock_event("contentBlockStop", {"contentBlockIndex": 0, "p": "abcdefghijk"}),
    _frame(ALL_HEADER_TYPES, b'{"contentBlockIndex":1,"delta":{"text":"x"}}'),
    _bedrock_event("messageStop", {"stopReason": "end_turn", "p": "ab"}),
]
EXPECTED = [
    SSEEvent('{"p": "abcdefgh", "role": "assistant"}', "messageStart"),
    SSEEvent('{"contentBlockIndex": 0, "delta": {"text": "H\\u00e9 \\u2603"}, "p": "abcd"}', "contentBlockDelta"),
    SSEEvent('{"contentBlockIndex": 0, "p": "abcdefghijk"}', "contentBlockStop"),
    SSEEvent('{"contentBlockIndex":1,"delta":{"text":"x"}}', "contentBlockDelta"),
    SSEEvent('{"stopReason": "end_turn", "p": "ab"}', "messageStop"),
]


def test_the_independent_frames_are_what_botocore_reads() -> None:
    messages = _botocore_messages(b"".join(STREAM))
    assert [json.loads(payload) for _, payload in messages] == [json.loads(e.data) for e in EXPECTED]
    headers = messages[3][0]
    assert headers["t"] is True and headers["f"] is False
    assert (headers["short"], headers["int"], headers["long"], headers["bytes"]) == (-3, 70000, 2**40, b"\x00\x01\x02")


def test_parser_reads_a_whole_stream() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"".join(STREAM)) == EXPECTED
    assert parser.flush() == [] and parser.pending_bytes == 0


def test_every_cut_of_the_stream_gives_the_same_events() -> None:
    data = b"".join(STREAM)
    for cut in range(len(data) + 1):
        parser = EventStreamParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == EXPECTED, cut


def test_byte_by_byte_and_two_cuts_within_one_message() -> None:
    parser = EventStreamParser()
    assert [e for byte in b"".join(STREAM) for e in parser.feed(bytes([byte]))] == EXPECTED
    message = STREAM[1]
    for first in range(0, len(message), 3):
        for second in range(first, len(message) + 1, 5):
            parser = EventStreamParser()
            got = parser.feed(message[:first]) + parser.feed(message[first:second]) + parser.feed(message[second:])
            assert got == [EXPECTED[1]], (first, second)


def test_a_truncated_stream_leaves_bytes_pending() -> None:
    parser = EventStreamParser()
    data = b"".join(STREAM[:2])
    assert parser.feed(data[:-5]) == EXPECTED[:1]
    assert parser.flush() == []
    assert parser.pending_bytes == len(STREAM[1]) - 5


@pytest.mark.parametrize("position", [2, 9, 20, -10, -2], ids=["length", "prelude-crc", "header", "payload", "crc"])
def test_damaged_bytes_are_an_error_like_botocore(position: int) -> None:
    damaged = bytearray(STREAM[1])
    damaged[position] ^= 0x01
    data = STREAM[0] + bytes(damaged) + STREAM[2]
    parser = EventStreamParser()
    with pytest.raises(EventStreamError) as caught:
        parser.feed(data)
    assert caught.value.events == EXPECTED[:1]  # what came before the damage is still delivered
    with pytest.raises(EventStreamError):
        parser.feed(STREAM[2])  # spent: the byte stream cannot be resynchronised
    if position in (9, -10, -2):
        with pytest.raises(ChecksumMismatch):
            _botocore_messages(bytes(damaged))


def test_a_message_beyond_the_limit_is_refused_from_its_prelude() -> None:
    big = _bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x" * 5000}})
    parser = EventStreamParser(max_event_bytes=4096)
    with pytest.raises(EventTooLarge) as caught:
        parser.feed(STREAM[0] + big[:12])  # only the prelude of the big one has arrived
    assert caught.value.events == EXPECTED[:1]
    with pytest.raises(EventTooLarge) as again:
        parser.feed(big[12:])
    assert again.value.events == []
    assert EventStreamParser(max_event_bytes=len(big)).feed(big)[0].event == "contentBlockDelta"


def test_a_large_message_in_many_chunks() -> None:
    text = "y" * 300_000
    message = _bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
    parser = EventStreamParser()
    events = [e for i in range(0, len(message), 1000) for e in parser.feed(message[i : i + 1000])]
    assert [json.loads(e.data)["delta"]["text"] for e in events] == [text]


def test_exception_and_error_messages() -> None:
    exception = _frame(
        _header(":exception-type", 7, _string("throttlingException"))
        + _header(":content-type", 7, _string("application/json"))
        + _header(":message-type", 7, _string("exception")),
        b'{"message":"Too many tokens, please wait before trying again."}',
    )
    error = _frame(
        _header(":error-code", 7, _string("InternalFailure"))
        + _header(":error-message", 7, _string("boom"))
        + _header(":message-type", 7, _string("error")),
        b"",
    )
    assert EventStreamParser().feed(exception + error) == [
        SSEEvent('{"message":"Too many tokens, please wait before trying again."}', "throttlingException"),
        SSEEvent('{"message": "boom"}', "InternalFailure"),
    ]


# -- the encoder -----------------------------------------------------------------------------------------------


def test_encoded_messages_are_what_botocore_reads() -> None:
    payload = json.dumps({"contentBlockIndex": 0, "delta": {"text": "Hé ☃"}}, ensure_ascii=False).encode()
    data = encode_message("contentBlockDelta", payload) + encode_message("validationException", b"{}", "exception")
    assert _botocore_messages(data) == [
        (
            {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"},
            payload,
        ),
        (
            {
                ":exception-type": "validationException",
                ":content-type": "application/json",
                ":message-type": "exception",
            },
            b"{}",
        ),
    ]
    assert EventStreamParser().feed(data) == [
        SSEEvent(payload.decode(), "contentBlockDelta"),
        SSEEvent("{}", "validationException"),
    ]


def test_wire_events_reach_a_boto3_user() -> None:
    frames = [
        encode_wire_event(WireEvent({"role": "assistant"}, "messageStart")),
        encode_wire_event(WireEvent({"contentBlockIndex": 0, "delta": {"text": "hi"}}, "contentBlockDelta")),
        encode_wire_event(WireEvent({"message": "slow down"}, "throttlingException")),
    ]
    events = parse_stream(frames)
    assert next(events) == {"messageStart": {"role": "assistant"}}
    assert next(events) == {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "hi"}}}
    with pytest.raises(BotocoreEventStreamError) as caught:
        next(events)
    assert caught.value.response["Error"] == {"Code": "throttlingException", "Message": "slow down"}


# -- InvokeModel streams: Anthropic events inside `chunk` events ------------------------------------------------

ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
                                          "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                          "stop_sequence": None, "usage": {"input_tokens": 8, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi ☃"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 3}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 8, "outputTokenCount": 3,
                                                                  "invocationLatency": 420, "firstByteLatency": 300}},
]  # fmt: skip


def test_an_invoke_stream_decodes_with_the_anthropic_codec() -> None:
    body = b"".join(
        encode_message("chunk", json.dumps({"bytes": base64.b64encode(json.dumps(e).encode()).decode()}).encode())
        for e in ANTHROPIC_EVENTS
    )
    assert [json.loads(e["chunk"]["bytes"]) for e in parse_invoke_stream([body])] == ANTHROPIC_EVENTS
    request = Request(model="anthropic.claude", messages=(Message(Role.USER, (TextPart("hi"),)),))
    decoder = ANTHROPIC.stream.StreamDecoder(request)
    parser = EventStreamParser()
    events = [
        e
        for cut in (body[:100], body[100:])
        for sse in parser.feed(cut)
        for e in decoder.feed(invoke_stream_event(sse))
    ]
    builder = ResponseBuilder()
    for event in events:
        builder.feed(event)
    response = builder.response()
    assert (response.id, response.parts, response.stop) == ("msg_bdrk_1", (TextPart("Hi ☃"),), StopReason.END_TURN)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (8, 3)


def test_anthropic_events_framed_for_an_invoke_stream_client() -> None:
    frames = [encode_invoke_chunk(WireEvent(e, e["type"])) for e in ANTHROPIC_EVENTS]
    frames.append(encode_invoke_chunk(WireEvent({"message": "slow"}, "throttlingException")))
    events = parse_invoke_stream(frames)
    assert [json.loads(next(events)["chunk"]["bytes"]) for _ in ANTHROPIC_EVENTS] == ANTHROPIC_EVENTS
    with pytest.raises(BotocoreEventStreamError) as caught:
        next(events)
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    sse = [invoke_stream_event(e) for e in EventStreamParser().feed(b"".join(frames))]
    assert [e.event for e in sse] == [e["type"] for e in ANTHROPIC_EVENTS] + ["throttlingException"]


def test_a_chunk_that_is_not_base64_json_is_an_error() -> None:
    with pytest.raises(EventStreamError):
        invoke_stream_event(SSEEvent('{"bytes": "not base64!"}', "chunk"))
