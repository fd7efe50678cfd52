from __future__ import annotations

import pytest

from translation.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEEvent, SSEParser, encode_event

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


# -- linear time and a cap per event (a broken or hostile upstream must not stall or swell the proxy) --------


def _feed_in_chunks(parser: SSEParser, data: bytes, size: int) -> list[SSEEvent]:
    return [e for i in range(0, len(data), size) for e in parser.feed(data[i : i + size])]


@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n", b"\r\r"], ids=["lf", "crlf", "cr"])
def test_a_long_event_fed_in_small_chunks_is_scanned_once(separator: bytes) -> None:
    # 4 MiB in 1 KiB chunks: rescanning the unfinished line on every chunk would search ~8 GiB.
    payload = b"data: " + b"x" * (4 << 20) + separator
    parser = SSEParser()
    events = _feed_in_chunks(parser, payload, 1024)
    assert [len(e.data) for e in events] == [4 << 20]
    assert parser.scanned_bytes <= len(payload)


def test_many_events_in_one_chunk_are_scanned_once() -> None:
    payload = b"".join(b"event: e\ndata: %d\r\n\r\n" % i for i in range(20_000))
    parser = SSEParser()
    events = parser.feed(payload)
    assert [e.data for e in events] == [str(i) for i in range(20_000)]
    assert parser.scanned_bytes <= len(payload)


def test_an_event_over_the_cap_raises_with_the_events_before_it() -> None:
    parser = SSEParser(max_event_bytes=1000)
    with pytest.raises(EventTooLarge) as caught:
        parser.feed(b"data: first\n\ndata: " + b"y" * 2000)  # no line break yet: the unfinished line counts
    assert caught.value.events == [SSEEvent("first")]
    assert caught.value.limit == 1000
    with pytest.raises(EventTooLarge):  # spent: nothing more is buffered
        parser.feed(b"\n\ndata: later\n\n")
    assert parser.flush() == []


def test_many_data_lines_count_toward_the_cap() -> None:
    parser = SSEParser(max_event_bytes=1000)
    with pytest.raises(EventTooLarge) as caught:
        _feed_in_chunks(parser, b"data: 0123456789\n" * 200, 64)
    assert caught.value.events == []


def test_events_up_to_the_cap_pass_and_the_count_restarts_with_each_event() -> None:
    event = b"data: " + b"z" * 994 + b"\n\n"  # exactly 1000 bytes of data line
    parser = SSEParser(max_event_bytes=1000)
    events = _feed_in_chunks(parser, event * 50, 300)
    assert len(events) == 50 and all(len(e.data) == 994 for e in events)


def test_no_cap_when_none() -> None:
    parser = SSEParser(max_event_bytes=None)
    assert [len(e.data) for e in parser.feed(b"data: " + b"a" * (DEFAULT_MAX_EVENT_BYTES + 1) + b"\n\n")] == [
        DEFAULT_MAX_EVENT_BYTES + 1
    ]
