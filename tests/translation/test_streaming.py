from __future__ import annotations

from translation.ir import (
    BlockStop,
    ResponseStart,
    ResponseStop,
    StopReason,
    StreamEvent,
    TextDelta,
    TextStart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from translation.streaming import BlockSequencer, ResponseBuilder


def sequence(events: list[StreamEvent]) -> list[list[StreamEvent]]:
    sequencer = BlockSequencer()
    return [sequencer.feed(e) for e in events]


def test_sequential_blocks_pass_through_immediately() -> None:
    events: list[StreamEvent] = [
        TextStart(0),
        TextDelta(0, "a"),
        BlockStop(0),
        ToolCallStart(1, "c", "f"),
        BlockStop(1),
    ]
    assert sequence(events) == [[e] for e in events]


def test_a_block_started_while_another_is_open_waits_for_it() -> None:
    a, b = ToolCallStart(0, "a", "f"), ToolCallStart(1, "b", "f")
    out = sequence([a, ToolArgsDelta(0, "{"), b, ToolArgsDelta(1, "{}"), ToolArgsDelta(0, "}"), BlockStop(0)])
    assert out == [
        [a],
        [ToolArgsDelta(0, "{")],
        [],
        [],
        [ToolArgsDelta(0, "}")],
        [BlockStop(0), b, ToolArgsDelta(1, "{}")],
    ]
    # once released, the held block streams live
    sequencer = BlockSequencer()
    held: list[StreamEvent] = [a, b, BlockStop(0)]
    for event in held:
        sequencer.feed(event)
    assert sequencer.feed(ToolArgsDelta(1, "x")) == [ToolArgsDelta(1, "x")]


def test_indices_are_renumbered_in_emission_order() -> None:
    out = sequence([TextStart(5), ToolCallStart(9, "a", "f"), BlockStop(9), BlockStop(5)])
    flat = [e for batch in out for e in batch]
    assert flat == [TextStart(0), BlockStop(0), ToolCallStart(1, "a", "f"), BlockStop(1)]


def test_the_response_stop_releases_everything_held() -> None:
    stop = ResponseStop(StopReason.END_TURN)
    out = sequence([TextStart(0), TextStart(1), TextDelta(1, "x"), UsageUpdate(Usage(output_tokens=1)), stop])
    assert out[3] == [UsageUpdate(Usage(output_tokens=1))]
    assert out[4] == [TextStart(1), TextDelta(1, "x"), stop]


def test_builder_keeps_broken_tool_json_raw() -> None:
    builder = ResponseBuilder()
    events: list[StreamEvent] = [
        ResponseStart("r", "m"),
        ToolCallStart(0, "c", "f"),
        ToolArgsDelta(0, '{"a":'),
        BlockStop(0),
    ]
    for event in events:
        builder.feed(event)
    response = builder.response()
    assert response.parts == (ToolCallPart("c", "f", '{"a":', None),)
    assert response.stop is StopReason.ERROR  # never saw ResponseStop
