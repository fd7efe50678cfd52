"""Golden vectors (tests/translation/vectors/<dialect>/): every codec against its own vectors, one test per direction
and kind, each case named `<dialect>/<vector>`. Also the loader, SSE replay at arbitrary byte boundaries and pytest
parametrisation other tests use (`load_vectors`, `vector_params`, `chunkings`, `replay`).

Layout and file format: translation/README.md ("Golden vectors").
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from translation import anthropic, bedrock, gemini, openai_chat, openai_responses
from translation.bedrock.eventstream import EventStreamParser, encode_message
from translation.codec import ClientContext, Codec, TargetOptions
from translation.ir import Request, Response, StreamEvent, from_json, to_json
from translation.sse import SSEEvent, SSEParser, encode_event

VECTORS = Path(__file__).parent / "vectors"
KINDS = ("request", "response", "stream")
DIRECTIONS = ("decode", "encode")


# -- loading -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    path: Path
    kind: str
    wire: Any
    ir: Any
    directions: tuple[str, ...]
    warnings: dict[str, list[str]]
    extra: dict[str, Any]  # anything else in the file: "target", "client", "request", "response", "description"

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    def warnings_for(self, direction: str) -> list[str]:
        return self.warnings.get(direction, [])

    def sse_bytes(self) -> bytes:
        """A stream vector's wire side as the bytes an upstream would send."""
        return b"".join(encode_event(e["data"], e.get("event")) for e in self.wire)

    def eventstream_bytes(self) -> bytes:
        """The same in AWS event-stream framing (Bedrock): exceptions are the events named `…Exception`."""
        return b"".join(
            encode_message(e["event"], _compact(e["data"]).encode(), _message_type(e["event"])) for e in self.wire
        )

    def wire_events(self) -> list[SSEEvent]:
        return [
            SSEEvent(e["data"] if isinstance(e["data"], str) else _compact(e["data"]), e.get("event"))
            for e in self.wire
        ]


def load_vectors(dialect: str, kind: str | None = None) -> list[Vector]:
    """The vectors in tests/translation/vectors/<dialect>/ (the folder name, e.g. `openai_chat`), of `kind` if given."""
    vectors = []
    for path in sorted((VECTORS / dialect).glob("*.json")):
        raw = json.loads(path.read_text())
        if kind is not None and raw["kind"] != kind:
            continue
        assert raw["kind"] in KINDS, f"{path}: kind must be one of {KINDS}"
        assert "__" in path.stem, f"{path}: name files <feature>__<variant>.json"
        known = {"kind", "wire", "ir", "directions", "warnings"}
        vectors.append(
            Vector(
                path=path,
                kind=raw["kind"],
                wire=raw.get("wire"),
                ir=raw.get("ir"),
                directions=tuple(raw.get("directions", DIRECTIONS)),
                warnings=raw.get("warnings", {}),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        )
    return vectors


def vector_params(dialect: str, kind: str, direction: str) -> list[Any]:
    """One pytest param per vector of `kind` that is checked in `direction`, named after its file."""
    return [pytest.param(v, id=v.name) for v in load_vectors(dialect, kind) if direction in v.directions]


def chunkings(data: bytes, seed: int = 0) -> Iterator[list[bytes]]:
    """Ways an upstream might cut `data` into network chunks: whole, byte by byte, every single split point,
    and a few random cuttings (seeded, so failures reproduce)."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for split in range(1, len(data)):
        yield [data[:split], data[split:]]
    rng = random.Random(seed)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def replay(
    make_decoder: Callable[[], Any], chunks: list[bytes], parser: SSEParser | EventStreamParser | None = None
) -> list[StreamEvent]:
    """Feed network chunks through the SSE parser (or `parser`) into a fresh decoder; all IR events, in order."""
    parser, decoder = parser or SSEParser(), make_decoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events.extend(decoder.feed(sse))
    for sse in parser.flush():
        events.extend(decoder.feed(sse))
    finished: list[StreamEvent] = decoder.finish()
    return events + finished


def _compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _message_type(event: str) -> str:
    return "exception" if event.endswith("Exception") else "event"


# -- the four codecs against their vectors -------------------------------------------------------------------


@dataclass(frozen=True)
class DialectVectors:
    """A dialect's codec, and what its vectors leave implicit."""

    codec: Codec
    default_model: str  # of the upstream request a stream vector without a "request" answers
    model_in_url: bool = False  # the request body has no model (Gemini names it in the URL): decode is told it
    eventstream: bool = False  # streams come in AWS event-stream framing (Bedrock), not SSE

    @property
    def folder(self) -> str:
        return self.codec.dialect.value.replace("-", "_")


DIALECTS = (
    DialectVectors(anthropic.CODEC, "claude-sonnet-4-5"),
    DialectVectors(gemini.CODEC, "gemini-2.5-flash", model_in_url=True),
    DialectVectors(openai_chat.CODEC, "m"),
    DialectVectors(openai_responses.CODEC, "gpt-5.5"),
    DialectVectors(bedrock.CODEC, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", model_in_url=True, eventstream=True),
)


def cases(kind: str, direction: str) -> list[Any]:
    """One case per vector of `kind` checked in `direction`, of every dialect, named `<dialect>/<vector>`."""
    return [
        pytest.param(dialect, vector, id=vector.name)
        for dialect in DIALECTS
        for vector in load_vectors(dialect.folder, kind)
        if direction in vector.directions
    ]


def upstream_request(vector: Vector) -> Request | None:
    """The IR request the upstream side answers, when the vector gives it (it drives unwrapping of CUSTOM and
    wrapped tools, and the model a response without one reports)."""
    return from_json(Request, vector.extra["request"]) if "request" in vector.extra else None


def stream_decoder(dialect: DialectVectors, vector: Vector) -> Any:
    request = upstream_request(vector) or Request(model=dialect.default_model, messages=())
    return dialect.codec.stream.StreamDecoder(request)


def client(vector: Vector) -> ClientContext:
    context = vector.extra["client"]
    return ClientContext(from_json(Request, context["request"]), context["created"])


def features(warnings: Any) -> list[str]:
    return [w.feature for w in warnings]


@pytest.mark.parametrize(("dialect", "vector"), cases("request", "decode"))
def test_decode_request(dialect: DialectVectors, vector: Vector) -> None:
    model = vector.ir["model"] if dialect.model_in_url else None
    result = dialect.codec.request.decode_request(vector.wire, model=model)
    assert to_json(result.value) == vector.ir
    assert features(result.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize(("dialect", "vector"), cases("request", "encode"))
def test_encode_request(dialect: DialectVectors, vector: Vector) -> None:
    target = TargetOptions(**vector.extra.get("target", {"model": vector.ir["model"]}))
    result = dialect.codec.request.encode_request(from_json(Request, vector.ir), target)
    assert result.value == vector.wire
    assert features(result.warnings) == vector.warnings_for("encode")


@pytest.mark.parametrize(("dialect", "vector"), cases("response", "decode"))
def test_decode_response(dialect: DialectVectors, vector: Vector) -> None:
    result = dialect.codec.response.decode_response(vector.wire, request=upstream_request(vector))
    assert to_json(result.value) == vector.ir
    assert features(result.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize(("dialect", "vector"), cases("response", "encode"))
def test_encode_response(dialect: DialectVectors, vector: Vector) -> None:
    result = dialect.codec.response.encode_response(from_json(Response, vector.ir), client(vector))
    assert result.value == vector.wire
    assert features(result.warnings) == vector.warnings_for("encode")


@pytest.mark.parametrize(("dialect", "vector"), cases("stream", "decode"))
def test_decode_stream_at_any_byte_boundary(dialect: DialectVectors, vector: Vector) -> None:
    data = vector.eventstream_bytes() if dialect.eventstream else vector.sse_bytes()
    for chunks in chunkings(data):
        decoder = stream_decoder(dialect, vector)
        parser = EventStreamParser() if dialect.eventstream else SSEParser()
        assert [to_json(e) for e in replay(functools.partial(_same, decoder), chunks, parser)] == vector.ir
        assert features(decoder.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize(("dialect", "vector"), cases("stream", "decode"))
def test_decode_stream_event_by_event(dialect: DialectVectors, vector: Vector) -> None:
    """The wire events fed to the decoder as parsed SSE events, without the byte-level parser in between."""
    decoder = stream_decoder(dialect, vector)
    events = [e for sse in vector.wire_events() for e in decoder.feed(sse)] + decoder.finish()
    assert [to_json(e) for e in events] == vector.ir
    assert features(decoder.warnings) == vector.warnings_for("decode")


@pytest.mark.parametrize(("dialect", "vector"), cases("stream", "encode"))
def test_encode_stream(dialect: DialectVectors, vector: Vector) -> None:
    encoder = dialect.codec.stream.StreamEncoder(client(vector))
    out = [wire for event in vector.ir for wire in encoder.feed(from_json(StreamEvent, event))]
    out += encoder.finish()
    assert [w.data for w in out] == [e["data"] for e in vector.wire]
    assert [w.event for w in out] == [e.get("event") for e in vector.wire]
    assert features(encoder.warnings) == vector.warnings_for("encode")


def _same(value: Any) -> Any:
    return value
