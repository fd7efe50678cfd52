"""Every real Responses request in the client captures decodes and re-encodes to Responses unchanged in the
parts that matter (tools and input items), over HTTP and WebSocket alike (the requests were captured from the
real CLIs and SDKs: see tests/fixtures/captures/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import all_capture_records
from translation.codec import TargetOptions
from translation.openai_responses.request import decode_request, encode_request


def _responses_bodies() -> list[Any]:
    return [
        pytest.param(body, id=name)
        for name, record in all_capture_records()
        if record.get("path") == "/v1/responses" and isinstance(body := record.get("body"), dict) and "input" in body
    ]


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
