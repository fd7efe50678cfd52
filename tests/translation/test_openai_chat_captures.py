"""Every real Chat Completions request in the client captures decodes and re-encodes to Chat keeping its
messages and tools (/work/shared/clients/captures, read at test time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from translation.codec import TargetOptions
from translation.openai_chat.request import decode_request, encode_request

CAPTURES = Path(__file__).resolve().parents[3] / "shared/clients/captures"


def _chat_requests() -> list[Any]:
    if not CAPTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no client captures at {CAPTURES}"))]
    params = []
    for path in sorted(CAPTURES.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("kind") == "http" and str(record.get("path", "")).endswith("/chat/completions"):
                params.append(pytest.param(record["body"], id=f"{path.parent.name}/{path.stem}#{record['seq']}"))
    return params


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
