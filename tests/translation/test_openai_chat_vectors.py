"""Golden vectors for the OpenAI Chat Completions codec (tests/translation/vectors/openai_chat/)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.translation.vectorlib import Vector, chunkings, replay, vector_params
from translation.codec import ClientContext, TargetOptions
from translation.ir import Request, Response, StreamEvent, from_json, to_json
from translation.openai_chat.request import decode_request, encode_request
from translation.openai_chat.response import decode_response, encode_response
from translation.openai_chat.stream import StreamDecoder, StreamEncoder

DIALECT = "openai_chat"


def _request(vector: Vector) -> Request:
    """The IR request the upstream side was encoded from (drives unwrapping of CUSTOM tools)."""
    return from_json(Request, vector.extra.get("request", {"model": "m", "messages": []}))


def _client(vector: Vector) -> ClientContext:
    client = vector.extra["client"]
    return ClientContext(from_json(Request, client["request"]), client["created"])


def _features(warnings: Any) -> list[str]:
    return [w.feature for w in warnings]


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "decode"))
def test_decode_request(vector: Vector) -> None:
    result = decode_request(vector.wire)
    assert to_json(result.value) == vector.ir
    assert _features(result.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "request", "encode"))
def test_encode_request(vector: Vector) -> None:
    result = encode_request(from_json(Request, vector.ir), TargetOptions(**vector.extra["target"]))
    assert result.value == vector.wire
    assert _features(result.warnings) == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "decode"))
def test_decode_response(vector: Vector) -> None:
    result = decode_response(vector.wire, request=_request(vector))
    assert to_json(result.value) == vector.ir
    assert _features(result.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "response", "encode"))
def test_encode_response(vector: Vector) -> None:
    result = encode_response(from_json(Response, vector.ir), _client(vector))
    assert result.value == vector.wire
    assert _features(result.warnings) == vector.warnings_for("encode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "decode"))
def test_decode_stream_at_any_byte_boundary(vector: Vector) -> None:
    request = _request(vector)
    decoders: list[StreamDecoder] = []

    def make() -> StreamDecoder:
        decoders.append(StreamDecoder(request))
        return decoders[-1]

    for chunks in chunkings(vector.sse_bytes()):
        assert [to_json(e) for e in replay(make, chunks)] == vector.ir
    assert _features(decoders[0].warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize("vector", vector_params(DIALECT, "stream", "encode"))
def test_encode_stream(vector: Vector) -> None:
    encoder = StreamEncoder(_client(vector))
    out = [wire for event in vector.ir for wire in encoder.feed(from_json(StreamEvent, event))]
    out += encoder.finish()
    assert [w.data for w in out] == [e["data"] for e in vector.wire]
    assert [w.event for w in out] == [e.get("event") for e in vector.wire]
    assert _features(encoder.warnings) == vector.warnings_for("encode")
