"""Focused Gemini request-codec behaviours (pitfalls.md numbers in the test names' docstrings)."""

from __future__ import annotations

from typing import Any

import pytest

from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.gemini.request import decode_request, encode_request
from translation.gemini.schema import from_gemini_schema, to_gemini_schema
from translation.ir import (
    Effort,
    FileSource,
    HostedTool,
    ImagePart,
    Message,
    NativePart,
    OpaqueSignature,
    ReasoningConfig,
    Request,
    Role,
    Sampling,
    SignatureKind,
    TextPart,
    ThinkingMode,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
)

TARGET = TargetOptions(model="gemini-2.5-flash")


def _request(*messages: Message, **fields: Any) -> Request:
    return Request(model="m", messages=messages or (Message(Role.USER, (TextPart("hi"),)),), **fields)


def _thinking(reasoning: ReasoningConfig) -> dict[str, Any]:
    body = encode_request(_request(reasoning=reasoning), TARGET).value
    return dict(body["generationConfig"]["thinkingConfig"])


def test_claude_code_style_schema_is_reduced_to_the_gemini_subset() -> None:
    """Pitfall 13: the keywords Gemini rejects are removed and reported, the structure survives."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["pending", "done"]},
                        "when": {"type": "string", "format": "date-time"},
                        "id": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
                        "count": {"type": "integer", "exclusiveMinimum": 0, "multipleOf": 2},
                    },
                    "required": ["status", "status"],
                },
            }
        },
        "required": ["todos"],
    }
    reduced, dropped = to_gemini_schema(schema)
    item = reduced["properties"]["todos"]["items"]
    assert reduced["type"] == "OBJECT" and item["type"] == "OBJECT"
    assert item["properties"]["when"] == {"type": "STRING", "format": "date-time"}
    assert item["properties"]["id"] == {"nullable": True, "type": "STRING", "minLength": 1}
    assert item["properties"]["count"] == {"type": "INTEGER"}
    assert item["required"] == ["status"]
    assert dropped == ["$schema", "additionalProperties", "exclusiveMinimum", "multipleOf"]


def test_recursive_refs_are_cut_instead_of_looping() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    reduced, dropped = to_gemini_schema(schema)
    assert reduced["type"] == "OBJECT"
    assert "$ref" in dropped


def test_gemini_schema_decodes_to_plain_json_schema() -> None:
    wire = {"type": "ARRAY", "items": {"type": "STRING", "nullable": True}, "propertyOrdering": ["a"]}
    assert from_gemini_schema(wire) == {"type": "array", "items": {"type": ["string", "null"]}}


def test_the_gemini_cli_declarations_go_upstream_as_parameters_json_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    body = {"contents": [], "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}]}
    request = decode_request(body, model="m").value
    assert encode_request(request, TARGET).value["tools"] == body["tools"]


def test_responses_without_ids_pair_with_calls_by_name_then_order() -> None:
    """Pitfall 9: repeated names answered in order; each result gets its own call's id."""
    body = {
        "contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"n": i}}} for i in range(3)]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "f", "response": {"output": str(i)}}} for i in range(3)],
            },
        ]
    }
    request = decode_request(body, model="m").value
    calls = [p for p in request.messages[0].parts if isinstance(p, ToolCallPart)]
    results = [p for p in request.messages[1].parts if isinstance(p, ToolResultPart)]
    assert [c.id for c in calls] == ["call_0", "call_1", "call_2"]
    assert [r.call_id for r in results] == ["call_0", "call_1", "call_2"]
    assert encode_request(request, TARGET).value == {"contents": body["contents"]}  # synthetic ids stay out


def test_function_response_error_sets_is_error_and_back() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"functionResponse": {"id": "c", "name": "f", "response": {"error": "boom"}}}]}
        ]
    }
    request = decode_request(body, model="m").value
    (result,) = request.messages[0].parts
    assert isinstance(result, ToolResultPart) and result.is_error and result.parts == (TextPart("boom"),)
    assert encode_request(request, TARGET).value == body


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (ReasoningConfig(mode=ThinkingMode.DISABLED), {"thinkingBudget": 0}),
        (ReasoningConfig(effort=Effort.NONE), {"thinkingBudget": 0}),
        (ReasoningConfig(mode=ThinkingMode.ADAPTIVE), {"thinkingBudget": -1}),
        (ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=4096), {"thinkingBudget": 4096}),
        (ReasoningConfig(effort=Effort.MINIMAL), {"thinkingLevel": "MINIMAL"}),
        (
            ReasoningConfig(effort=Effort.MEDIUM, include_thoughts=True),
            {"includeThoughts": True, "thinkingLevel": "MEDIUM"},
        ),
    ],
)
def test_reasoning_maps_to_one_of_budget_or_level(reasoning: ReasoningConfig, expected: dict[str, Any]) -> None:
    """Pitfall 37: one consistent table, never budget and level together."""
    assert _thinking(reasoning) == expected


@pytest.mark.parametrize(
    ("wire", "reasoning"),
    [
        ({"thinkingBudget": 0}, ReasoningConfig(mode=ThinkingMode.DISABLED)),
        ({"thinkingBudget": -1}, ReasoningConfig(mode=ThinkingMode.ADAPTIVE)),
        ({"thinkingBudget": 8192}, ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=8192)),
        ({"thinkingLevel": "low"}, ReasoningConfig(effort=Effort.LOW)),
    ],
)
def test_thinking_config_decodes(wire: dict[str, Any], reasoning: ReasoningConfig) -> None:
    body = {"contents": [], "generationConfig": {"thinkingConfig": wire}}
    assert decode_request(body, model="m").value.reasoning == reasoning


def test_more_than_one_candidate_is_refused() -> None:
    with pytest.raises(TranslationError) as error:
        encode_request(_request(sampling=Sampling(candidate_count=2)), TARGET)
    assert error.value.feature == "candidate_count"


def test_a_provider_file_id_is_refused() -> None:
    message = Message(Role.USER, (ImagePart(FileSource("file-abc")),))
    with pytest.raises(TranslationError) as error:
        encode_request(_request(message), TARGET)
    assert error.value.feature == "file_id"


def test_an_unmappable_hosted_tool_is_left_out_with_a_warning() -> None:
    tool = HostedTool("computer", Dialect.OPENAI_RESPONSES, {"type": "computer_use_preview"})
    result = encode_request(_request(tools=(tool,)), TARGET)
    assert "tools" not in result.value
    assert [w.feature for w in result.warnings] == ["hosted_tool:computer"]


def test_previous_response_id_is_refused() -> None:
    with pytest.raises(TranslationError):
        encode_request(_request(previous_response_id="resp_1"), TARGET)


def test_a_result_for_an_unknown_call_without_a_name_is_refused() -> None:
    message = Message(Role.USER, (ToolResultPart("call_x", (TextPart("1"),)),))
    with pytest.raises(TranslationError) as error:
        encode_request(_request(message), TARGET)
    assert error.value.feature == "tool_result_name"


def test_broken_arguments_are_sent_as_an_empty_object_with_a_warning() -> None:
    call = ToolCallPart.from_raw("c", "f", '{"a": ')
    result = encode_request(_request(Message(Role.ASSISTANT, (call,))), TARGET)
    assert result.value["contents"][0]["parts"] == [{"functionCall": {"id": "c", "name": "f", "args": {}}}]
    assert [w.feature for w in result.warnings] == ["tool_arguments"]


def test_foreign_native_items_are_dropped_with_a_warning() -> None:
    native = NativePart(Dialect.ANTHROPIC, {"type": "server_tool_use", "id": "srvtoolu_1"})
    message = Message(Role.ASSISTANT, (native, TextPart("done")))
    result = encode_request(_request(message), TARGET)
    assert result.value["contents"][0]["parts"] == [{"text": "done"}]
    assert [w.feature for w in result.warnings] == ["native_part:server_tool_use"]


def test_gemini_native_parts_round_trip() -> None:
    body = {"contents": [{"role": "model", "parts": [{"executableCode": {"language": "PYTHON", "code": "print(1)"}}]}]}
    request = decode_request(body, model="m").value
    assert isinstance(request.messages[0].parts[0], NativePart)
    assert encode_request(request, TARGET).value == body


def test_results_come_first_in_a_merged_user_turn() -> None:
    """Pitfall 6: Claude Code adds reminder text next to tool results; the results answer the previous turn."""
    call = ToolCallPart.from_object("c", "f", {})
    user = Message(Role.USER, (TextPart("<system-reminder>"), ToolResultPart("c", (TextPart("ok"),))))
    body = encode_request(
        _request(Message(Role.USER, (TextPart("go"),)), Message(Role.ASSISTANT, (call,)), user), TARGET
    ).value
    assert [list(p) for p in body["contents"][2]["parts"]] == [["functionResponse"], ["text"]]


def test_too_many_stop_sequences_are_cut_with_a_warning() -> None:
    result = encode_request(_request(sampling=Sampling(stop_sequences=tuple("abcdef"))), TARGET)
    assert result.value["generationConfig"]["stopSequences"] == list("abcde")
    assert [w.feature for w in result.warnings] == ["stop_sequences"]


def test_an_empty_text_part_is_not_sent_once_its_foreign_signature_is_dropped() -> None:
    """Pitfall 18: an empty part only exists to carry a signature Gemini can use."""
    signature = OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "sig")
    message = Message(Role.ASSISTANT, (TextPart("", signature=signature), TextPart("ok")))
    result = encode_request(_request(message), TARGET)
    assert result.value["contents"][0]["parts"] == [{"text": "ok"}]
    assert [w.feature for w in result.warnings] == ["reasoning_signature"]
