"""Every Anthropic Messages request real clients sent decodes and re-encodes losslessly (the requests were captured
from the real CLIs and SDKs: see tests/fixtures/captures/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import all_capture_records
from translation.anthropic.request import decode_request, encode_request
from translation.codec import TargetOptions


def _anthropic_requests() -> list[Any]:
    return [
        pytest.param(record, id=name)
        for name, record in all_capture_records()
        if str(record.get("path", "")).startswith("/v1/messages")
    ]


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
