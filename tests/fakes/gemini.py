"""Fake Gemini Developer API: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (SSE with
`?alt=sse`, else a streamed JSON array), `:countTokens`, and `GET /v1beta/models`; `/v1/...` is answered the same
(google-genai 3.4 defaults to v1).

Wire names are the camelCase ones of google-genai's `*_from_mldev` converters. The model is in the path, function
calls arrive whole (never as argument deltas) and carry no id unless asked for, and the first one carries a
`thoughtSignature`, as Gemini 3 does. Candidates' token counts exclude thoughts.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

from google.genai import types

from tests.fakes.base import JsonObject, ProviderFake, dumps, estimate_tokens, json_response, new_id, signature
from tests.fakes.script import Failure, Reply, split
from tests.fakes.server import Request, Response

ROUTE = re.compile(r"/(v1|v1beta|v1alpha)/models(?:/([^/:]+))?(?::([A-Za-z]+))?")
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
    "UNAVAILABLE": "The model is overloaded. Please try again later.",
    "INTERNAL": "An internal error has occurred.",
}
FINISH_REASONS = {
    "end": "STOP",
    "max_tokens": "MAX_TOKENS",
    "tool_calls": "STOP",  # Gemini has no tool-call finish reason
    "stop_sequence": "STOP",
    "content_filter": "SAFETY",
}
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other "
    "form of API consumer identity to call this API."
)
BAD_KEY = "API key not valid. Please pass a valid API key."


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def spellings(names: set[str]) -> set[str]:
    # The JSON parser behind the API accepts proto field names both in lowerCamelCase and in snake_case.
    return {camel(name) for name in names} | {snake(name) for name in names}


# Request fields, from the SDK's mldev converters (models.py `_GenerateContent*_to_mldev`).
FIELDS = spellings(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "safetySettings",
        "cachedContent",
        "generationConfig",
        "labels",
        "serviceTier",
        "store",
        "continuationToken",
    }
)
GENERATION_FIELDS = spellings(set(types.GenerationConfig.model_fields) | {"imageConfig", "modelConfig"})


def sse(obj: JsonObject) -> bytes:
    return b"data: " + dumps(obj) + b"\r\n\r\n"


def error_body(failure: Failure, details: list[JsonObject] | None = None) -> JsonObject:
    status = failure.type or STATUSES.get(failure.status, "INTERNAL" if failure.status >= 500 else "INVALID_ARGUMENT")
    error: JsonObject = {"code": failure.status, "message": failure.message or DEFAULT_MESSAGES.get(status, status)}
    error["status"] = status
    if failure.retry_after is not None:
        # Gemini says when to retry in a RetryInfo detail rather than a retry-after header.
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{failure.retry_after:g}s"}
        details = [*(details or []), retry]
    if details:
        error["details"] = details
    return {"error": error}


class GeminiFake(ProviderFake):
    name = "gemini"
    title = "Gemini"
    default_models = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview")

    def __init__(self, *, function_call_ids: bool = False, **options: Any) -> None:
        """`function_call_ids`: give functionCall parts an `id` (the Developer API usually sends none)."""
        super().__init__(**options)
        self.function_call_ids = function_call_ids

    def __call__(self, request: Request) -> Response:
        match = ROUTE.fullmatch(request.path)
        if match is None:
            return self.fail(404, f"Method not found: {request.method} {request.path}")
        _, model, method = match.groups()
        if denied := self._authorized(request):
            return denied
        if request.method == "GET" and method is None:
            return self._models(model, request.query)
        if request.method == "POST" and model and method in ("generateContent", "streamGenerateContent"):
            return self._generate(request, model, method == "streamGenerateContent")
        if request.method == "POST" and model and method == "countTokens":
            tokens = estimate_tokens(request)
            return json_response(
                {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
            )
        return self.fail(404, f"Method not found: {request.method} {request.path}")

    def error(self, failure: Failure, details: list[JsonObject] | None = None) -> Response:
        return json_response(
            error_body(failure, details), failure.status, {"content-type": "application/json; charset=UTF-8"}
        )

    def _authorized(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if self.api_key is None or key == self.api_key:
            return None
        if key is None:
            return self.fail(403, NO_KEY)
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return self.error(Failure(400, BAD_KEY), [info])

    def _invalid_field(self, name: str, where: str | None = None) -> Response:
        at = f" at '{snake(where)}'" if where else ""
        message = f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
        violation = {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"description": message}],
        }
        return self.error(Failure(400, message), [violation])

    def _body_problem(self, body: Any) -> Response | None:
        if not isinstance(body, dict):
            return self.fail(400, "Invalid JSON payload received.")
        if self.strict:
            for name in body:
                if name not in FIELDS:
                    return self._invalid_field(name)
            config = body.get("generationConfig") or body.get("generation_config") or {}
            for name in config:
                if name not in GENERATION_FIELDS:
                    return self._invalid_field(name, "generationConfig")
        contents = body.get("contents")
        if not contents:
            return self.fail(400, "* GenerateContentRequest.contents: contents is not specified")
        return self._contents_problem(contents)

    def _contents_problem(self, contents: Any) -> Response | None:
        """Roles, and that a turn of function responses answers every call of the model turn just before it."""
        calls_before = 0
        for item in contents if isinstance(contents, list) else []:
            if not isinstance(item, dict) or item.get("role", "user") not in ("user", "model"):
                return self.fail(400, "Please use a valid role: user, model.")
            parts = [part for part in item.get("parts") or [] if isinstance(part, dict)]
            responses = sum(1 for part in parts if "functionResponse" in part or "function_response" in part)
            if responses and not calls_before:
                return self.fail(
                    400, "Please ensure that function response turn comes immediately after a function call turn."
                )
            if calls_before and responses != calls_before:
                return self.fail(
                    400,
                    "Please ensure that the number of function response parts is equal to the number of function "
                    "call parts of the function call turn.",
                )
            calls_before = sum(1 for part in parts if "functionCall" in part or "function_call" in part)
        return None

    def _generate(self, request: Request, model: str, stream: bool) -> Response:
        body = request.json
        if problem := self._body_problem(body):
            return problem
        reply = self.next_reply(model)
        render = Render(reply, model, self.function_call_ids)
        sse_mode = request.query.get("alt") == "sse"
        return self.answer(
            reply,
            stream,
            render.final,
            render.events if sse_mode else render.json_array,
            stream_type="text/event-stream" if sse_mode else "application/json; charset=UTF-8",
        )

    def _models(self, model: str | None, query: dict[str, str]) -> Response:
        models = [model_info(name) for name in self.models]
        if model:
            found = [info for info in models if info["name"] == f"models/{model}"]
            return json_response(found[0]) if found else self.fail(404, f"models/{model} is not found for API version")
        # Pages as the API pages them: `pageSize` (default 50, at most 1000), then the opaque `pageToken`.
        size = min(int(query.get("pageSize") or 50), 1000)
        start = int(base64.urlsafe_b64decode(query["pageToken"])) if query.get("pageToken") else 0
        body: JsonObject = {"models": models[start : start + size]}
        if start + size < len(models):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return json_response(body)


def model_info(model_id: str) -> JsonObject:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": model_id.replace("-", " ").title(),
        "description": f"Fake {model_id}",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


class Render:
    """One reply as a GenerateContentResponse, or as the chunks of a stream (each a GenerateContentResponse)."""

    def __init__(self, reply: Reply, model: str, function_call_ids: bool) -> None:
        self.reply = reply
        self.model = model
        self.response_id = new_id("", 22)
        self.function_call_ids = function_call_ids

    def usage(self, final: bool) -> JsonObject:
        if self.reply.wire_usage is not None:
            return dict(self.reply.wire_usage)
        counts = self.reply.usage
        usage: JsonObject = {"promptTokenCount": counts.input}
        if final:
            # candidatesTokenCount excludes thinking; totalTokenCount includes it.
            usage["candidatesTokenCount"] = counts.output - counts.reasoning
        usage["totalTokenCount"] = counts.input + (counts.output if final else 0)
        if counts.cache_read:
            usage["cachedContentTokenCount"] = counts.cache_read
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": counts.input}]
        if final and counts.reasoning:
            usage["thoughtsTokenCount"] = counts.reasoning
        return usage

    def chunk(self, parts: list[JsonObject], final: bool) -> JsonObject:
        candidate: JsonObject = {"content": {"parts": parts, "role": "model"}}
        if final:
            candidate["finishReason"] = FINISH_REASONS[self.reply.stop_reason]
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": self.usage(final),
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def part_groups(self, pieces: int) -> list[list[JsonObject]]:
        """The parts of each stream chunk (one group in all for a plain response); thoughts, then text, then calls."""
        reply = self.reply
        groups = [[{"text": piece, "thought": True}] for piece in split(reply.reasoning, pieces)]
        groups += [[{"text": piece}] for piece in split(reply.text, pieces)]
        calls: list[JsonObject] = []
        for index, call in enumerate(reply.tool_calls):
            function: JsonObject = {"name": call.name, "args": call.arguments}
            if call.id or self.function_call_ids:
                function["id"] = call.id or f"call_{self.response_id[:8]}{index:02d}"
            calls.append({"functionCall": function})
        if calls:
            calls[0]["thoughtSignature"] = signature("thought", reply.reasoning + reply.text)
            groups.append(calls)
        elif reply.reasoning and groups:
            # Without calls, the signature rides on the last part of the turn.
            groups[-1][-1]["thoughtSignature"] = signature("thought", reply.reasoning + reply.text)
        return groups or [[{"text": ""}]]

    def final(self) -> JsonObject:
        merged: list[JsonObject] = []
        for group in self.part_groups(1):
            merged.extend(group)
        return self.chunk(merged, final=True)

    def chunks(self) -> Iterator[JsonObject]:
        groups = self.part_groups(self.reply.chunks)
        failing = self.reply.stream_error is not None
        for number, group in enumerate(groups, 1):
            yield self.chunk(group, final=number == len(groups) and not failing)
        if self.reply.stream_error is not None:
            yield error_body(self.reply.stream_error)

    def events(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield sse(chunk)

    def json_array(self) -> Iterator[bytes]:
        """Without alt=sse the API streams one JSON array, element by element."""
        separator = b"["
        for chunk in self.chunks():
            yield separator + dumps(chunk)
            separator = b",\r\n"
        yield b"]"
