"""Every client dialect against every upstream format, through the proxy with the official SDKs.

Each case is a two-turn tool conversation: the model asks for two tools at once, the client sends both results
back, the model answers. It runs streaming and not, for all 16 (client, upstream) pairs of the four HTTP dialects —
4 pass through, 12 translate — and for those four clients against a Bedrock (Converse) upstream, and checks what
the client sees and what the upstream received.

The matrix runs the proxy in-process (tests/inprocess.py): translation is the pipeline's work. Two streamed pairs
(one translated, one passed through) also run through a real daphne, so the SDKs' streaming over a real server's
SSE stays covered here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from routing.config.secrets import encrypt
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, ToolCall, Usage
from tests.inprocess import (
    InProcessProxy,
    Proxy,
    passwordless_alice,  # noqa: F401  (`alice` without a password: nobody logs in here)
    sdk_http_client,
)

FORMATS = ["anthropic", "openai-chat", "openai-responses", "gemini"]
# Bedrock is an upstream here (Converse, for a model that is not Claude); as a client it needs boto3 over a real
# server: tests/test_bedrock_client.py.
UPSTREAM_FORMATS = [*FORMATS, "bedrock"]
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": "", "bedrock": ""}

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TIME_SCHEMA = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}
CALLS = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {"tz": "CET"})]
RESULTS = {"get_weather": "22C and sunny", "get_time": "12:00"}
FINAL = "It is sunny in Paris at noon."


@dataclass
class Turn:
    """What the client saw in one answer."""

    calls: list[tuple[str, dict[str, Any]]]
    text: str
    stop: str
    output_tokens: int | None
    state: Any  # whatever the client needs to send the next turn


class Conversation:
    """One SDK's way of running the two turns; subclasses per client dialect."""

    def __init__(self, proxy: Proxy, key: str, stream: bool) -> None:
        self.proxy, self.url, self.key, self.stream = proxy, proxy.url, key, stream

    def first(self) -> Turn:
        raise NotImplementedError

    def second(self, first: Turn) -> Turn:
        raise NotImplementedError


class AnthropicConversation(Conversation):
    tools = [
        {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA},
        {"name": "get_time", "description": "Time in a zone", "input_schema": TIME_SCHEMA},
    ]

    def _ask(self, messages: list[dict[str, Any]]) -> Turn:
        client = anthropic.Anthropic(
            api_key=self.key, base_url=self.url, max_retries=0, http_client=sdk_http_client(self.proxy)
        )
        kwargs = {"model": "m", "max_tokens": 200, "messages": messages, "tools": self.tools}
        if self.stream:
            with client.messages.stream(**kwargs) as stream:
                message = stream.get_final_message()
        else:
            message = client.messages.create(**kwargs)
        calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        text = "".join(b.text for b in message.content if b.type == "text")
        return Turn(calls, text, message.stop_reason, message.usage.output_tokens, (messages, message))

    def first(self) -> Turn:
        return self._ask([{"role": "user", "content": "Weather and time in Paris?"}])

    def second(self, first: Turn) -> Turn:
        messages, message = first.state
        results = [
            {"type": "tool_result", "tool_use_id": b.id, "content": RESULTS[b.name]}
            for b in message.content
            if b.type == "tool_use"
        ]
        assistant = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]}
        return self._ask([*messages, assistant, {"role": "user", "content": results}])


class ChatConversation(Conversation):
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
        {"type": "function", "function": {"name": "get_time", "parameters": TIME_SCHEMA}},
    ]

    def _ask(self, messages: list[dict[str, Any]]) -> Turn:
        client = openai.OpenAI(
            api_key=self.key, base_url=self.url + "/v1", max_retries=0, http_client=sdk_http_client(self.proxy)
        )
        if not self.stream:
            completion = client.chat.completions.create(model="m", messages=messages, tools=self.tools)
            choice = completion.choices[0]
            calls = choice.message.tool_calls or []
            assistant = choice.message.model_dump(exclude_none=True)
            turn_calls = [(c.function.name, json.loads(c.function.arguments)) for c in calls]
            raw = [(c.id, c.function.name) for c in calls]
            usage = completion.usage.completion_tokens if completion.usage else None
            return Turn(
                turn_calls, choice.message.content or "", choice.finish_reason, usage, (messages, assistant, raw)
            )
        chunks = client.chat.completions.create(
            model="m", messages=messages, tools=self.tools, stream=True, stream_options={"include_usage": True}
        )
        text, finish, usage = "", "", None
        pending: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or []:
                    slot = pending.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += call.id or ""
                    slot["name"] += (call.function.name or "") if call.function else ""
                    slot["arguments"] += (call.function.arguments or "") if call.function else ""
        ordered = [pending[i] for i in sorted(pending)]
        tool_calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in ordered
        ]
        assistant = {"role": "assistant", "content": text or None, **({"tool_calls": tool_calls} if tool_calls else {})}
        turn_calls = [(c["name"], json.loads(c["arguments"])) for c in ordered]
        return Turn(turn_calls, text, finish, usage, (messages, assistant, [(c["id"], c["name"]) for c in ordered]))

    def first(self) -> Turn:
        return self._ask([{"role": "user", "content": "Weather and time in Paris?"}])

    def second(self, first: Turn) -> Turn:
        messages, assistant, raw = first.state
        results = [{"role": "tool", "tool_call_id": call_id, "content": RESULTS[name]} for call_id, name in raw]
        return self._ask([*messages, assistant, *results])


class ResponsesConversation(Conversation):
    tools = [
        {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False},
        {"type": "function", "name": "get_time", "parameters": TIME_SCHEMA, "strict": False},
    ]

    def _ask(self, items: list[dict[str, Any]]) -> Turn:
        client = openai.OpenAI(
            api_key=self.key, base_url=self.url + "/v1", max_retries=0, http_client=sdk_http_client(self.proxy)
        )
        if self.stream:
            response = None
            for event in client.responses.create(model="m", input=items, tools=self.tools, stream=True):
                if event.type == "response.completed":
                    response = event.response
            assert response is not None, "the stream ended with response.completed"
        else:
            response = client.responses.create(model="m", input=items, tools=self.tools)
        calls = [item for item in response.output if item.type == "function_call"]
        stop = "tool_use" if calls else response.status
        usage = response.usage.output_tokens if response.usage else None
        turn_calls = [(c.name, json.loads(c.arguments)) for c in calls]
        return Turn(turn_calls, response.output_text, stop, usage, (items, response))

    def first(self) -> Turn:
        return self._ask([{"role": "user", "content": "Weather and time in Paris?"}])

    def second(self, first: Turn) -> Turn:
        items, response = first.state
        output = [item.model_dump(exclude_none=True) for item in response.output]
        results = [
            {"type": "function_call_output", "call_id": item.call_id, "output": RESULTS[item.name]}
            for item in response.output
            if item.type == "function_call"
        ]
        return self._ask([*items, *output, *results])


class GeminiConversation(Conversation):
    def _config(self) -> genai_types.GenerateContentConfig:
        declarations = [
            genai_types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER_SCHEMA),
            genai_types.FunctionDeclaration(name="get_time", parameters_json_schema=TIME_SCHEMA),
        ]
        return genai_types.GenerateContentConfig(
            tools=[genai_types.Tool(function_declarations=declarations)],
            automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        )

    def _ask(self, contents: list[genai_types.Content]) -> Turn:
        options = genai_types.HttpOptions(base_url=self.url, httpx_client=sdk_http_client(self.proxy))
        client = genai.Client(api_key=self.key, http_options=options)
        if self.stream:
            parts: list[genai_types.Part] = []
            finish, usage = "", None
            for chunk in client.models.generate_content_stream(model="m", contents=contents, config=self._config()):
                candidate = chunk.candidates[0] if chunk.candidates else None
                if candidate and candidate.content and candidate.content.parts:
                    parts.extend(candidate.content.parts)
                if candidate and candidate.finish_reason:
                    finish = candidate.finish_reason.value
                if chunk.usage_metadata and chunk.usage_metadata.candidates_token_count is not None:
                    usage = chunk.usage_metadata.candidates_token_count
        else:
            response = client.models.generate_content(model="m", contents=contents, config=self._config())
            candidate = response.candidates[0]
            parts = list(candidate.content.parts or [])
            finish = candidate.finish_reason.value if candidate.finish_reason else ""
            usage = response.usage_metadata.candidates_token_count if response.usage_metadata else None
        calls = [(p.function_call.name, dict(p.function_call.args or {})) for p in parts if p.function_call]
        text = "".join(p.text for p in parts if p.text and not p.thought)
        model_turn = genai_types.Content(role="model", parts=parts)
        return Turn(calls, text, finish, usage, (contents, model_turn))

    def first(self) -> Turn:
        return self._ask(
            [genai_types.Content(role="user", parts=[genai_types.Part(text="Weather and time in Paris?")])]
        )

    def second(self, first: Turn) -> Turn:
        contents, model_turn = first.state
        responses = [
            genai_types.Part(
                function_response=genai_types.FunctionResponse(
                    id=p.function_call.id, name=p.function_call.name, response={"output": RESULTS[p.function_call.name]}
                )
            )
            for p in model_turn.parts
            if p.function_call
        ]
        return self._ask([*contents, model_turn, genai_types.Content(role="user", parts=responses)])


CONVERSATIONS: dict[str, Callable[[Proxy, str, bool], Conversation]] = {
    "anthropic": AnthropicConversation,
    "openai-chat": ChatConversation,
    "openai-responses": ResponsesConversation,
    "gemini": GeminiConversation,
}
TOOL_STOP = {"anthropic": "tool_use", "openai-chat": "tool_calls", "openai-responses": "tool_use", "gemini": "STOP"}
END_STOP = {"anthropic": "end_turn", "openai-chat": "stop", "openai-responses": "completed", "gemini": "STOP"}


def tool_links(fmt: str, body: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(call ids, result ids, result texts) in an upstream request body of format `fmt`."""
    text = json.dumps(body)
    found = [value for value in RESULTS.values() if value in text]
    if fmt == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        calls = [b["id"] for b in blocks if b["type"] == "tool_use"]
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
    elif fmt == "openai-chat":
        calls = [c["id"] for m in body["messages"] for c in m.get("tool_calls") or []]
        results = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    elif fmt == "openai-responses":
        items = [i for i in body["input"] if isinstance(i, dict)]
        calls = [i["call_id"] for i in items if i.get("type") == "function_call"]
        results = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    elif fmt == "bedrock":
        blocks = [b for m in body["messages"] for b in m["content"]]
        calls = [b["toolUse"]["toolUseId"] for b in blocks if "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b]
    else:
        parts = [p for c in body["contents"] for p in c["parts"]]
        calls = [p["functionCall"]["name"] for p in parts if "functionCall" in p]
        results = [p["functionResponse"]["name"] for p in parts if "functionResponse" in p]
    return calls, results, found


def round_trip(proxy: Proxy, key: str, upstream: Any, upstream_format: str, client_format: str, stream: bool) -> None:
    upstream.script(
        Reply(text="Checking both.", tool_calls=CALLS, usage=Usage(input=40, output=12), chunks=3),
        Reply(text=FINAL, usage=Usage(input=80, output=9), chunks=3),
    )
    cloud = (
        {"location": "us-east-1", "api_key_encrypted": encrypt("bedrock-api-key")}
        if upstream_format == "bedrock"
        else {}
    )
    add_route("up", upstream_format, upstream.url + BASE_PATH[upstream_format], alias="m", model="real-model", **cloud)
    proxy.sync()
    conversation = CONVERSATIONS[client_format](proxy, key, stream)

    first = conversation.first()
    assert first.calls == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert first.text == "Checking both."
    assert first.stop == TOOL_STOP[client_format]
    assert first.output_tokens == 12

    second = conversation.second(first)
    assert second.text == FINAL
    assert second.calls == []
    assert second.stop == END_STOP[client_format]
    assert second.output_tokens == 9

    calls, results, found = tool_links(upstream_format, upstream.requests[-1].json)
    assert len(calls) == 2 and sorted(calls) == sorted(results), "each call is answered by exactly its result"
    assert sorted(found) == sorted(RESULTS.values())
    assert upstream.requests[-1].json.get("model", "real-model") == "real-model"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_format", FORMATS)
@pytest.mark.parametrize("upstream_format", UPSTREAM_FORMATS)
def test_two_parallel_tool_calls_round_trip(inproc: InProcessProxy, alice_key, upstream_format, client_format, stream):
    with inproc.upstream(upstream_format) as upstream:
        round_trip(inproc, alice_key, upstream, upstream_format, client_format, stream)


@pytest.mark.e2e
@pytest.mark.parametrize(("client_format", "upstream_format"), [("openai-chat", "anthropic"), ("gemini", "gemini")])
def test_a_streamed_round_trip_through_a_real_server(proxy, alice_key, client_format, upstream_format):
    with fake_upstream(upstream_format) as upstream:
        round_trip(proxy, alice_key, upstream, upstream_format, client_format, stream=True)
