"""Fake Anthropic Messages API: `POST /v1/messages` (JSON or SSE), `/v1/messages/count_tokens`, `GET /v1/models`.

Shapes follow anthropic 2.12 (`types/message.py`, `raw_*_event.py`, `usage.py`, `model_info.py`). Anthropic reports
`input_tokens` without the cached part, so a proxy that copies it as the prompt total is caught by usage tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from anthropic.types import message_count_tokens_params, message_create_params
from anthropic.types.beta import message_create_params as beta_message_create_params

from tests.fakes.base import JsonObject, ProviderFake, dumps, estimate_tokens, json_response, new_id, signature
from tests.fakes.script import Failure, Reply, split
from tests.fakes.server import Request, Response

# Top-level body fields the API accepts. Sampling parameters left the 2.x SDK types but old clients (anthropic-version
# 2023-06-01) still send them; beta fields (context_management, ...) need an `anthropic-beta` header.
FIELDS = set(message_create_params.MessageCreateParamsStreaming.__annotations__) | {"temperature", "top_p", "top_k"}
BETA_FIELDS = set(beta_message_create_params.MessageCreateParamsStreaming.__annotations__) - {"betas"}
COUNT_FIELDS = set(message_count_tokens_params.MessageCountTokensParams.__annotations__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {"overloaded_error": "Overloaded", "rate_limit_error": "Rate limited. Please try again later."}
STOP_REASONS = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
}


def event(name: str, data: JsonObject) -> bytes:
    # The SDK skips SSE messages without an `event:` line, so it is not optional here.
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class AnthropicFake(ProviderFake):
    name = "anthropic"
    title = "Anthropic"
    default_models = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/v1/models") and request.method == "GET":
            return self._authorized(request) or self._models(path.removeprefix("/v1/models").strip("/"), request.query)
        if path in ("/v1/messages", "/v1/messages/count_tokens") and request.method == "POST":
            if denied := self._authorized(request) or self._check_version(request):
                return denied
            if path == "/v1/messages":
                return self._create(request)
            return self._count_tokens(request)
        return self.fail(404, f"Not found: {request.method} {path}")

    def error(self, failure: Failure) -> Response:
        body = error_body(failure)
        headers = {"request-id": body["request_id"]}
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        return json_response(body, failure.status, headers)

    def _authorized(self, request: Request) -> Response | None:
        # Claude Code sends x-api-key; SDK 2.x sends the same key as a Bearer token. Both are accepted.
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        if self.api_key is None or key == self.api_key:
            return None
        return self.fail(401, "x-api-key header is required" if key is None else "invalid x-api-key")

    def _check_version(self, request: Request) -> Response | None:
        if "anthropic-version" in request.headers:
            return None
        return self.fail(400, "anthropic-version: header is required")

    def _invalid(self, request: Request, fields: set[str]) -> Response | None:
        body = request.json
        if not isinstance(body, dict):
            return self.fail(400, "Request body must be a JSON object")
        if self.strict:
            allowed = fields | (BETA_FIELDS if "anthropic-beta" in request.headers else set())
            for name in body:
                if name not in allowed:
                    return self.fail(400, f"{name}: Extra inputs are not permitted")
        for name in ("model", "messages"):
            if name not in body:
                return self.fail(400, f"{name}: Field required")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return self.fail(400, "messages: at least one message is required")
        problem = message_problem(messages)
        return self.fail(400, problem) if problem else None

    def _create(self, request: Request) -> Response:
        if invalid := self._invalid(request, FIELDS):
            return invalid
        body: JsonObject = request.json
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            return self.fail(400, "max_tokens: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return self.fail(400, "max_tokens: Input should be greater than or equal to 1")
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled" and not 1024 <= thinking.get("budget_tokens", 0) < max_tokens:
            return self.fail(400, "thinking.budget_tokens: must be at least 1024 and less than max_tokens")
        model = str(body["model"])
        reply = self.next_reply(model)
        message_id = new_id("msg_01")
        return self.answer(
            reply,
            body.get("stream") is True,
            lambda: message(reply, model, message_id),
            lambda: stream(reply, model, message_id),
            headers={"request-id": new_id("req_011C")},
        )

    def _count_tokens(self, request: Request) -> Response:
        return self._invalid(request, COUNT_FIELDS) or json_response({"input_tokens": estimate_tokens(request)})

    def _models(self, model_id: str, query: dict[str, str]) -> Response:
        models = [model_info(name) for name in self.models]
        if model_id:
            found = [info for info in models if info["id"] == model_id]
            return json_response(found[0]) if found else self.fail(404, f"model: {model_id}")
        # Pages as the API pages them: `limit` 1-1000 (default 20), then `after_id` the previous page's last_id.
        limit = int(query.get("limit", "20"))
        if not 1 <= limit <= 1000:
            return self.fail(400, "limit: Input should be less than or equal to 1000")
        ids = [info["id"] for info in models]
        start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
        page = models[start : start + limit]
        first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
        has_more = start + limit < len(models)
        return json_response({"data": page, "has_more": has_more, "first_id": first, "last_id": last})


def error_body(failure: Failure) -> JsonObject:
    default = "api_error" if failure.status >= 500 else "invalid_request_error"
    kind = failure.type or ERROR_TYPES.get(failure.status, default)
    message = failure.message or DEFAULT_MESSAGES.get(kind, kind)
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_011C")}


def message_problem(messages: list[Any]) -> str | None:
    """The API's tool pairing rule: every tool_use is answered by a tool_result in the very next message, and every
    tool_result answers a tool_use of the message just before it."""
    previous_ids: set[str] = set()
    for index, item in enumerate(messages):
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant", "system"):
            return f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'"
        blocks = item.get("content")
        blocks = blocks if isinstance(blocks, list) else []
        blocks = [block for block in blocks if isinstance(block, dict)]
        answered = [block.get("tool_use_id") for block in blocks if block.get("type") == "tool_result"]
        for position, tool_use_id in enumerate(answered):
            if tool_use_id not in previous_ids:
                return (
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                    "previous message."
                )
        if missing := previous_ids - set(answered):
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(missing))}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        previous_ids = {block["id"] for block in blocks if block.get("type") == "tool_use" and "id" in block}
    return None


def model_info(model_id: str) -> JsonObject:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id.replace("-", " ").title(),
        "created_at": "2025-09-29T00:00:00Z",
        "lifecycle": "active",
    }


def usage(reply: Reply, *, streaming_start: bool = False) -> JsonObject:
    if reply.wire_usage is not None:
        return dict(reply.wire_usage)
    counts = reply.usage
    result: JsonObject = {
        # Anthropic's input_tokens is only the uncached remainder of the prompt.
        "input_tokens": counts.input - counts.cache_read - counts.cache_write,
        "cache_creation_input_tokens": counts.cache_write,
        "cache_read_input_tokens": counts.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": counts.cache_write, "ephemeral_1h_input_tokens": 0},
        # message_start carries a placeholder output count; the real one comes in message_delta.
        "output_tokens": 1 if streaming_start else counts.output,
        "service_tier": "standard",
    }
    if counts.reasoning and not streaming_start:
        result["output_tokens_details"] = {"thinking_tokens": counts.reasoning}
    return result


def tool_id(call_id: str | None, index: int, message_id: str) -> str:
    return call_id or f"toolu_01{message_id[-16:]}{index:02d}"


def content(reply: Reply, message_id: str) -> list[JsonObject]:
    blocks: list[JsonObject] = []
    if reply.reasoning:
        blocks.append(
            {"type": "thinking", "thinking": reply.reasoning, "signature": signature("thinking", reply.reasoning)}
        )
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for index, call in enumerate(reply.tool_calls):
        blocks.append(
            {"type": "tool_use", "id": tool_id(call.id, index, message_id), "name": call.name, "input": call.arguments}
        )
    return blocks


def message(reply: Reply, model: str, message_id: str, *, blocks: bool = True, final: bool = True) -> JsonObject:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content(reply, message_id) if blocks else [],
        "stop_reason": STOP_REASONS[reply.stop_reason] if final else None,
        "stop_sequence": reply.stop_sequence if final else None,
        "usage": usage(reply, streaming_start=not final),
    }


def stream(reply: Reply, model: str, message_id: str) -> Iterator[bytes]:
    yield event(
        "message_start",
        {"type": "message_start", "message": message(reply, model, message_id, blocks=False, final=False)},
    )
    pinged = False
    for index, block in enumerate(content(reply, message_id)):
        kind = block["type"]
        start: JsonObject = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else dict(block)
        if kind == "text":
            start["text"] = ""
        elif kind == "tool_use":
            start["input"] = {}
        yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        if not pinged:
            # The API sends one ping early in every stream.
            yield event("ping", {"type": "ping"})
            pinged = True
        for delta in block_deltas(block, reply.chunks):
            yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    if not pinged:
        yield event("ping", {"type": "ping"})
    if reply.stream_error is not None:
        yield event("error", error_body(reply.stream_error))
        return
    final = usage(reply)
    final.pop("cache_creation", None)
    final.pop("service_tier", None)
    delta = {"stop_reason": STOP_REASONS[reply.stop_reason], "stop_sequence": reply.stop_sequence}
    yield event("message_delta", {"type": "message_delta", "delta": delta, "usage": final})
    yield event("message_stop", {"type": "message_stop"})


def block_deltas(block: JsonObject, pieces: int) -> Iterator[JsonObject]:
    kind = block["type"]
    if kind == "thinking":
        for piece in split(block["thinking"], pieces):
            yield {"type": "thinking_delta", "thinking": piece}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind == "text":
        for piece in split(block["text"], pieces):
            yield {"type": "text_delta", "text": piece}
    else:
        # The API opens every tool input with an empty fragment, then sends the JSON in pieces.
        yield {"type": "input_json_delta", "partial_json": ""}
        for piece in split(json.dumps(block["input"]), pieces):
            yield {"type": "input_json_delta", "partial_json": piece}
