"""Every real Responses request in the client captures decodes and re-encodes to Responses unchanged in the
parts that matter (tools and input items), over HTTP and WebSocket alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from translation.codec import TargetOptions
from translation.openai_responses.request import decode_request, encode_request

CAPTURES = Path(__file__).resolve().parents[3] / "shared/clients/captures"


def _responses_bodies() -> list[Any]:
    if not CAPTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no client captures at {CAPTURES}"))]
    params = []
    for path in sorted(CAPTURES.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            body = record.get("body")
            if record.get("path") == "/v1/responses" and isinstance(body, dict) and "input" in body:
                params.append(pytest.param(body, id=f"{path.parent.name}/{path.stem}#{record['seq']}"))
    return params


@pytest.mark.parametrize("body", _responses_bodies())
def test_capture_decodes_and_reencodes_to_responses(body: dict[str, Any]) -> None:
    decoded = decode_request(body)
    assert decoded.warnings == ()
    encoded = encode_request(decoded.value, TargetOptions(model=body["model"]))
    assert encoded.warnings == ()
    assert encoded.value.get("tools") == body.get("tools")
    if isinstance(body["input"], str):
        assert encoded.value["input"][0]["content"][0]["text"] == body["input"]
    else:
        assert encoded.value["input"] == body["input"]
    # Everything else (WebSocket `type`/`generate`, client_metadata, include, store, …) survives as well.
    assert {k: v for k, v in encoded.value.items() if k != "input"} == {k: v for k, v in body.items() if k != "input"}
