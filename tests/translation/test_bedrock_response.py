"""Bedrock Converse answers through the IR: usage (cache buckets outside inputTokens, as Anthropic), stop reasons,
reasoning, tool calls; what a Bedrock client gets is what boto3's `converse()` parses; errors in Bedrock's shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.translation.bedrocklib import parse_error, parse_response
from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock import CODEC as BEDROCK
from translation.codec import ClientContext
from translation.dialect import Dialect
from translation.errors import (
    ApiError,
    ErrorKind,
    error_body,
    error_headers,
    parse_upstream_error,
    status_for,
)
from translation.ir import (
    FunctionTool,
    Message,
    ReasoningPart,
    Request,
    Response,
    Role,
    StopReason,
    TextPart,
    ToolCallPart,
    ToolKind,
    Usage,
)
from translation.openai_chat import CODEC as CHAT

REQUEST = Request(
    model="us.anthropic.claude-sonnet-4-5-20250929-v1:0", messages=(Message(Role.USER, (TextPart("hi"),)),)
)
CLIENT = ClientContext(Request(model="my-alias", messages=REQUEST.messages), 1_700_000_000)

ANSWER: dict[str, Any] = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "Check the weather.", "signature": "sig=="}}},
                {"text": "Let me look that up."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {
        "inputTokens": 12,
        "outputTokens": 40,
        "totalTokens": 1552,
        "cacheReadInputTokens": 1500,
        "cacheWriteInputTokens": 0,
    },
    "metrics": {"latencyMs": 812},
}


def test_the_fixture_is_what_bedrock_answers() -> None:
    parsed = parse_response(ANSWER)
    assert parsed["stopReason"] == "tool_use" and parsed["usage"]["cacheReadInputTokens"] == 1500


def test_decode() -> None:
    response = BEDROCK.response.decode_response(ANSWER, request=REQUEST).value
    reasoning, text, call = response.parts
    assert isinstance(reasoning, ReasoningPart) and reasoning.text == "Check the weather."
    assert reasoning.signature is not None and reasoning.signature.dialect is Dialect.BEDROCK
    assert text == TextPart("Let me look that up.")
    assert call == ToolCallPart.from_object("tooluse_1", "get_weather", {"city": "Paris"})
    assert response.stop is StopReason.TOOL_USE
    assert response.usage == Usage(input_tokens=12, cache_read_tokens=1500, cache_write_tokens=0, output_tokens=40)
    assert response.usage.total == 1552
    assert response.model == REQUEST.model
    assert response.id.startswith("bedrock_") and response.id == BEDROCK.response.decode_response(ANSWER).value.id


def test_same_dialect_round_trip_is_exact() -> None:
    response = BEDROCK.response.decode_response(ANSWER, request=REQUEST).value
    encoded = BEDROCK.response.encode_response(response, CLIENT)
    assert encoded.value == ANSWER and encoded.warnings == ()


def test_a_bedrock_answer_for_openai_chat_and_anthropic_clients() -> None:
    response = BEDROCK.response.decode_response(ANSWER, request=REQUEST).value
    chat = CHAT.response.encode_response(response, CLIENT).value
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert chat["usage"]["prompt_tokens"] == 1512  # OpenAI counts cached tokens inside the prompt
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 1500
    assert chat["usage"]["total_tokens"] == 1552
    anthropic = ANTHROPIC.response.encode_response(response, CLIENT).value
    assert anthropic["usage"]["input_tokens"] == 12 and anthropic["usage"]["cache_read_input_tokens"] == 1500
    # Bedrock's signature is not Anthropic's: the thinking block is not shown to an Anthropic client.
    assert [b["type"] for b in anthropic["content"]] == ["text", "tool_use"]


def test_an_anthropic_answer_for_a_bedrock_client() -> None:
    anthropic = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "anthropic-sig"},
            {"type": "text", "text": "Done."},
        ],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    }
    response = ANTHROPIC.response.decode_response(anthropic).value
    encoded = BEDROCK.response.encode_response(response, CLIENT)
    body = encoded.value
    assert parse_response(body)["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Hmm."}}},
        {"text": "Done."},
    ]
    assert body["stopReason"] == "max_tokens"
    assert body["usage"] == {
        "inputTokens": 10,
        "outputTokens": 20,
        "totalTokens": 135,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 5,
    }
    assert body["metrics"] == {"latencyMs": 0}
    assert [w.feature for w in encoded.warnings] == ["reasoning_signature"]


def test_openai_usage_for_a_bedrock_client() -> None:
    response = Response("r", "gpt", (TextPart("x"),), StopReason.END_TURN, Usage.from_openai(110, 7, cached_tokens=100))
    body = BEDROCK.response.encode_response(response, CLIENT).value
    assert body["usage"] == {"inputTokens": 10, "outputTokens": 7, "totalTokens": 117, "cacheReadInputTokens": 100}


def test_unknown_usage_is_zero_for_the_required_counts() -> None:
    response = Response("r", "m", (), StopReason.END_TURN)
    body = BEDROCK.response.encode_response(response, CLIENT).value
    assert body["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    assert parse_response(body)["output"]["message"]["content"] == []


@pytest.mark.parametrize(
    ("wire", "stop", "chat_finish"),
    [
        ("end_turn", StopReason.END_TURN, "stop"),
        ("tool_use", StopReason.TOOL_USE, "tool_calls"),
        ("max_tokens", StopReason.MAX_TOKENS, "length"),
        ("stop_sequence", StopReason.STOP_SEQUENCE, "stop"),
        ("guardrail_intervened", StopReason.REFUSAL, "content_filter"),
        ("content_filtered", StopReason.REFUSAL, "content_filter"),
        ("malformed_model_output", StopReason.ERROR, "stop"),
        ("malformed_tool_use", StopReason.ERROR, "stop"),
        ("model_context_window_exceeded", StopReason.CONTEXT_OVERFLOW, "length"),
    ],
)
def test_stop_reasons(wire: str, stop: StopReason, chat_finish: str) -> None:
    body = {**ANSWER, "stopReason": wire, "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}}
    response = BEDROCK.response.decode_response(body).value
    assert response.stop is stop
    assert BEDROCK.response.encode_response(response, CLIENT).value["stopReason"] == wire
    assert CHAT.response.encode_response(response, CLIENT).value["choices"][0]["finish_reason"] == chat_finish


def test_other_stop_reasons_for_a_bedrock_client() -> None:
    refusal = Response("r", "m", (), StopReason.REFUSAL, stop_detail="content_filter")
    assert BEDROCK.response.encode_response(refusal, CLIENT).value["stopReason"] == "content_filtered"
    paused = BEDROCK.response.encode_response(Response("r", "m", (), StopReason.PAUSE), CLIENT)
    assert paused.value["stopReason"] == "end_turn"
    assert [w.feature for w in paused.warnings] == ["stop_reason:pause"]


def test_custom_tool_calls_come_back_unwrapped() -> None:
    request = Request(
        model="m",
        messages=REQUEST.messages,
        tools=(FunctionTool("apply_patch", kind=ToolKind.CUSTOM),),
    )
    answer = {
        **ANSWER,
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "apply_patch", "input": {"input": "*** Begin"}}}],
            }
        },
    }
    (call,) = BEDROCK.response.decode_response(answer, request=request).value.parts
    assert call == ToolCallPart.from_raw("t1", "apply_patch", "*** Begin", kind=ToolKind.CUSTOM)


def test_redacted_reasoning_round_trips() -> None:
    redacted = base64.b64encode(b"\x00opaque").decode()
    answer = {
        **ANSWER,
        "output": {"message": {"role": "assistant", "content": [{"reasoningContent": {"redactedContent": redacted}}]}},
    }
    response = BEDROCK.response.decode_response(answer).value
    body = BEDROCK.response.encode_response(response, CLIENT).value
    assert body["output"] == answer["output"]
    assert (
        parse_response(body)["output"]["message"]["content"][0]["reasoningContent"]["redactedContent"] == b"\x00opaque"
    )


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "exception", "status"),
    [
        (ErrorKind.INVALID_REQUEST, "ValidationException", 400),
        (ErrorKind.AUTHENTICATION, "UnrecognizedClientException", 401),
        (ErrorKind.PERMISSION, "AccessDeniedException", 403),
        (ErrorKind.NOT_FOUND, "ResourceNotFoundException", 404),
        (ErrorKind.RATE_LIMITED, "ThrottlingException", 429),
        (ErrorKind.BUDGET_EXHAUSTED, "ServiceQuotaExceededException", 429),
        (ErrorKind.UPSTREAM_ERROR, "InternalServerException", 502),
        (ErrorKind.OVERLOADED, "ServiceUnavailableException", 503),
        (ErrorKind.UNAVAILABLE, "ServiceUnavailableException", 503),
        (ErrorKind.TIMEOUT, "ModelTimeoutException", 504),
    ],
)
def test_errors_for_a_bedrock_client(kind: ErrorKind, exception: str, status: int) -> None:
    error = ApiError(kind, "what went wrong")
    body, headers = error_body(Dialect.BEDROCK, error), error_headers(Dialect.BEDROCK, error)
    assert body == {"message": "what went wrong"}
    assert headers == {"x-amzn-ErrorType": exception}
    assert status_for(Dialect.BEDROCK, error) == status
    assert parse_error(status, headers, body) == {"Code": exception, "Message": "what went wrong"}
    assert error_headers(Dialect.ANTHROPIC, error) == {}


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (400, "ValidationException", ErrorKind.INVALID_REQUEST),
        (403, "AccessDeniedException", ErrorKind.PERMISSION),
        (403, "UnrecognizedClientException", ErrorKind.AUTHENTICATION),
        (404, "ResourceNotFoundException", ErrorKind.NOT_FOUND),
        (429, "ThrottlingException", ErrorKind.RATE_LIMITED),
        (503, "ServiceUnavailableException", ErrorKind.OVERLOADED),
        (408, "ModelTimeoutException", ErrorKind.TIMEOUT),
        (500, "InternalServerException", ErrorKind.UPSTREAM_ERROR),
        (424, "ModelErrorException", ErrorKind.UPSTREAM_ERROR),  # by status alone: a client error
        (429, "ModelNotReadyException", ErrorKind.UNAVAILABLE),
        (400, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/", ErrorKind.INVALID_REQUEST),
        (424, None, ErrorKind.INVALID_REQUEST),  # no header: the status decides
    ],
)
def test_bedrock_upstream_errors(status: int, error_type: str | None, kind: ErrorKind) -> None:
    body = json.dumps({"message": "The model returned an error."}).encode()
    error = parse_upstream_error(status, body, error_type=error_type)
    assert (error.kind, error.http_status, error.message) == (kind, status, "The model returned an error.")
