"""Focused checks of the Anthropic request codec: refusals, limits and the pitfalls vectors do not pin down."""

from __future__ import annotations

from typing import Any

import pytest

from translation.anthropic.request import decode_request, encode_request
from translation.anthropic.tools import repair_schema
from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.ir import (
    Effort,
    FunctionTool,
    HostedTool,
    Message,
    ReasoningConfig,
    Request,
    Role,
    Sampling,
    TextPart,
    ThinkingMode,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    TranslationError,
)

TARGET = TargetOptions("claude-sonnet-4-5", default_max_output_tokens=8192)


def _request(*messages: Message, **fields: Any) -> Request:
    return Request(model="m", messages=messages or (Message(Role.USER, (TextPart("hi"),)),), **fields)


def _features(result: Any) -> list[str]:
    return [w.feature for w in result.warnings]


def test_max_tokens_is_required_without_a_default() -> None:
    with pytest.raises(TranslationError) as error:
        encode_request(_request(), TargetOptions("claude-sonnet-4-5"))
    assert error.value.feature == "max_tokens"


def test_max_tokens_is_clamped_to_the_upstream_cap() -> None:
    result = encode_request(_request(max_output_tokens=64000), TargetOptions("c", max_output_tokens_cap=8192))
    assert result.value["max_tokens"] == 8192
    assert _features(result) == ["max_tokens"]


def test_budget_that_does_not_fit_under_the_cap_is_lowered() -> None:
    reasoning = ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=30000)
    result = encode_request(_request(reasoning=reasoning, max_output_tokens=4000), TargetOptions("c", None, 16000))
    assert result.value["max_tokens"] == 16000
    assert result.value["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert _features(result) == ["thinking_budget"]


def test_a_small_budget_is_raised_to_anthropics_minimum() -> None:
    reasoning = ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=100)
    body = encode_request(_request(reasoning=reasoning, max_output_tokens=4000), TARGET).value
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(
    ("reasoning", "thinking", "effort"),
    [
        (ReasoningConfig(effort=Effort.NONE), {"type": "disabled"}, None),
        (ReasoningConfig(effort=Effort.LOW), {"type": "enabled", "budget_tokens": 2048}, None),
        (ReasoningConfig(mode=ThinkingMode.ADAPTIVE, effort=Effort.MINIMAL), {"type": "adaptive"}, "low"),
        (
            ReasoningConfig(mode=ThinkingMode.ADAPTIVE, include_thoughts=False),
            {"type": "adaptive", "display": "omitted"},
            None,
        ),
    ],
)
def test_reasoning_config_mapping(reasoning: ReasoningConfig, thinking: dict[str, Any], effort: str | None) -> None:
    body = encode_request(_request(reasoning=reasoning), TARGET).value
    assert body["thinking"] == thinking
    assert body.get("output_config", {}).get("effort") == effort


def test_between_tools_thinking_survives_an_anthropic_round_trip() -> None:
    wire = {
        "model": "c",
        "max_tokens": 10,
        "thinking": {"type": "between_tools"},
        "messages": [{"role": "user", "content": "x"}],
    }
    request = decode_request(wire).value
    assert request.reasoning is None
    assert encode_request(request, TargetOptions("c")).value == wire


def test_temperature_is_clamped_on_the_legacy_version() -> None:
    result = encode_request(_request(sampling=Sampling(temperature=1.6)), TARGET)
    assert result.value["temperature"] == 1
    assert _features(result) == ["temperature"]


@pytest.mark.parametrize(
    ("fields", "feature"),
    [
        ({"sampling": Sampling(candidate_count=2)}, "candidate_count"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ],
)
def test_refusals_name_the_feature(fields: dict[str, Any], feature: str) -> None:
    with pytest.raises(TranslationError) as error:
        encode_request(_request(**fields), TARGET)
    assert error.value.feature == feature


def test_an_unmappable_hosted_tool_is_left_out_with_a_warning() -> None:
    tool = HostedTool("code_interpreter", Dialect.OPENAI_RESPONSES, {"type": "code_interpreter"})
    result = encode_request(_request(tools=(tool,)), TARGET)
    assert "tools" not in result.value
    assert _features(result) == ["hosted_tool:code_interpreter"]


def test_parallel_calls_disabled_without_a_tool_choice() -> None:
    tools = (FunctionTool("f", None, {"type": "object"}),)
    body = encode_request(_request(tools=tools, parallel_tool_calls=False), TARGET).value
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_choice_none_carries_no_parallel_flag_and_no_tools_means_no_choice() -> None:
    tools = (FunctionTool("f", None, {"type": "object"}),)
    choice = ToolChoice(ToolChoiceMode.NONE)
    assert encode_request(_request(tools=tools, tool_choice=choice, parallel_tool_calls=False), TARGET).value[
        "tool_choice"
    ] == {"type": "none"}
    assert "tool_choice" not in encode_request(_request(tool_choice=choice), TARGET).value


@pytest.mark.parametrize(
    ("schema", "repaired", "wrapped"),
    [
        (None, {"type": "object", "properties": {}}, False),
        (
            {"properties": {"a": {}}, "required": ["a", "a"]},
            {"type": "object", "properties": {"a": {}}, "required": ["a"]},
            False,
        ),
        (
            {"type": "string"},
            {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
            True,
        ),
        (
            {"type": "object", "oneOf": [{}]},
            {"type": "object", "properties": {"input": {"type": "object", "oneOf": [{}]}}, "required": ["input"]},
            True,
        ),
    ],
)
def test_schema_repair(schema: Any, repaired: dict[str, Any], wrapped: bool) -> None:
    assert repair_schema(schema) == (repaired, wrapped)


def test_messages_with_nothing_left_are_skipped_and_turns_merged() -> None:
    """An assistant turn holding only empty text disappears (pitfall 18); the user turns around it merge."""
    body = encode_request(
        _request(
            Message(Role.USER, (TextPart("a"),)),
            Message(Role.ASSISTANT, (TextPart(""),)),
            Message(Role.USER, (TextPart("b"),)),
        ),
        TARGET,
    ).value
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_three_chat_tool_messages_become_one_user_turn() -> None:
    calls = tuple(ToolCallPart.from_raw(f"call_{i}", "f", "{}") for i in range(3))
    results = tuple(Message(Role.USER, (ToolResultPart(f"call_{i}", (TextPart(str(i)),)),)) for i in range(3))
    body = encode_request(
        _request(Message(Role.USER, (TextPart("go"),)), Message(Role.ASSISTANT, calls), *results), TARGET
    )
    turns = body.value["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in turns[2]["content"]] == ["call_0", "call_1", "call_2"]


def test_metadata_user_id_plain_string_is_the_end_user() -> None:
    wire = {"model": "c", "max_tokens": 1, "metadata": {"user_id": "u-1"}, "messages": []}
    assert decode_request(wire).value.user == "u-1"


def test_model_argument_overrides_the_body() -> None:
    assert decode_request({"model": "a", "messages": []}, model="b").value.model == "b"


def test_invalid_role_is_refused() -> None:
    with pytest.raises(TranslationError) as error:
        decode_request({"model": "a", "messages": [{"role": "tool", "content": "x"}]})
    assert error.value.param == "messages[0].role"
