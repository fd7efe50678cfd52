"""Fake OpenAI Responses API: `POST /v1/responses` (JSON or SSE), `/v1/responses/input_tokens`, `GET /v1/models`.

Shapes follow openai 3.54 (`types/responses/response.py`, `response_*_event.py`, `response_usage.py`). Every event
carries `type` and a growing `sequence_number`, and the `event:` line repeats the type. The SDK's stream helper checks
item identities between added/done/completed, so tests driving it catch any inconsistency here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from openai.types.responses import response_create_params

from tests.fakes.base import JsonObject, dumps, estimate_tokens, json_response, new_id, signature
from tests.fakes.openai_shared import OpenAIFake, now
from tests.fakes.script import Failure, Reply, split
from tests.fakes.server import Request, Response

# Codex sends `client_metadata`, which the SDK types lack but the API accepts.
FIELDS = set(response_create_params.ResponseCreateParamsStreaming.__annotations__) | {"client_metadata"}
INCOMPLETE = {"max_tokens": "max_output_tokens", "content_filter": "content_filter"}


class OpenAIResponsesFake(OpenAIFake):
    name = "openai-responses"
    title = "OpenAI Responses"

    def __call__(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path.startswith("/v1/models"):
            return self.authorized(request) or self.list_models(path.removeprefix("/v1/models").strip("/"))
        if request.method == "POST" and path in ("/v1/responses", "/v1/responses/input_tokens"):
            if denied := self.authorized(request):
                return denied
            if problem := self.body_problem(request.json, ("model",), FIELDS):
                return problem
            if path == "/v1/responses":
                return self._create(request)
            return json_response({"object": "response.input_tokens", "input_tokens": estimate_tokens(request)})
        return self.not_found(request)

    def unknown_field(self, name: str) -> Response:
        return self.invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")

    def _create(self, request: Request) -> Response:
        body: JsonObject = request.json
        if body.get("previous_response_id") is None and (problem := self._input_problem(body.get("input"))):
            return problem
        model = str(body["model"])
        reply = self.next_reply(model)
        render = Render(body, reply, model)
        options = body.get("stream_options") or {}
        return self.answer(
            reply,
            body.get("stream") is True,
            render.final,
            lambda: render.events(obfuscate=options.get("include_obfuscation") is not False),
            headers={"x-request-id": new_id("req_", 32)},
        )

    def _input_problem(self, items: Any) -> Response | None:
        """Without server-side history every function_call_output needs its function_call, and the reverse."""
        if not isinstance(items, list):
            return None
        items = [item for item in items if isinstance(item, dict)]
        calls = [item.get("call_id") for item in items if item.get("type") == "function_call"]
        outputs = [item.get("call_id") for item in items if item.get("type") == "function_call_output"]
        for call_id in outputs:
            if call_id not in calls:
                return self.invalid(f"No tool call found for function call output with call_id {call_id}.", "input")
        for call_id in calls:
            if call_id not in outputs:
                return self.invalid(f"No tool output found for function call {call_id}.", "input")
        return None


class Render:
    """One reply as a Responses `response` object and as its event stream; ids are shared between the two."""

    def __init__(self, body: JsonObject, reply: Reply, model: str) -> None:
        self.body = body
        self.reply = reply
        self.model = model
        self.id = new_id("resp_", 48)
        self.created_at = now()
        self.encrypted = "reasoning.encrypted_content" in (body.get("include") or [])
        self.incomplete = INCOMPLETE.get(reply.stop_reason)
        self.sequence = 0

    def response(self, status: str, output: list[JsonObject], usage: JsonObject | None) -> JsonObject:
        body = self.body
        reasoning = body.get("reasoning") or {}
        # The SDK's Response model requires the request settings (tools, tool_choice, ...) echoed back.
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": now() if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": self.incomplete} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium", **(body.get("text") or {})},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    @property
    def status(self) -> str:
        return "incomplete" if self.incomplete else "completed"

    def usage(self) -> JsonObject:
        if self.reply.wire_usage is not None:
            return dict(self.reply.wire_usage)
        counts = self.reply.usage
        return {
            "input_tokens": counts.input,
            "input_tokens_details": {"cached_tokens": counts.cache_read, "cache_write_tokens": counts.cache_write},
            "output_tokens": counts.output,
            "output_tokens_details": {"reasoning_tokens": counts.reasoning},
            "total_tokens": counts.input + counts.output,
        }

    def items(self) -> list[JsonObject]:
        """The finished output items, in order: reasoning, message, function calls."""
        reply = self.reply
        suffix = self.id[-20:]
        items: list[JsonObject] = []
        if reply.reasoning:
            item: JsonObject = {
                "id": f"rs_{suffix}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reply.reasoning}],
            }
            if self.encrypted:
                item["encrypted_content"] = signature("reasoning", reply.reasoning)
            items.append(item)
        if reply.text:
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": reply.text}
            items.append(
                {
                    "id": f"msg_{suffix}",
                    "type": "message",
                    "status": "incomplete" if self.incomplete else "completed",
                    "content": [part],
                    "role": "assistant",
                }
            )
        for index, call in enumerate(reply.tool_calls):
            items.append(
                {
                    "id": f"fc_{suffix}{index:02d}",
                    "type": "function_call",
                    "status": "completed",
                    "arguments": json.dumps(call.arguments, separators=(",", ":")),
                    "call_id": call.id or f"call_{suffix}{index:02d}",
                    "name": call.name,
                }
            )
        return items

    def final(self) -> JsonObject:
        return self.response(self.status, self.items(), self.usage())

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    def events(self, *, obfuscate: bool) -> Iterator[bytes]:
        reply = self.reply
        started = self.response("in_progress", [], None)
        yield self.event("response.created", response=started)
        yield self.event("response.in_progress", response=started)
        padding = {"obfuscation": "pad"} if obfuscate else {}
        done: list[JsonObject] = []
        for index, item in enumerate(self.items()):
            where = {"item_id": item["id"], "output_index": index}
            kind = item["type"]
            if kind == "reasoning":
                yield self.event("response.output_item.added", output_index=index, item={**item, "summary": []})
                text = item["summary"][0]["text"]
                empty = {"type": "summary_text", "text": ""}
                yield self.event("response.reasoning_summary_part.added", **where, summary_index=0, part=empty)
                for piece in split(text, reply.chunks):
                    yield self.event(
                        "response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece, **padding
                    )
                yield self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
                part = item["summary"][0]
                yield self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
            elif kind == "message":
                added = {**item, "status": "in_progress", "content": []}
                yield self.event("response.output_item.added", output_index=index, item=added)
                part = item["content"][0]
                yield self.event("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
                for piece in split(part["text"], reply.chunks):
                    delta = {"delta": piece, "logprobs": [], **padding}
                    yield self.event("response.output_text.delta", **where, content_index=0, **delta)
                yield self.event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[])
                yield self.event("response.content_part.done", **where, content_index=0, part=part)
            else:
                added = {**item, "status": "in_progress", "arguments": ""}
                yield self.event("response.output_item.added", output_index=index, item=added)
                for piece in split(item["arguments"], reply.chunks):
                    yield self.event("response.function_call_arguments.delta", **where, delta=piece, **padding)
                yield self.event("response.function_call_arguments.done", **where, arguments=item["arguments"])
            yield self.event("response.output_item.done", output_index=index, item=item)
            done.append(item)
        if reply.stream_error is not None:
            yield self.failure(reply.stream_error, done)
            return
        # The terminal event is named after the final status: response.completed or response.incomplete.
        yield self.event(f"response.{self.status}", response=self.final())

    def failure(self, failure: Failure, output: list[JsonObject]) -> bytes:
        code = failure.code or ("rate_limit_exceeded" if failure.status == 429 else "server_error")
        message = failure.message or "The model failed to generate a response."
        if failure.error_event:
            return self.event("error", code=code, message=message, param=None)
        failed = self.response("failed", output, self.usage())
        failed["error"] = {"code": code, "message": message}
        return self.event("response.failed", response=failed)
