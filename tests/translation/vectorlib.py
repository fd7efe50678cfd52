"""Golden vectors: loading, SSE replay at arbitrary byte boundaries, pytest parametrisation.

Layout and file format: translation/README.md ("Golden vectors"). Codec tests use it like this:

    @pytest.mark.parametrize("vector", vector_params("anthropic", "request", "decode"))
    def test_decode_request(vector: Vector) -> None:
        result = decode_request(vector.wire)
        assert to_json(result.value) == vector.ir
        assert [w.feature for w in result.warnings] == vector.warnings_for("decode")
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from translation.ir import StreamEvent
from translation.sse import SSEEvent, SSEParser, encode_event

VECTORS = Path(__file__).parent / "vectors"
KINDS = ("request", "response", "stream")
DIRECTIONS = ("decode", "encode")


@dataclass(frozen=True)
class Vector:
    path: Path
    kind: str
    wire: Any
    ir: Any
    directions: tuple[str, ...]
    warnings: dict[str, list[str]]
    extra: dict[str, Any]  # anything else in the file: "target", "client", "response", "description"

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    def warnings_for(self, direction: str) -> list[str]:
        return self.warnings.get(direction, [])

    def sse_bytes(self) -> bytes:
        """A stream vector's wire side as the bytes an upstream would send."""
        return b"".join(encode_event(e["data"], e.get("event")) for e in self.wire)

    def wire_events(self) -> list[SSEEvent]:
        return [
            SSEEvent(e["data"] if isinstance(e["data"], str) else _compact(e["data"]), e.get("event"))
            for e in self.wire
        ]


def load_vectors(dialect: str, kind: str | None = None) -> list[Vector]:
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


def replay(make_decoder: Callable[[], Any], chunks: list[bytes]) -> list[StreamEvent]:
    """Feed network chunks through the SSE parser into a fresh decoder; all IR events, in order."""
    parser, decoder = SSEParser(), make_decoder()
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
