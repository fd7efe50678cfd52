"""docs/compatibility.md's matrix is checked against the codecs: each row is a probe request, translated for
each upstream format; the cell must say what really happens (carried, a named warning, or a named refusal)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from translation.codec import TargetOptions
from translation.ir import TranslationError

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
TARGETS = ["anthropic", "openai-chat", "openai-responses", "gemini", "bedrock"]
FOLDERS = {
    "anthropic": "anthropic",
    "openai-chat": "openai_chat",
    "openai-responses": "openai_responses",
    "gemini": "gemini",
    "bedrock": "bedrock",
}
# The upstream model each column is for: Bedrock serves many model families, and reasoning is asked for in each
# family's own terms; the column is for Claude on Bedrock.
MODELS = {"bedrock": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}

USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CALL = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
}


def anthropic(**fields: Any) -> tuple[str, dict[str, Any]]:
    return "anthropic", {"model": "m", "max_tokens": 100, "messages": [USER], **fields}


def chat(**fields: Any) -> tuple[str, dict[str, Any]]:
    return "openai-chat", {"model": "m", "messages": [USER], **fields}


def result(*content: dict[str, Any], is_error: bool = False) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": list(content), "is_error": is_error}
    return {"role": "user", "content": [block]}


# Each probe: the client dialect and the body a client of it sends.
PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "system prompt": anthropic(system=[{"type": "text", "text": "Be brief."}]),
    "system message mid-conversation": anthropic(
        messages=[
            USER,
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Now be formal."},
            USER,
        ]
    ),
    "image, base64": anthropic(
        messages=[
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}],
            }
        ]
    ),
    "image, URL": anthropic(
        messages=[
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}],
            }
        ]
    ),
    "PDF, base64": anthropic(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
                    }
                ],
            }
        ]
    ),
    "tools and tool_choice any": anthropic(tools=[WEATHER], tool_choice={"type": "any"}),
    "parallel tool calls disabled": anthropic(
        tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True}
    ),
    "tool result": anthropic(tools=[WEATHER], messages=[USER, CALL, result({"type": "text", "text": "22C"})]),
    "tool result marked as error": anthropic(
        tools=[WEATHER], messages=[USER, CALL, result({"type": "text", "text": "no such city"}, is_error=True)]
    ),
    "tool result with an image": anthropic(
        tools=[WEATHER],
        messages=[
            USER,
            CALL,
            result({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
        ],
    ),
    "stop sequences": anthropic(stop_sequences=["END"]),
    "temperature (anthropic-version 2023-06-01)": anthropic(temperature=0.5),
    "top_k": anthropic(top_k=5),
    "thinking budget": anthropic(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096),
    "signed thinking in history": anthropic(
        messages=[
            USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "c2lnbmF0dXJl"},
                    {"type": "text", "text": "Hi"},
                ],
            },
            USER,
        ]
    ),
    "JSON schema output": anthropic(
        output_config={
            "format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
        }
    ),
    "web search server tool": anthropic(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    "code execution server tool": anthropic(tools=[{"type": "code_execution_20250825", "name": "code_execution"}]),
    "freeform (custom) tool": (
        "openai-responses",
        {
            "model": "m",
            "input": "Hi",
            "tools": [
                {
                    "type": "custom",
                    "name": "apply_patch",
                    "description": "Patch files",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
                }
            ],
        },
    ),
    "seed": chat(seed=7),
    "system message mid-conversation (Chat client)": chat(
        messages=[USER, {"role": "assistant", "content": "Hello"}, {"role": "system", "content": "Be formal."}, USER]
    ),
    "JSON object output (Chat client)": chat(response_format={"type": "json_object"}),
    "reasoning effort (Chat client)": chat(reasoning_effort="high"),
    "logprobs (Chat client)": chat(logprobs=True),
    "several choices (n > 1)": chat(n=2),
    "previous_response_id": ("openai-responses", {"model": "m", "input": "Hi", "previous_response_id": "resp_1"}),
}


def outcome(probe: str, target: str) -> str:
    dialect, body = PROBES[probe]
    if dialect == target:
        return "pass-through"  # same API on both sides: the request goes upstream as sent
    decoder = importlib.import_module(f"translation.{FOLDERS[dialect]}.request")
    encoder = importlib.import_module(f"translation.{FOLDERS[target]}.request")
    try:
        decoded = decoder.decode_request(body, model="m")
        target_options = TargetOptions(model=MODELS.get(target, "m"), default_max_output_tokens=1024)
        encoded = encoder.encode_request(decoded.value, target_options)
    except TranslationError as exc:
        return f"refused `{exc.feature}`"
    warnings = sorted({w.feature for w in (*decoded.warnings, *encoded.warnings)})
    return "warns " + ", ".join(f"`{w}`" for w in warnings) if warnings else "yes"


def documented() -> dict[str, dict[str, str]]:
    """The matrix rows of docs/compatibility.md: feature -> target -> cell."""
    rows: dict[str, dict[str, str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(TARGETS) + 1 and cells[0] in PROBES:
            rows[cells[0]] = dict(zip(TARGETS, cells[1:], strict=True))
    return rows


def test_every_probe_is_documented():
    assert sorted(documented()) == sorted(PROBES)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_documented_cell_matches_the_codecs(probe, target):
    cell = documented().get(probe, {}).get(target, "(missing)")
    assert re.sub(r"\s+", " ", cell) == outcome(probe, target)
