"""Bedrock Converse requests through the IR: a Bedrock client's body round trips exactly, other clients' requests
become bodies botocore validates against the bedrock-runtime service model and serializes to the same JSON (what
boto3 would send), and a Bedrock client's request reaches the other upstreams with its meaning intact."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.validate import validate_parameters

from tests.translation.bedrocklib import SERVICE, check_request, to_params
from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock import CODEC as BEDROCK
from translation.catalog import read_token_count, token_count, token_count_request
from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.gemini import CODEC as GEMINI
from translation.ir import (
    CacheHint,
    Effort,
    FunctionTool,
    ImagePart,
    InlineSource,
    Message,
    ReasoningConfig,
    ReasoningPart,
    Request,
    Role,
    TextPart,
    ThinkingMode,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    TranslationError,
    UrlSource,
)
from translation.openai_chat import CODEC as CHAT

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()

# What boto3 sends for a Claude Code-like turn (blobs base64 in the JSON), with every modelled feature.
FULL_BODY: dict[str, Any] = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"text": "What is in these?"},
                {"image": {"format": "png", "source": {"bytes": PNG}}},
                {"document": {"format": "pdf", "name": "report", "source": {"bytes": PDF}}},
                {"cachePoint": {"type": "default"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "Let me look.", "signature": "EqQBCkYIBxgCKkBsig"}}},
                {"reasoningContent": {"redactedContent": base64.b64encode(b"opaque").decode()}},
                {"text": "I will read the file."},
                {"toolUse": {"toolUseId": "tooluse_abc123", "name": "read_file", "input": {"path": "/tmp/a.txt"}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_abc123",
                        "content": [{"text": "hello"}, {"json": {"size": 5}}],
                        "status": "error",
                    }
                },
                {"text": "Go on."},
            ],
        },
    ],
    "system": [{"text": "You are terse."}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
    "inferenceConfig": {"maxTokens": 4096, "temperature": 1, "topP": 0.9, "stopSequences": ["END"]},
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "read_file",
                    "description": "Read a file",
                    "inputSchema": {"json": {"type": "object", "properties": {"path": {"type": "string"}}}},
                }
            },
            {"cachePoint": {"type": "default"}},
        ],
        "toolChoice": {"tool": {"name": "read_file"}},
    },
    "additionalModelRequestFields": {
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "top_k": 40,
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    },
    "requestMetadata": {"team": "search"},
    "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
    "outputConfig": {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": '{"type": "object"}', "name": "answer"}},
        }
    },
}


def test_the_full_body_is_what_boto3_sends() -> None:
    check_request(FULL_BODY)


def test_decode_reads_every_feature() -> None:
    decoded = BEDROCK.request.decode_request(FULL_BODY, model=CLAUDE)
    request = decoded.value
    assert decoded.warnings == ()
    assert request.model == CLAUDE
    assert request.system == (TextPart("You are terse.", CacheHint(3600)),)
    user, assistant, results = request.messages
    assert user.parts[1] == ImagePart(InlineSource("image/png", PNG))
    assert user.parts[2].cache == CacheHint()  # the cachePoint after the document
    thinking, redacted, _, call = assistant.parts
    assert isinstance(thinking, ReasoningPart) and thinking.text == "Let me look."
    assert thinking.signature is not None and thinking.signature.value == "EqQBCkYIBxgCKkBsig"
    assert isinstance(redacted, ReasoningPart) and redacted.text == ""
    assert call == ToolCallPart.from_object("tooluse_abc123", "read_file", {"path": "/tmp/a.txt"})
    result = results.parts[0]
    assert isinstance(result, ToolResultPart) and result.is_error
    assert [p.text for p in result.parts if isinstance(p, TextPart)] == ["hello", '{"size":5}']
    assert request.tools[0].cache == CacheHint()
    assert request.tool_choice is not None and request.tool_choice.mode is ToolChoiceMode.NAMED
    assert (request.max_output_tokens, request.sampling.top_k, request.sampling.stop_sequences) == (4096, 40, ("END",))
    assert request.reasoning == ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=2048)
    assert request.metadata == {"team": "search"}
    assert request.output_format is not None and request.output_format.schema == {"type": "object"}


def test_same_dialect_round_trip_is_exact() -> None:
    request = BEDROCK.request.decode_request(FULL_BODY, model=CLAUDE).value
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model=CLAUDE))
    assert encoded.warnings == ()
    assert encoded.value == FULL_BODY


ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 4000},
    "tools": [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search"},
    ],
    "tool_choice": {"type": "any"},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
                {"type": "text", "text": "Weather in Paris?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need a tool.", "signature": "anthropic-sig"},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "Sunny"}],
        },
    ],
}


def test_an_anthropic_request_encoded_for_bedrock() -> None:
    request = ANTHROPIC.request.decode_request(ANTHROPIC_BODY).value
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model=CLAUDE))
    body = encoded.value
    check_request(body)
    assert body["system"] == [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"][0] == {"image": {"format": "jpeg", "source": {"bytes": PNG}}}
    # Anthropic's signature is not Bedrock's: the thinking block is left out of the history, with a warning.
    assert body["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}}
    ]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "toolu_01A", "content": [{"text": "Sunny"}]}}
    ]
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 4000}}
    # maxTokens must exceed the thinking budget: the answer keeps the 1024 tokens the client asked for.
    assert body["inferenceConfig"] == {"maxTokens": 5024}
    assert "modelId" not in body and "model" not in body
    assert [w.feature for w in encoded.warnings] == ["reasoning_signature", "hosted_tool:web_search"]


def test_an_openai_chat_request_encoded_for_bedrock() -> None:
    chat = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/webp;base64,{PNG}"}}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1|x", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": '{"a":2}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1|x", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "user", "content": "and?"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "none",
        "max_completion_tokens": 300,
        "temperature": 1.5,
        "seed": 7,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "high",
    }
    request = CHAT.request.decode_request(chat).value
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model="amazon.nova-pro-v1:0"))
    body = encoded.value
    check_request(body, model="amazon.nova-pro-v1:0")
    assert body["system"] == [
        {"text": "Answer in JSON."},
        {"text": "Respond with a single JSON object and nothing else."},
    ]
    # Roles alternate: the two tool results and the text share one user turn, results first; ids made valid.
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [next(iter(b)) for b in body["messages"][2]["content"]] == ["toolResult", "toolResult", "text"]
    assert body["messages"][1]["content"][0]["toolUse"]["toolUseId"] == "call_1_x"
    assert body["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "call_1_x"
    # No "none" choice in Converse, and the history uses tools: the tools stay, the choice is auto.
    assert "toolChoice" not in body["toolConfig"]
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 1}
    assert body["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}
    }
    features = [w.feature for w in encoded.warnings]
    assert {"json_object", "tool_choice", "temperature", "seed"} <= set(features)


def _request(**fields: Any) -> Request:
    return Request(model="m", messages=(Message(Role.USER, (TextPart("hi"),)),), **fields)


@pytest.mark.parametrize(
    ("model", "flags", "additional"),
    [
        (CLAUDE, {}, {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", {}, {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ("us.amazon.nova-2-lite-v1:0", {}, {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}),
        ("openai.gpt-oss-120b-1:0", {}, {"reasoning_effort": "low"}),
        (
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            {"bedrock_model_family": "anthropic"},
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        ),
    ],
)
def test_reasoning_per_model_family(model: str, flags: dict[str, Any], additional: dict[str, Any]) -> None:
    request = _request(reasoning=ReasoningConfig(effort=Effort.LOW), max_output_tokens=100)
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model=model, flags=flags))
    check_request(encoded.value, model=model)
    assert encoded.value["additionalModelRequestFields"] == additional
    assert encoded.warnings == ()


def test_reasoning_for_an_unknown_family_is_dropped_with_a_warning() -> None:
    request = _request(reasoning=ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=5000))
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model="meta.llama3-70b-instruct-v1:0"))
    assert "additionalModelRequestFields" not in encoded.value
    assert [w.feature for w in encoded.warnings] == ["reasoning"]


def test_a_request_wide_cache_hint_and_no_tools_for_choice_none() -> None:
    request = _request(
        cache=CacheHint(3600),
        tools=(FunctionTool("f", parameters={"type": "object"}),),
        tool_choice=ToolChoice(ToolChoiceMode.NONE),
    )
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model=CLAUDE))
    check_request(encoded.value)
    assert encoded.value["messages"] == [
        {"role": "user", "content": [{"text": "hi"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]}
    ]
    assert "toolConfig" not in encoded.value
    assert [w.feature for w in encoded.warnings] == ["tool_choice"]


@pytest.mark.parametrize(
    ("part", "feature"),
    [
        (ImagePart(InlineSource("image/bmp", PNG)), "image_media_type"),
        (ImagePart(UrlSource("https://x/a.png")), "image_url"),
    ],
)
def test_images_bedrock_cannot_take_are_refused(part: Any, feature: str) -> None:
    request = Request(model="m", messages=(Message(Role.USER, (part,)),))
    with pytest.raises(TranslationError) as caught:
        BEDROCK.request.encode_request(request, TargetOptions(model=CLAUDE))
    assert caught.value.feature == feature


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": 5}]}]}, "messages[0].content[0].text"),
        ({"messages": [], "inferenceConfig": {"maxTokens": "10"}}, "inferenceConfig.maxTokens"),
    ],
)
def test_wrong_types_are_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        BEDROCK.request.decode_request(body, model="m")
    assert caught.value.param == param


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        BEDROCK.request.decode_request({"messages": [{"role": "tool", "content": []}]}, model="m")
    assert caught.value.param == "messages[0].role"


def test_a_bedrock_request_reaches_anthropic_and_gemini_upstreams() -> None:
    request = BEDROCK.request.decode_request(FULL_BODY, model=CLAUDE).value
    encoded = ANTHROPIC.request.encode_request(request, TargetOptions(model="claude-sonnet-4-5"))
    anthropic = encoded.value
    assert anthropic["system"] == [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    # Bedrock's reasoning signatures are not Anthropic's: the signed turn loses its thinking, so Anthropic must run
    # this tool-use turn without thinking (it rejects a tool turn that does not open with a thinking block).
    assert anthropic["thinking"] == {"type": "disabled"}
    assert {"reasoning_signature", "thinking"} <= {w.feature for w in encoded.warnings}
    assert anthropic["top_k"] == 40 and anthropic["stop_sequences"] == ["END"]
    assert anthropic["tool_choice"] == {"type": "tool", "name": "read_file"}
    assert anthropic["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    tool_result = anthropic["messages"][2]["content"][0]
    assert tool_result["tool_use_id"] == "tooluse_abc123" and tool_result["is_error"] is True
    gemini = GEMINI.request.encode_request(request, TargetOptions(model="gemini-2.5-pro")).value
    assert gemini["generationConfig"]["maxOutputTokens"] == 4096
    assert gemini["contents"][1]["parts"][-1]["functionCall"]["args"] == {"path": "/tmp/a.txt"}


def test_a_tool_history_without_tools_gets_them_declared() -> None:
    """Bedrock rejects toolUse/toolResult blocks without a toolConfig; clients drop `tools` when summarising."""
    request = ANTHROPIC.request.decode_request(
        {
            "model": "m",
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"}]},
                {"role": "user", "content": "Summarise."},
            ],
        }
    ).value
    encoded = BEDROCK.request.encode_request(request, TargetOptions(model=CLAUDE))
    check_request(encoded.value)
    assert encoded.value["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]
    }
    assert [w.feature for w in encoded.warnings] == ["tool_config"]


def test_token_counting_in_bedrock_shape() -> None:
    body = BEDROCK.request.encode_request(
        BEDROCK.request.decode_request(FULL_BODY, model=CLAUDE).value, TargetOptions(model=CLAUDE)
    ).value
    count = token_count_request(Dialect.BEDROCK, body, CLAUDE)
    assert set(count["input"]["converse"]) == {"messages", "system", "toolConfig", "additionalModelRequestFields"}
    shape = SERVICE.operation_model("CountTokens").input_shape
    validate_parameters({"modelId": "anthropic.claude-sonnet-4-5-20250929-v1:0", **to_params(count, shape)}, shape)
    assert read_token_count(Dialect.BEDROCK, {"inputTokens": 42}) == 42
    assert token_count(Dialect.BEDROCK, 42) == {"inputTokens": 42}
