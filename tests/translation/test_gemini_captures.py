"""Every Gemini request a real client sent decodes and re-encodes to Gemini (the requests were captured from the
real CLIs and SDKs: see tests/fixtures/captures/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import all_capture_records
from translation.codec import TargetOptions
from translation.gemini.request import decode_request, encode_request
from translation.ir import Role, TextPart, ToolCallPart, ToolResultPart


def _gemini_captures() -> list[Any]:
    return [
        pytest.param(record, id=name)
        for name, record in all_capture_records()
        if "/models/" in record.get("path", "")
        and record["path"].endswith(("generateContent", "streamGenerateContent"))
    ]


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
