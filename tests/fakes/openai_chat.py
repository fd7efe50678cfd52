"""Fake OpenAI Chat Completions API (`POST /v1/chat/completions`, `GET /v1/models`), plus an Ollama-flavoured variant.

Shapes follow openai 3.54 (`types/chat/chat_completion*.py`, `types/completion_usage.py`). Streams are data-only SSE
ending in `data: [DONE]`; usage arrives in an extra `choices: []` chunk only when `stream_options.include_usage` is
true, which is the detail proxies most often get wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from openai.types.chat import completion_create_params

from tests.fakes.base import JsonObject, dumps, new_id
from tests.fakes.openai_shared import OpenAIFake, error_body, now
from tests.fakes.script import Reply, split
from tests.fakes.server import Request, Response

FIELDS = set(completion_create_params.CompletionCreateParamsStreaming.__annotations__)
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FINISH_REASONS = {
    "end": "stop",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
}


def data(obj: object) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


class OpenAIChatFake(OpenAIFake):
    name = "openai-chat"
    title = "OpenAI Chat"
    ollama: ClassVar[bool] = False

    def __init__(self, *, reasoning_field: str | None = None, **options: Any) -> None:
        """`reasoning_field`: also send the reply's reasoning text in this non-standard message/delta field
        ("reasoning_content" like vLLM and DeepSeek, "reasoning" like Ollama); OpenAI itself never sends it."""
        super().__init__(**options)
        self.reasoning_field = reasoning_field

    def __call__(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path.startswith("/v1/models"):
            return self.authorized(request) or self.list_models(path.removeprefix("/v1/models").strip("/"))
        if request.method == "POST" and path == "/v1/chat/completions":
            return self.authorized(request) or self._create(request)
        return self.not_found(request)

    def _create(self, request: Request) -> Response:
        body = request.json
        if problem := self.body_problem(body, ("model", "messages"), FIELDS):
            return problem
        if problem := self._messages_problem(body["messages"]):
            return problem
        model = str(body["model"])
        reply = self.next_reply(model)
        completion_id = new_id("chatcmpl-", 29)
        options = body.get("stream_options") or {}
        return self.answer(
            reply,
            body.get("stream") is True,
            lambda: self._completion(reply, model, completion_id),
            lambda: self._chunks(
                reply,
                model,
                completion_id,
                include_usage=options.get("include_usage") is True,
                obfuscate=options.get("include_obfuscation") is not False,
            ),
            headers={"x-request-id": new_id("req_", 32)},
        )

    def _messages_problem(self, messages: Any) -> Response | None:
        """Role values, and the rule that tool messages answer exactly the calls of the assistant message before."""
        if not isinstance(messages, list) or not messages:
            return self.invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array "
                "instead.",
                "messages",
                "empty_array",
            )
        if self.ollama:
            return None
        pending: list[str] = []
        pending_at = 0
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                supported = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
                param = f"messages[{index}].role"
                return self.invalid(
                    f"Invalid value: '{role}'. Supported values are: {supported}.", param, "invalid_value"
                )
            if role == "tool":
                if message.get("tool_call_id") not in pending:
                    return self.invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                        "'tool_calls'.",
                        f"messages.[{index}].role",
                    )
                pending.remove(message["tool_call_id"])
                continue
            if pending:
                break
            pending = [call.get("id") for call in message.get("tool_calls") or []] if role == "assistant" else []
            pending_at = index
        if pending:
            return self.invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
                f"messages.[{pending_at}].role",
            )
        return None

    def _tool_call_id(self, call_id: str | None, index: int, completion_id: str) -> str:
        if call_id:
            return call_id
        # Ollama makes short random ids; OpenAI's are call_ plus 24 characters.
        return f"call_{completion_id[-6:]}{index:02d}" if self.ollama else f"call_{completion_id[-22:]}{index:02d}"

    def _tool_calls(self, reply: Reply, completion_id: str) -> list[JsonObject]:
        return [
            {
                "id": self._tool_call_id(call.id, index, completion_id),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments, separators=(",", ":"))},
            }
            for index, call in enumerate(reply.tool_calls)
        ]

    def _usage(self, reply: Reply) -> JsonObject:
        if reply.wire_usage is not None:
            return dict(reply.wire_usage)
        counts = reply.usage
        result: JsonObject = {
            "prompt_tokens": counts.input,
            "completion_tokens": counts.output,
            "total_tokens": counts.input + counts.output,
        }
        if self.ollama:
            return result
        prompt_details: JsonObject = {"cached_tokens": counts.cache_read, "audio_tokens": 0}
        if counts.cache_write:
            prompt_details["cache_write_tokens"] = counts.cache_write
        result["prompt_tokens_details"] = prompt_details
        result["completion_tokens_details"] = {
            "reasoning_tokens": counts.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
        return result

    def _envelope(self, completion_id: str, model: str, kind: str) -> JsonObject:
        envelope: JsonObject = {"id": completion_id, "object": kind, "created": now(), "model": model}
        if self.ollama:
            envelope["system_fingerprint"] = "fp_ollama"
        else:
            envelope.update(service_tier="default", system_fingerprint=None)
        return envelope

    def _completion(self, reply: Reply, model: str, completion_id: str) -> JsonObject:
        message: JsonObject = {"role": "assistant", "content": reply.text or None}
        if not self.ollama:
            message.update(refusal=None, annotations=[])
        if self.reasoning_field and reply.reasoning:
            message[self.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply, completion_id)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_REASONS[reply.stop_reason]}
        return {
            **self._envelope(completion_id, model, "chat.completion"),
            "choices": [choice],
            "usage": self._usage(reply),
        }

    def _chunks(
        self, reply: Reply, model: str, completion_id: str, *, include_usage: bool, obfuscate: bool
    ) -> Iterator[bytes]:
        envelope = self._envelope(completion_id, model, "chat.completion.chunk")
        if include_usage:
            # With include_usage every chunk carries "usage": null until the final usage chunk.
            envelope["usage"] = None
        padding = iter(range(1_000_000))

        def chunk(delta: JsonObject, finish: str | None = None) -> bytes:
            if self.ollama:
                # Ollama repeats the role and an empty content in every delta.
                delta = {"role": "assistant", "content": "", **delta}
            choice: JsonObject = {"index": 0, "delta": delta, "finish_reason": finish}
            if not self.ollama:
                choice["logprobs"] = None
            extra = {"obfuscation": f"pad{next(padding)}"} if obfuscate and not self.ollama else {}
            return data({**envelope, "choices": [choice], **extra})

        calls = self._tool_calls(reply, completion_id)
        if not self.ollama:
            yield chunk({"role": "assistant", "content": "" if reply.text or not calls else None, "refusal": None})
        if self.reasoning_field:
            for piece in split(reply.reasoning, reply.chunks):
                yield chunk({self.reasoning_field: piece})
        for piece in split(reply.text, reply.chunks):
            yield chunk({"content": piece})
        if self.ollama and calls:
            # Ollama sends each call whole, all in one delta.
            yield chunk({"tool_calls": [{"index": index, **call} for index, call in enumerate(calls)]})
        elif calls:
            for index, call in enumerate(calls):
                function = call["function"]
                start = {"index": index, "id": call["id"], "type": "function"}
                yield chunk({"tool_calls": [{**start, "function": {"name": function["name"], "arguments": ""}}]})
                for piece in split(function["arguments"], reply.chunks):
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        if reply.stream_error is not None:
            # A payload with a top-level "error" key; the stream then just ends, without [DONE].
            yield data(error_body(reply.stream_error))
            return
        yield chunk({}, FINISH_REASONS[reply.stop_reason])
        if include_usage:
            yield data({**envelope, "choices": [], "usage": self._usage(reply)})
        yield b"data: [DONE]\n\n"


class OllamaFake(OpenAIChatFake):
    """Ollama's OpenAI-compatible endpoint: no auth or unknown-field checks, whole tool calls in one chunk, reasoning in
    `reasoning`, usage without details (and in streams only when asked for)."""

    name = "ollama"
    title = "Ollama"
    ollama = True
    default_models = ("llama3.2", "qwen3:8b")

    def __init__(self, **options: Any) -> None:
        options.setdefault("strict", False)
        options.setdefault("reasoning_field", "reasoning")
        super().__init__(**options)
