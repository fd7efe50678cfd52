from __future__ import annotations

import pytest

from translation.sse import SSEEvent, SSEParser, encode_event

# Mixed line endings, a comment, a multi-line data field, an id, a multi-byte character and a Gemini-style
# CRLF event: every byte boundary in here must be survivable.
SAMPLE = (
    b": keep-alive\n"
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n'
    b"\n"
    b"id: 7\r\n"
    b"data: line one\r\n"
    b"data: caf\xc3\xa9 \xf0\x9f\x98\x80\r\n"
    b"\r\n"
    b'data: {"gemini":true}\r\r'
    b"event: ping\n"
    b"\n"
    b"data\n"
    b"\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent(data='{"type":"message_start"}', event="message_start"),
    SSEEvent(data="line one\ncafé 😀", id="7"),
    SSEEvent(data='{"gemini":true}', id="7"),
    SSEEvent(data="", id="7"),
    SSEEvent(data="[DONE]", id="7"),
]


def parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.flush()


def test_it_parses_a_whole_stream() -> None:
    assert parse([SAMPLE]) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(SAMPLE)))
def test_every_single_split_point_gives_the_same_events(split: int) -> None:
    assert parse([SAMPLE[:split], SAMPLE[split:]]) == EXPECTED


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    assert parse([SAMPLE[i : i + 1] for i in range(len(SAMPLE))]) == EXPECTED


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [SSEEvent("a")]


def test_a_crlf_split_across_chunks_is_one_line_break() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == []  # the \n completes the \r: no blank line yet
    assert parser.feed(b"\r\n") == [SSEEvent("a")]


def test_flush_dispatches_a_last_event_without_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: x\ndata: tail") == []
    assert parser.flush() == [SSEEvent("tail", event="x")]


def test_events_without_data_are_not_dispatched() -> None:
    assert parse([b"event: lonely\n\ndata: b\n\n"]) == [SSEEvent("b")]


def test_encode_writes_json_compactly_with_an_event_line() -> None:
    assert encode_event({"type": "ping"}, "ping") == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode_event("[DONE]") == b"data: [DONE]\n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\r\nb", "x\ry", "", "é😀"])
def test_encode_then_parse_round_trips(data: str) -> None:
    normalised = data.replace("\r\n", "\n").replace("\r", "\n")
    assert parse([encode_event(data, "e")]) == [SSEEvent(normalised, event="e")]


def test_encoded_json_is_unicode_not_escaped() -> None:
    assert parse([encode_event({"t": "é"})])[0].json() == {"t": "é"}
