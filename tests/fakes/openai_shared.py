"""What the Chat Completions and Responses fakes share: Bearer auth, the `{"error": {...}}` envelope, `/v1/models`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from tests.fakes.base import JsonObject, ProviderFake, json_response, new_id
from tests.fakes.script import Failure
from tests.fakes.server import Request, Response

ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
KEYS_URL = "https://platform.openai.com/account/api-keys"
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth "
    "(i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys."
)


def error_body(failure: Failure, param: str | None = None) -> JsonObject:
    if failure.type is not None:
        kind = failure.type
    elif failure.status >= 500:
        kind = "server_error"
    else:
        kind = "requests" if failure.status == 429 else "invalid_request_error"
    code = failure.code or ERROR_CODES.get(failure.status)
    message = failure.message or f"Error {failure.status} from the fake upstream"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def masked(key: str) -> str:
    return f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"


class OpenAIFake(ProviderFake):
    default_models: ClassVar[Sequence[str]] = ("gpt-5", "gpt-5-mini", "gpt-4.1")

    def error(self, failure: Failure, param: str | None = None) -> Response:
        headers = {"x-request-id": new_id("req_", 32)}
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        return json_response(error_body(failure, param), failure.status, headers)

    def invalid(self, message: str, param: str | None = None, code: str | None = None) -> Response:
        return self.error(Failure(400, message, code=code), param)

    def authorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else None
        if self.api_key is None or key == self.api_key:
            return None
        if key is None:
            return self.error(Failure(401, NO_KEY))
        message = f"Incorrect API key provided: {masked(key)}. You can find your API key at {KEYS_URL}."
        return self.error(Failure(401, message))

    def not_found(self, request: Request) -> Response:
        return self.error(Failure(404, f"Invalid URL ({request.method} {request.path})"))

    def list_models(self, model_id: str) -> Response:
        models = [{"id": name, "object": "model", "created": 1754425777, "owned_by": "openai"} for name in self.models]
        if model_id:
            found = [model for model in models if model["id"] == model_id]
            message = f"The model '{model_id}' does not exist"
            missing = Failure(404, message, code="model_not_found")
            return json_response(found[0]) if found else self.error(missing, "model")
        return json_response({"object": "list", "data": models})

    def unknown_field(self, name: str) -> Response:
        return self.invalid(f"Unrecognized request argument supplied: {name}")

    def body_problem(self, body: Any, required: tuple[str, ...], known: set[str]) -> Response | None:
        """The checks both endpoints make before looking at the content."""
        if not isinstance(body, dict):
            return self.invalid("We could not parse the JSON body of your request.")
        if self.strict:
            for name in body:
                if name not in known:
                    return self.unknown_field(name)
        for name in required:
            if name not in body:
                return self.invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if "stream_options" in body and body.get("stream") is not True:
            return self.invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
        return None


def now() -> int:
    return int(time.time())
