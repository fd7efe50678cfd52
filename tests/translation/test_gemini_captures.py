"""Every Gemini request a real client sent (/work/shared/clients/captures) decodes and re-encodes to Gemini."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from translation.codec import TargetOptions
from translation.gemini.request import decode_request, encode_request
from translation.ir import Role, TextPart, ToolCallPart, ToolResultPart

CAPTURES = Path(__file__).resolve().parents[3] / "shared/clients/captures"


def _gemini_captures() -> list[Any]:
    if not CAPTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no client captures at {CAPTURES}"))]
    params = []
    for path in sorted(CAPTURES.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            route = record.get("path", "")
            if "/models/" in route and route.endswith(("generateContent", "streamGenerateContent")):
                params.append(pytest.param(record, id=f"{path.parent.name}/{path.stem}#{record['seq']}"))
    return params


@pytest.mark.parametrize("record", _gemini_captures())
def test_capture_round_trips_through_the_ir(record: dict[str, Any]) -> None:
    body = record["body"]
    model = record["path"].split("/models/")[1].split(":")[0]
    decoded = decode_request(body, model=model)
    request = decoded.value
    assert request.model == model
    assert decoded.warnings == ()
    encoded = encode_request(request, TargetOptions(model=model)).value
    assert encoded.get("tools") == body.get("tools")
    assert encoded.get("systemInstruction") == body.get("systemInstruction")
    assert encoded.get("generationConfig") == body.get("generationConfig")
    # Consecutive user turns may merge; the parts themselves survive in order.
    assert [p for c in encoded["contents"] for p in c["parts"]] == [p for c in body["contents"] for p in c["parts"]]
    calls = [p for m in request.messages if m.role is Role.ASSISTANT for p in m.parts if isinstance(p, ToolCallPart)]
    results = [p for m in request.messages if m.role is Role.USER for p in m.parts if isinstance(p, ToolResultPart)]
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert all(c.signature is None for c in calls), "the CLI's dummy signature is not reasoning state"
    assert all(isinstance(p, TextPart) for p in request.system)
