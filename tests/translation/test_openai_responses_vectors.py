"""Golden vectors for the OpenAI Responses codec (tests/translation/vectors/openai_responses/)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.translation.vectorlib import Vector, chunkings, replay, vector_params
from translation.codec import ClientContext, TargetOptions
from translation.ir import Request, Response, StreamEvent, from_json, to_json
from translation.openai_responses.request import decode_request, encode_request
from translation.openai_responses.response import decode_response, encode_response
from translation.openai_responses.stream import StreamDecoder, StreamEncoder

DIALECT = "openai_responses"


def _client(vector: Vector) -> ClientContext:
    client = vector.extra["client"]
    return ClientContext(from_json(Request, client["request"]), client["created"])


def _target(vector: Vector) -> TargetOptions:
    target: dict[str, Any] = vector.extra.get("target", {"model": "m"})
    return TargetOptions(**target)


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "decode"))
def test_decode_request(vector: Vector) -> None:
    result = decode_request(vector.wire)
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "encode"))
def test_encode_request(vector: Vector) -> None:
    result = encode_request(from_json(Request, vector.ir), _target(vector))
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "decode"))
def test_decode_response(vector: Vector) -> None:
    result = decode_response(vector.wire)
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "encode"))
def test_encode_response(vector: Vector) -> None:
    result = encode_response(from_json(Response, vector.ir), _client(vector))
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "decode"))
def test_decode_stream_at_any_byte_boundary(vector: Vector) -> None:
    request = Request(model="gpt-5.5", messages=())
    for chunks in chunkings(vector.sse_bytes()):
        events = replay(lambda: StreamDecoder(request), chunks)
        assert [to_json(e) for e in events] == vector.ir


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "encode"))
def test_encode_stream(vector: Vector) -> None:
    encoder = StreamEncoder(_client(vector))
    out = [wire for event in vector.ir for wire in encoder.feed(from_json(StreamEvent, event))]
    out += encoder.finish()
    assert [w.data for w in out] == [e["data"] for e in vector.wire]
    assert [w.event for w in out] == [e["event"] for e in vector.wire]
    assert [w.feature for w in encoder.warnings] == vector.warnings_for("encode")
