"""Every real Chat Completions request in the client captures decodes and re-encodes to Chat keeping its
messages and tools (the requests were captured from the real CLIs and SDKs: see tests/fixtures/captures/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import all_capture_records
from translation.codec import TargetOptions
from translation.openai_chat.request import decode_request, encode_request


def _chat_requests() -> list[Any]:
    return [
        pytest.param(record["body"], id=name)
        for name, record in all_capture_records()
        if record.get("kind") == "http" and str(record.get("path", "")).endswith("/chat/completions")
    ]


@pytest.mark.parametrize("body", _chat_requests())
def test_capture_decodes_and_reencodes_to_chat(body: dict[str, Any]) -> None:
    decoded = decode_request(body)
    assert decoded.warnings == ()
    encoded = encode_request(decoded.value, TargetOptions(model=body["model"])).value
    assert encoded["messages"] == body["messages"]
    assert encoded.get("tools") == body.get("tools")
    assert encoded.get("stream") == body.get("stream")
    if body.get("stream"):
        assert encoded["stream_options"]["include_usage"] is True
