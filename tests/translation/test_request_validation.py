"""A request body with a wrong JSON type is refused by its dialect's decoder with a 400 naming the field
(translation/ir/shape.py), whichever path the proxy takes with it afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from translation.anthropic import CODEC as ANTHROPIC
from translation.codec import Codec, TargetOptions
from translation.dialect import Dialect
from translation.errors import error_body, status_for
from translation.gemini import CODEC as GEMINI
from translation.ir import NativePart, TranslationError
from translation.openai_chat import CODEC as CHAT
from translation.openai_responses import CODEC as RESPONSES

USER = {"role": "user", "content": "hi"}

CASES: list[tuple[Codec, dict[str, Any], str, str]] = [
    # (codec, body, the field named, the message)
    (GEMINI, {"contents": "x"}, "contents", "contents: expected an array, got a string"),
    (GEMINI, {"contents": [{"parts": {"text": "hi"}}]}, "contents[0].parts", "expected an array, got an object"),
    (GEMINI, {"contents": [{"parts": [{"text": ["hi"]}]}]}, "contents[0].parts[0].text", "expected a string"),
    (GEMINI, {"generationConfig": {"maxOutputTokens": "64"}}, "generationConfig.maxOutputTokens", "an integer"),
    (GEMINI, {"systemInstruction": 3}, "systemInstruction", "expected a string or an object, got a number"),
    (GEMINI, {"tools": [{"functionDeclarations": {"name": "f"}}]}, "tools[0].functionDeclarations", "an array"),
    (ANTHROPIC, {"messages": "hi"}, "messages", "messages: expected an array, got a string"),
    (ANTHROPIC, {"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "a string or an array"),
    (ANTHROPIC, {"messages": [USER], "max_tokens": True}, "max_tokens", "expected an integer, got a boolean"),
    (ANTHROPIC, {"messages": [USER], "temperature": "hot"}, "temperature", "expected a number, got a string"),
    (ANTHROPIC, {"messages": [USER], "tool_choice": {"type": ["auto"]}}, "tool_choice.type", "a string"),
    (ANTHROPIC, {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "messages[0].content[0].type", ""),
    (CHAT, {"messages": {"role": "user"}}, "messages", "messages: expected an array, got an object"),
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "required"),
    (CHAT, {"messages": [USER], "stop": 5}, "stop", "expected a string or an array, got a number"),
    (CHAT, {"messages": [USER], "reasoning_effort": "extreme"}, "reasoning_effort", "unknown reasoning_effort"),
    (CHAT, {"messages": [USER], "response_format": {"type": "yaml"}}, "response_format.type", "unknown type"),
    (CHAT, {"messages": [USER], "tools": [{"type": "function"}]}, "tools[0].function", "required"),
    (RESPONSES, {"input": 42}, "input", "input: expected a string or an array, got a number"),
    (RESPONSES, {"input": [{"type": ["message"]}]}, "input[0].type", "expected a string, got an array"),
    (RESPONSES, {"input": "hi", "tool_choice": {"type": "allowed_tools", "tools": "f"}}, "tool_choice.tools", ""),
    (RESPONSES, {"input": "hi", "store": "no"}, "store", "expected a boolean, got a string"),
]


@pytest.mark.parametrize(("codec", "body", "field", "message"), CASES, ids=[c[2] for c in CASES])
def test_a_wrong_type_is_a_400_naming_the_field(codec: Codec, body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(TranslationError) as raised:
        codec.request.decode_request(body, model="m")
    assert raised.value.param == field
    assert message in raised.value.message
    assert field in raised.value.message  # the client reads the field in the message too
    error = raised.value.to_api_error()
    assert status_for(codec.dialect, error) == 400
    if codec.dialect in (Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES):
        assert error_body(codec.dialect, error)["error"]["param"] == field


def test_null_is_an_absent_field() -> None:
    body = {"model": "m", "messages": [USER], "tools": None, "temperature": None, "stop": None, "n": None}
    assert CHAT.request.decode_request(body).value.tools == ()


def test_a_block_type_the_proxy_does_not_know_is_left_to_the_upstream() -> None:
    block = {"type": "future_block", "payload": [1, {"x": None}]}
    request = ANTHROPIC.request.decode_request({"messages": [{"role": "user", "content": [block]}]}).value
    assert request.messages[0].parts == (NativePart(Dialect.ANTHROPIC, block),)


def test_a_schema_with_odd_required_entries_goes_to_anthropic_as_it_came() -> None:
    # The decoders do not judge JSON Schema; the Anthropic encoder's de-duplication must not choke on it either.
    schema = {"type": "object", "properties": {}, "required": [["a"], {"b": 1}]}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    request = CHAT.request.decode_request({"messages": [USER], "tools": [tool]}).value
    body = ANTHROPIC.request.encode_request(request, TargetOptions(model="claude", default_max_output_tokens=64)).value
    assert body["tools"][0]["input_schema"]["required"] == [["a"], {"b": 1}]


def test_a_schema_deeper_than_its_conversion_can_follow_is_a_400() -> None:
    # Parsed fine (under the JSON parser's depth), but Gemini's schema conversion recurses once per level.
    schema: dict[str, Any] = {"type": "STRING"}
    for _ in range(2_000):
        schema = {"type": "OBJECT", "properties": {"a": schema}}
    body = {"tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]}
    with pytest.raises(TranslationError, match="nested too deeply") as raised:
        GEMINI.request.decode_request(body, model="m")
    assert status_for(Dialect.GEMINI, raised.value.to_api_error()) == 400


NULLS: list[tuple[Codec, dict[str, Any]]] = [
    (GEMINI, {"contents": [{"role": "model", "parts": [{"functionCall": None, "text": "hi"}]}]}),
    (GEMINI, {"contents": [], "tools": [{"functionDeclarations": None}]}),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": None}}]}]}),
]


@pytest.mark.parametrize(("codec", "body"), NULLS, ids=["gemini-part", "gemini-declarations", "chat-file"])
def test_a_null_nested_field_is_absent(codec: Codec, body: dict[str, Any]) -> None:
    request = codec.request.decode_request(body, model="m").value
    for fmt in (ANTHROPIC, CHAT, RESPONSES, GEMINI):  # and nothing trips over it further on
        fmt.request.encode_request(request, TargetOptions(model="x", default_max_output_tokens=64))
