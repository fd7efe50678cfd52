"""The vector mechanism on codec-independent vectors (tests/translation/vectors/neutral/).

Codec tests follow the same pattern with a wire side: see translation/README.md.
"""

from __future__ import annotations

import pytest

from tests.translation.test_vectors import Vector, chunkings, load_vectors, vector_params
from translation.ir import Request, Response, StreamEvent, from_json, to_json
from translation.sse import SSEParser, encode_event
from translation.streaming import ResponseBuilder, response_events


@pytest.mark.parametrize("vector", [pytest.param(v, id=v.name) for v in load_vectors("neutral", "request")])
def test_request_ir_survives_json(vector: Vector) -> None:
    request = from_json(Request, vector.ir)
    assert to_json(request) == vector.ir
    assert from_json(Request, to_json(request)) == request


@pytest.mark.parametrize("vector", [pytest.param(v, id=v.name) for v in load_vectors("neutral", "stream")])
def test_stream_ir_folds_into_the_vector_response(vector: Vector) -> None:
    events = [from_json(StreamEvent, e) for e in vector.ir]
    builder = ResponseBuilder()
    for event in events:
        builder.feed(event)
    assert to_json(builder.response()) == vector.extra["response"]
    assert [to_json(e) for e in events] == vector.ir


@pytest.mark.parametrize("vector", [pytest.param(v, id=v.name) for v in load_vectors("neutral", "stream")])
def test_stream_ir_survives_sse_at_any_byte_boundary(vector: Vector) -> None:
    """What codec stream vectors do with their wire side: encode, cut anywhere, parse, compare."""
    wire = b"".join(encode_event(e, e["type"]) for e in vector.ir)
    for chunks in chunkings(wire):
        parser = SSEParser()
        parsed = [sse.json() for chunk in chunks for sse in parser.feed(chunk)] + [s.json() for s in parser.flush()]
        assert parsed == vector.ir


def test_a_folded_response_replays_as_an_equivalent_stream() -> None:
    (vector,) = load_vectors("neutral", "stream")
    response = from_json(Response, vector.extra["response"])
    builder = ResponseBuilder()
    for event in response_events(response):
        builder.feed(event)
    assert builder.response() == response


def test_vector_params_filter_on_direction() -> None:
    assert vector_params("neutral", "request", "decode") == []  # the neutral vectors have no wire side
