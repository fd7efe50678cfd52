"""Every Anthropic Messages request real clients sent (shared/clients/captures) decodes and re-encodes losslessly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from translation.anthropic.request import decode_request, encode_request
from translation.codec import TargetOptions

CAPTURES = Path(__file__).resolve().parents[3] / "shared/clients/captures"


def _anthropic_requests() -> list[Any]:
    if not CAPTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no client captures at {CAPTURES}"))]
    params = []
    for path in sorted(CAPTURES.glob("*/*.jsonl")):
        for line_number, line in enumerate(path.read_text().splitlines(), start=1):
            record = json.loads(line)
            if str(record.get("path", "")).startswith("/v1/messages"):
                params.append(pytest.param(record, id=f"{path.parent.name}/{path.stem}:{line_number}"))
    return params


@pytest.mark.parametrize("record", _anthropic_requests())
def test_capture_round_trips(record: dict[str, Any]) -> None:
    body = record["body"]
    decoded = decode_request(body)
    assert decoded.warnings == ()
    # Claude Code sends {role: system} messages under its mid-conversation-system beta: keep them as such.
    target = TargetOptions(body["model"], default_max_output_tokens=8192, flags={"anthropic_system_messages": True})
    encoded = encode_request(decoded.value, target)
    assert encoded.warnings == ()
    for field in ("messages", "system", "tools", "tool_choice", "thinking", "output_config", "metadata"):
        assert encoded.value.get(field) == body.get(field), field
    if record["path"] == "/v1/messages":  # count_tokens bodies have no max_tokens; the encoder must add one
        assert encoded.value == body
