"""Focused tests for the known pitfalls of Chat Completions that the Chat codec must handle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from translation.codec import ClientContext, TargetOptions
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.ir import (
    FunctionTool,
    Grammar,
    HostedTool,
    ImagePart,
    InlineSource,
    Message,
    Request,
    ResponseStart,
    ResponseStop,
    Role,
    Sampling,
    StopReason,
    StreamError,
    TextDelta,
    TextPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    ToolResultPart,
    TranslationError,
    Usage,
)
from translation.openai_chat.request import decode_request, encode_request
from translation.openai_chat.response import decode_response
from translation.openai_chat.stream import StreamDecoder, StreamEncoder
from translation.openai_chat.wire import usage_from_wire, usage_to_wire
from translation.sse import SSEEvent
from translation.streaming import ResponseBuilder

CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
    return SSEEvent(json.dumps({**CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))


def _request(*messages: Message, **fields: Any) -> Request:
    return Request(model="m", messages=messages, **fields)


def _user(*parts: Any) -> Message:
    return Message(Role.USER, tuple(parts))


# -- refusals ------------------------------------------------------------------------------------------------


def test_n_above_one_is_refused_on_decode() -> None:
    with pytest.raises(TranslationError) as err:
        decode_request({"model": "m", "messages": [], "n": 2})
    assert err.value.feature == "n"
    assert err.value.to_api_error().param == "n"


def test_several_candidates_are_refused_on_encode() -> None:
    request = _request(_user(TextPart("hi")), sampling=Sampling(candidate_count=2))
    with pytest.raises(TranslationError, match="candidates") as err:
        encode_request(request, TargetOptions(model="gpt-4.1"))
    assert err.value.feature == "n"


def test_a_hosted_tool_without_chat_equivalent_is_left_out_with_a_warning() -> None:
    tool = HostedTool("code_execution", Dialect.ANTHROPIC, {"type": "code_execution_20250825"})
    result = encode_request(_request(_user(TextPart("run it")), tools=(tool,)), TargetOptions(model="gpt-4.1"))
    assert "tools" not in result.value
    assert [w.feature for w in result.warnings] == ["hosted_tool:code_execution"]


def test_previous_response_id_is_refused() -> None:
    with pytest.raises(TranslationError) as err:
        encode_request(_request(previous_response_id="resp_1"), TargetOptions(model="gpt-4.1"))
    assert err.value.feature == "previous_response_id"


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(TranslationError) as err:
        decode_request({"model": "m", "messages": [{"role": "narrator", "content": "x"}]})
    assert err.value.param == "messages[0].role"


# -- tool calls and results ----------------------------------------------------------------------------------


def test_three_parallel_calls_round_trip_through_the_ir() -> None:
    """Pitfall 7: every call keeps exactly one result, in order."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": f'{{"i":{i}}}'}}
        for i in range(3)
    ]
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"call_{i}", "content": str(i)} for i in range(3)),
    ]
    decoded = decode_request({"model": "m", "messages": messages}).value
    assert [m.role for m in decoded.messages] == [Role.USER, Role.ASSISTANT, Role.USER, Role.USER, Role.USER]
    assert encode_request(decoded, TargetOptions(model="m")).value["messages"] == messages


def test_tool_results_come_before_the_user_text_of_the_same_turn() -> None:
    """Pitfall 6: Claude Code puts a <system-reminder> beside its results; the tool messages go first."""
    message = _user(
        TextPart("<system-reminder>x</system-reminder>"),
        ToolResultPart("toolu_1", (TextPart("one"),)),
        ToolResultPart("toolu_2", (TextPart("two"),)),
    )
    out = encode_request(_request(message), TargetOptions(model="m")).value["messages"]
    assert [m["role"] for m in out] == ["tool", "tool", "user"]
    assert [m.get("tool_call_id") for m in out[:2]] == ["toolu_1", "toolu_2"]


def test_an_error_result_without_text_still_says_error() -> None:
    image = ImagePart(InlineSource("image/png", "AAAA"))
    message = _user(ToolResultPart("call_1", (image,), is_error=True))
    result = encode_request(_request(message), TargetOptions(model="m"))
    tool, user = result.value["messages"]
    assert tool["content"].startswith("Error: ")
    assert user["content"][1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert [w.feature for w in result.warnings] == ["tool_result_image", "tool_result_error"]


def test_empty_assistant_text_beside_tool_calls_gives_null_content() -> None:
    """Pitfall 18: never "" next to tool_calls."""
    call = ToolCallPart.from_raw("call_1", "f", "{}")
    message = Message(Role.ASSISTANT, (TextPart(""), call))
    (assistant,) = encode_request(_request(message), TargetOptions(model="m")).value["messages"]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{}"


def test_broken_argument_json_is_kept_verbatim() -> None:
    """Pitfall 8: a string dialect keeps the exact text; `arguments` is None so object dialects can warn."""
    body = {
        **CHUNK,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
                },
            }
        ],
    }
    (call,) = decode_response(body).value.parts
    assert isinstance(call, ToolCallPart)
    assert (call.raw_arguments, call.arguments) == ("{oops", None)


# -- flags ---------------------------------------------------------------------------------------------------


def test_reasoning_content_flag_has_an_older_spelling() -> None:
    history = decode_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "reasoning_content": "think",
                    "content": None,
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                }
            ],
        }
    ).value
    (assistant,) = encode_request(history, TargetOptions("kimi", flags={"reasoning_content": True})).value["messages"]
    assert assistant["reasoning_content"] == "think"


def test_flags_override_the_model_name_rules() -> None:
    request = _request(_user(TextPart("hi")), max_output_tokens=10, sampling=Sampling(temperature=0.2))
    forced = encode_request(request, TargetOptions("my-o-model", flags={"reasoning_model": True})).value
    assert forced["max_completion_tokens"] == 10
    assert "temperature" not in forced
    legacy = encode_request(request, TargetOptions("o3", flags={"max_tokens_field": "max_tokens"})).value
    assert legacy["max_tokens"] == 10


# -- usage ---------------------------------------------------------------------------------------------------


def test_cached_tokens_are_inside_prompt_tokens() -> None:
    """Pitfall 30: 100 prompt tokens of which 80 cached and 10 written = 10 fresh."""
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    usage = usage_from_wire(raw)
    assert usage == Usage(
        input_tokens=10, cache_read_tokens=80, cache_write_tokens=10, output_tokens=7, reasoning_tokens=3
    )
    assert usage_to_wire(usage) == raw


def test_unknown_usage_is_never_written_as_zero() -> None:
    assert usage_to_wire(Usage()) is None
    assert usage_to_wire(Usage(output_tokens=5)) == {"completion_tokens": 5, "total_tokens": 5}


# -- streams -------------------------------------------------------------------------------------------------


def test_the_stop_waits_for_the_usage_chunk() -> None:
    decoder = StreamDecoder(_request())
    decoder.feed(_chunk({"role": "assistant", "content": "hi"}))
    assert not any(isinstance(e, ResponseStop) for e in decoder.feed(_chunk({}, "stop")))
    usage_chunk = SSEEvent(json.dumps({**CHUNK, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
    (stop,) = decoder.feed(usage_chunk)
    assert stop == ResponseStop(StopReason.END_TURN, Usage(input_tokens=3, output_tokens=1))
    assert decoder.feed(SSEEvent("[DONE]")) == []
    assert decoder.finish() == []


def test_argument_fragments_concatenate_to_the_exact_arguments() -> None:
    """Pitfall 4: fragments are forwarded verbatim, never re-parsed mid-stream."""
    decoder = StreamDecoder(_request())
    pieces = ['{"a"', ": [1, ", "2]}"]
    events = decoder.feed(_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}]}))
    for piece in pieces:
        events += decoder.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    events += decoder.feed(_chunk({}, "tool_calls")) + decoder.feed(SSEEvent("[DONE]"))
    assert [e.fragment for e in events if isinstance(e, ToolArgsDelta)] == pieces
    builder = ResponseBuilder()
    for event in events:
        builder.feed(event)
    (call,) = builder.response().parts
    assert isinstance(call, ToolCallPart)
    assert (call.raw_arguments, call.arguments) == ('{"a": [1, 2]}', {"a": [1, 2]})


def test_a_chunk_that_is_not_json_is_skipped_with_a_warning() -> None:
    decoder = StreamDecoder(_request())
    assert decoder.feed(SSEEvent("keep-alive")) == []
    assert [w.feature for w in decoder.warnings] == ["stream_data"]


def test_the_encoder_flushes_every_delta_at_once() -> None:
    """Pitfall 52: no buffering."""
    encoder = StreamEncoder(ClientContext(_request(), 1))
    assert encoder.feed(TextDelta(0, "a")) != []
    assert len(encoder.feed(TextDelta(0, "b"))) == 1


def test_an_error_ends_the_client_stream_without_done() -> None:
    encoder = StreamEncoder(ClientContext(_request(), 1))
    (frame,) = encoder.feed(StreamError(ApiError(ErrorKind.RATE_LIMITED, "slow down")))
    assert frame.data == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}
    }
    assert encoder.finish() == []


def test_custom_tools_keep_their_kind_both_ways() -> None:
    tool = FunctionTool("apply_patch", kind=ToolKind.CUSTOM)
    native = TargetOptions(model="gpt-5", flags={"custom_tools": True})
    body = encode_request(_request(_user(TextPart("x")), tools=(tool,)), native).value
    assert body["tools"] == [{"type": "custom", "custom": {"name": "apply_patch"}}]
    assert decode_request(body).value.tools == (tool,)


# -- custom (freeform) tools on servers without them (pitfall 16) --------------------------------------------

PATCH = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
APPLY_PATCH = FunctionTool("apply_patch", "Edit files.", kind=ToolKind.CUSTOM, grammar=Grammar("lark", "start: /.+/"))
SHELL = FunctionTool("shell", parameters={"type": "object", "properties": {"cmd": {"type": "string"}}})


def test_a_custom_tool_is_a_one_string_function_unless_flagged() -> None:
    choice = ToolChoice(ToolChoiceMode.REQUIRED, allowed=("apply_patch", "shell"))
    request = _request(_user(TextPart("x")), tools=(APPLY_PATCH, SHELL), tool_choice=choice)
    result = encode_request(request, TargetOptions(model="qwen3"))
    function = result.value["tools"][0]["function"]
    assert function["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }
    assert function["description"].endswith("lark grammar:\nstart: /.+/")
    assert [w.feature for w in result.warnings] == ["custom_tool_grammar"]
    refs = result.value["tool_choice"]["allowed_tools"]["tools"]
    assert refs == [
        {"type": "function", "function": {"name": "apply_patch"}},
        {"type": "function", "function": {"name": "shell"}},
    ]
    native = encode_request(request, TargetOptions(model="gpt-5", flags={"custom_tools": True}))
    assert native.value["tools"][0]["type"] == "custom"
    assert native.value["tool_choice"]["allowed_tools"]["tools"][0] == {
        "type": "custom",
        "custom": {"name": "apply_patch"},
    }
    assert native.warnings == ()


def test_a_wrapped_call_whose_arguments_are_not_the_wrapper_keeps_its_text() -> None:
    body = {
        "id": "c",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "1", "type": "function", "function": {"name": "apply_patch", "arguments": "oops"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    part = decode_response(body, request=_request(tools=(APPLY_PATCH,))).value.parts[0]
    assert isinstance(part, ToolCallPart)
    assert (part.kind, part.raw_arguments) == (ToolKind.CUSTOM, "oops")


def test_native_custom_calls_from_openai_still_stream_verbatim() -> None:
    decoder = StreamDecoder(_request(tools=(APPLY_PATCH,)))
    call = {"index": 0, "id": "call_p", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH[:9]}}
    events = decoder.feed(_chunk({"tool_calls": [call]}))
    events += decoder.feed(_chunk({"tool_calls": [{"index": 0, "custom": {"input": PATCH[9:]}}]}))
    events += decoder.feed(_chunk({}, "tool_calls"))
    events += decoder.feed(SSEEvent("[DONE]"))
    response = ResponseBuilder()
    for event in events:
        response.feed(event)
    assert [e.fragment for e in events if isinstance(e, ToolArgsDelta)] == [PATCH[:9], PATCH[9:]]
    part = response.response().parts[0]
    assert isinstance(part, ToolCallPart)
    assert (part.kind, part.raw_arguments) == (ToolKind.CUSTOM, PATCH)


def test_a_wrapped_stream_call_cut_off_by_done_is_still_unwrapped() -> None:
    decoder = StreamDecoder(_request(tools=(APPLY_PATCH,)))
    arguments = json.dumps({"input": PATCH})
    call = {"index": 0, "id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": arguments}}
    events = decoder.feed(_chunk({"tool_calls": [call]}))
    assert [type(e) for e in events] == [ResponseStart, ToolCallStart]
    events = decoder.feed(SSEEvent("[DONE]"))
    assert [e.fragment for e in events if isinstance(e, ToolArgsDelta)] == [PATCH]
