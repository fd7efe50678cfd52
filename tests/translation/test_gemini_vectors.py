"""Gemini golden vectors (tests/translation/vectors/gemini/): one test per direction and kind."""

from __future__ import annotations

import pytest

from tests.translation.vectorlib import Vector, chunkings, replay, vector_params
from translation.codec import ClientContext, TargetOptions
from translation.gemini.request import decode_request, encode_request
from translation.gemini.response import decode_response, encode_response
from translation.gemini.stream import StreamDecoder, StreamEncoder
from translation.ir import Request, Response, StreamEvent, from_json, to_json

DEFAULT_MODEL = "gemini-2.5-flash"


def _upstream_request(vector: Vector) -> Request:
    return from_json(Request, vector.extra.get("request", {"model": DEFAULT_MODEL, "messages": []}))


def _client(vector: Vector) -> ClientContext:
    client = vector.extra["client"]
    return ClientContext(from_json(Request, client["request"]), client["created"])


@pytest.mark.parametrize("vector", vector_params("gemini", "request", "decode"))
def test_decode_request(vector: Vector) -> None:
    result = decode_request(vector.wire, model=vector.ir["model"])
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params("gemini", "request", "encode"))
def test_encode_request(vector: Vector) -> None:
    target = TargetOptions(**vector.extra.get("target", {"model": vector.ir["model"]}))
    result = encode_request(from_json(Request, vector.ir), target)
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params("gemini", "response", "decode"))
def test_decode_response(vector: Vector) -> None:
    request = _upstream_request(vector) if "request" in vector.extra else None
    result = decode_response(vector.wire, request=request)
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params("gemini", "response", "encode"))
def test_encode_response(vector: Vector) -> None:
    result = encode_response(from_json(Response, vector.ir), _client(vector))
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params("gemini", "stream", "decode"))
def test_decode_stream_at_any_byte_boundary(vector: Vector) -> None:
    request = _upstream_request(vector)
    for chunks in chunkings(vector.sse_bytes()):
        events = replay(lambda: StreamDecoder(request), chunks)
        assert [to_json(e) for e in events] == vector.ir


@pytest.mark.parametrize("vector", vector_params("gemini", "stream", "decode"))
def test_decode_stream_warnings(vector: Vector) -> None:
    decoder = StreamDecoder(_upstream_request(vector))
    for event in vector.wire_events():
        decoder.feed(event)
    decoder.finish()
    assert [w.feature for w in decoder.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params("gemini", "stream", "encode"))
def test_encode_stream(vector: Vector) -> None:
    encoder = StreamEncoder(_client(vector))
    out = [wire for event in vector.ir for wire in encoder.feed(from_json(StreamEvent, event))]
    out += encoder.finish()
    assert [w.data for w in out] == [e["data"] for e in vector.wire]
    assert [w.event for w in out] == [e.get("event") for e in vector.wire]
    assert [w.feature for w in encoder.warnings] == vector.warnings_for("encode")
