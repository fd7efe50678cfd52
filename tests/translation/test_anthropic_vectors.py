"""Golden vectors for the Anthropic codec (tests/translation/vectors/anthropic/), one test per direction and kind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.translation.vectorlib import Vector, chunkings, replay, vector_params
from translation.anthropic.request import decode_request, encode_request
from translation.anthropic.response import decode_response, encode_response
from translation.anthropic.stream import StreamDecoder, StreamEncoder
from translation.codec import ClientContext, TargetOptions
from translation.ir import Request, Response, StreamEvent, from_json, to_json

DIALECT = "anthropic"


def _request(vector: Vector) -> Request:
    """The IR request the upstream side was encoded from (drives unwrapping of CUSTOM/wrapped tools)."""
    return from_json(Request, vector.extra.get("request", {"model": "claude-sonnet-4-5", "messages": []}))


def _client(vector: Vector) -> ClientContext:
    client: dict[str, Any] = vector.extra["client"]
    return ClientContext(from_json(Request, client["request"]), client["created"])


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "decode"))
def test_decode_request(vector: Vector) -> None:
    result = decode_request(vector.wire)
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "encode"))
def test_encode_request(vector: Vector) -> None:
    result = encode_request(from_json(Request, vector.ir), TargetOptions(**vector.extra["target"]))
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "decode"))
def test_decode_response(vector: Vector) -> None:
    result = decode_response(vector.wire, request=_request(vector))
    assert to_json(result.value) == vector.ir
    assert [w.feature for w in result.warnings] == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "encode"))
def test_encode_response(vector: Vector) -> None:
    result = encode_response(from_json(Response, vector.ir), _client(vector))
    assert result.value == vector.wire
    assert [w.feature for w in result.warnings] == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "decode"))
def test_decode_stream_at_any_byte_boundary(vector: Vector) -> None:
    request = _request(vector)
    for chunks in chunkings(vector.sse_bytes()):
        events, warnings = _replay(request, chunks)
        assert [to_json(e) for e in events] == vector.ir
        assert warnings == vector.warnings_for("decode")


def _replay(request: Request, chunks: list[bytes]) -> tuple[list[StreamEvent], list[str]]:
    decoder = StreamDecoder(request)
    events = replay(lambda: decoder, chunks)
    return events, [w.feature for w in decoder.warnings]


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "encode"))
def test_encode_stream(vector: Vector) -> None:
    encoder = StreamEncoder(_client(vector))
    wire = [w for e in vector.ir for w in encoder.feed(from_json(StreamEvent, e))] + encoder.finish()
    assert [w.data for w in wire] == [e["data"] for e in vector.wire]
    assert [w.event for w in wire] == [e["event"] for e in vector.wire]
    assert [w.feature for w in encoder.warnings] == vector.warnings_for("encode")
