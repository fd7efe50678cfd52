"""Errors in each dialect's own envelope, and the reverse: reading an upstream's error body.

One table maps a dialect-neutral `ErrorKind` to each dialect's status and type names, so a 429 stays a
rate-limit error and a 529/503 stays an overload error whichever side of the proxy it crosses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from translation.dialect import Dialect


class ErrorKind(StrEnum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXHAUSTED = "budget_exhausted"
    UPSTREAM_ERROR = "upstream_error"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class ApiError:
    """A failure to report to a client. `status` overrides the kind's default status when set."""

    kind: ErrorKind
    message: str
    status: int | None = None
    param: str | None = None
    code: str | None = None
    retry_after: str | None = None

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else _DEFAULT_STATUS[self.kind]


_DEFAULT_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.AUTHENTICATION: 401,
    ErrorKind.PERMISSION: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.REQUEST_TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.BUDGET_EXHAUSTED: 429,
    ErrorKind.UPSTREAM_ERROR: 502,
    ErrorKind.OVERLOADED: 529,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}

# Anthropic error `type` per kind (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPE: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.REQUEST_TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.BUDGET_EXHAUSTED: "rate_limit_error",
    ErrorKind.UPSTREAM_ERROR: "api_error",
    ErrorKind.OVERLOADED: "overloaded_error",
    ErrorKind.UNAVAILABLE: "api_error",
    ErrorKind.TIMEOUT: "timeout_error",
}

# OpenAI error (`type`, `code`) per kind.
_OPENAI_TYPE: dict[ErrorKind, tuple[str, str | None]] = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: ("permission_error", None),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMITED: ("rate_limit_error", "rate_limit_exceeded"),
    ErrorKind.BUDGET_EXHAUSTED: ("insufficient_quota", "insufficient_quota"),
    ErrorKind.UPSTREAM_ERROR: ("server_error", None),
    ErrorKind.OVERLOADED: ("server_error", "server_is_overloaded"),
    ErrorKind.UNAVAILABLE: ("server_error", "service_unavailable"),
    ErrorKind.TIMEOUT: ("timeout_error", "timeout"),
}

# Gemini (google.rpc) status per kind.
_GEMINI_STATUS: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "INVALID_ARGUMENT",
    ErrorKind.AUTHENTICATION: "UNAUTHENTICATED",
    ErrorKind.PERMISSION: "PERMISSION_DENIED",
    ErrorKind.NOT_FOUND: "NOT_FOUND",
    ErrorKind.REQUEST_TOO_LARGE: "INVALID_ARGUMENT",
    ErrorKind.RATE_LIMITED: "RESOURCE_EXHAUSTED",
    ErrorKind.BUDGET_EXHAUSTED: "RESOURCE_EXHAUSTED",
    ErrorKind.UPSTREAM_ERROR: "INTERNAL",
    ErrorKind.OVERLOADED: "UNAVAILABLE",
    ErrorKind.UNAVAILABLE: "UNAVAILABLE",
    ErrorKind.TIMEOUT: "DEADLINE_EXCEEDED",
}


def status_for(dialect: Dialect, error: ApiError) -> int:
    """The HTTP status a client of `dialect` expects: only Anthropic has 529 for overload."""
    status = error.http_status
    if status == 529 and dialect is not Dialect.ANTHROPIC:
        return 503
    return status


def error_body(dialect: Dialect, error: ApiError) -> dict[str, Any]:
    """The JSON error envelope a client of `dialect` parses."""
    if dialect is Dialect.ANTHROPIC:
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPE[error.kind], "message": error.message}}
    if dialect is Dialect.GEMINI:
        return {
            "error": {
                "code": status_for(dialect, error),
                "message": error.message,
                "status": _GEMINI_STATUS[error.kind],
            }
        }
    error_type, code = _OPENAI_TYPE[error.kind]
    return {
        "error": {
            "message": error.message,
            "type": error_type,
            "param": error.param,
            "code": error.code or code,
        }
    }


# OpenAI error `code` or `type` values (Chat error chunks, Responses `error` events and failed responses) ->
# (kind, the HTTP status OpenAI answers that error with when it differs from the kind's default).
_OPENAI_KINDS: dict[str, tuple[ErrorKind, int | None]] = {
    "rate_limit_exceeded": (ErrorKind.RATE_LIMITED, None),
    "rate_limit_error": (ErrorKind.RATE_LIMITED, None),
    "insufficient_quota": (ErrorKind.BUDGET_EXHAUSTED, None),
    "server_error": (ErrorKind.UPSTREAM_ERROR, 500),
    "server_is_overloaded": (ErrorKind.OVERLOADED, None),
    "service_unavailable": (ErrorKind.UNAVAILABLE, None),
    "timeout": (ErrorKind.TIMEOUT, None),
    "timeout_error": (ErrorKind.TIMEOUT, None),
    "invalid_api_key": (ErrorKind.AUTHENTICATION, None),
    "authentication_error": (ErrorKind.AUTHENTICATION, None),
    "permission_error": (ErrorKind.PERMISSION, None),
    "model_not_found": (ErrorKind.NOT_FOUND, None),
    "not_found_error": (ErrorKind.NOT_FOUND, None),
    "request_too_large": (ErrorKind.REQUEST_TOO_LARGE, None),
    "invalid_request_error": (ErrorKind.INVALID_REQUEST, None),
}


def openai_error_kind(code: object, error_type: object = None) -> tuple[ErrorKind, int | None] | None:
    """(kind, status or None for the kind's default) of an OpenAI error by its `code`, else its `type`;
    None when neither is known. The code is the more specific of the two (`server_error` type, `timeout`
    code)."""
    for name in (code, error_type):
        if isinstance(name, str) and name in _OPENAI_KINDS:
            return _OPENAI_KINDS[name]
    return None


def kind_for_status(status: int) -> ErrorKind:
    """Classify an upstream HTTP error status."""
    if status in (529, 503):
        # Anthropic says 529, everyone else 503: both mean "overloaded, try again", and clients retry on both.
        return ErrorKind.OVERLOADED
    if status in (504, 408):
        return ErrorKind.TIMEOUT
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status == 413:
        return ErrorKind.REQUEST_TOO_LARGE
    return {401: ErrorKind.AUTHENTICATION, 403: ErrorKind.PERMISSION, 404: ErrorKind.NOT_FOUND}.get(
        status, ErrorKind.INVALID_REQUEST if 400 <= status < 500 else ErrorKind.UPSTREAM_ERROR
    )


def parse_upstream_error(status: int, body: bytes) -> ApiError:
    """Read an error response from any of the four providers into an `ApiError` keeping its status.

    All four envelopes put the message at `error.message` (Anthropic nests it under `type: error`), so one
    reader serves them; a body that is not JSON is carried as text, shortened.
    """
    message = ""
    code: str | None = None
    retry_after: str | None = None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            raw_code = err.get("code") if not isinstance(err.get("code"), int) else None
            code = str(raw_code) if raw_code else None
            retry_after = _google_retry_delay(err.get("details"))
        elif isinstance(err, str):
            message = err
        elif isinstance(payload.get("message"), str):
            message = payload["message"]
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"upstream answered HTTP {status}"
    return ApiError(kind=kind_for_status(status), message=message, status=status, code=code, retry_after=retry_after)


def _google_retry_delay(details: Any) -> str | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "7s"`): Gemini's 429 carries no header."""
    for detail in details if isinstance(details, list) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(max(0, round(float(delay[:-1]))))
            except ValueError:
                return None
    return None


def stream_error_event(dialect: Dialect, error: ApiError) -> bytes:
    """The SSE frame that reports a failure after a stream has started (the status line is long gone)."""
    body = error_body(dialect, error)
    if dialect is Dialect.ANTHROPIC:
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    if dialect is Dialect.OPENAI_RESPONSES:
        inner = body["error"]
        event = {"type": "error", "code": inner["code"] or inner["type"], "message": inner["message"], "param": None}
        return b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"
    return b"data: " + json.dumps(body).encode() + b"\n\n"
