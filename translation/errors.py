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


# Bedrock (AWS rest-json): the exception name a client reads from the `x-amzn-ErrorType` header, per kind.
_BEDROCK_TYPE: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "ValidationException",
    ErrorKind.AUTHENTICATION: "UnrecognizedClientException",
    ErrorKind.PERMISSION: "AccessDeniedException",
    ErrorKind.NOT_FOUND: "ResourceNotFoundException",
    ErrorKind.REQUEST_TOO_LARGE: "ValidationException",
    ErrorKind.RATE_LIMITED: "ThrottlingException",
    ErrorKind.BUDGET_EXHAUSTED: "ServiceQuotaExceededException",
    ErrorKind.UPSTREAM_ERROR: "InternalServerException",
    ErrorKind.OVERLOADED: "ServiceUnavailableException",
    ErrorKind.UNAVAILABLE: "ServiceUnavailableException",
    ErrorKind.TIMEOUT: "ModelTimeoutException",
}

# The exceptions a Converse stream can carry (members of ConverseStreamOutput), per kind.
_BEDROCK_STREAM_TYPE: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "validationException",
    ErrorKind.AUTHENTICATION: "validationException",
    ErrorKind.PERMISSION: "validationException",
    ErrorKind.NOT_FOUND: "validationException",
    ErrorKind.REQUEST_TOO_LARGE: "validationException",
    ErrorKind.RATE_LIMITED: "throttlingException",
    ErrorKind.BUDGET_EXHAUSTED: "throttlingException",
    ErrorKind.UPSTREAM_ERROR: "internalServerException",
    ErrorKind.OVERLOADED: "serviceUnavailableException",
    ErrorKind.UNAVAILABLE: "serviceUnavailableException",
    ErrorKind.TIMEOUT: "modelStreamErrorException",
}

# Bedrock exception names (HTTP `x-amzn-ErrorType`, or a stream exception with its first letter lowered) ->
# (kind, the status to report when the name arrives without one, i.e. in a stream).
_BEDROCK_KINDS: dict[str, tuple[ErrorKind, int | None]] = {
    "ValidationException": (ErrorKind.INVALID_REQUEST, None),
    "ConflictException": (ErrorKind.INVALID_REQUEST, None),
    "AccessDeniedException": (ErrorKind.PERMISSION, None),
    "UnrecognizedClientException": (ErrorKind.AUTHENTICATION, None),
    "InvalidSignatureException": (ErrorKind.AUTHENTICATION, None),
    "IncompleteSignatureException": (ErrorKind.AUTHENTICATION, None),
    "MissingAuthenticationTokenException": (ErrorKind.AUTHENTICATION, None),
    "ExpiredTokenException": (ErrorKind.AUTHENTICATION, None),
    "ResourceNotFoundException": (ErrorKind.NOT_FOUND, None),
    "ThrottlingException": (ErrorKind.RATE_LIMITED, None),
    "ServiceQuotaExceededException": (ErrorKind.RATE_LIMITED, None),
    "ModelNotReadyException": (ErrorKind.UNAVAILABLE, None),
    "ServiceUnavailableException": (ErrorKind.OVERLOADED, 503),
    "ModelTimeoutException": (ErrorKind.TIMEOUT, None),
    "InternalServerException": (ErrorKind.UPSTREAM_ERROR, 500),
    "ModelErrorException": (ErrorKind.UPSTREAM_ERROR, None),
    "ModelStreamErrorException": (ErrorKind.UPSTREAM_ERROR, None),
}

BEDROCK_ERROR_TYPE_HEADER = "x-amzn-ErrorType"


def bedrock_error_kind(error_type: object) -> tuple[ErrorKind, int | None] | None:
    """(kind, status for an error that came without one) of a Bedrock exception name: `ThrottlingException`,
    the stream member `throttlingException`, or a header value with a namespace (`ThrottlingException:http://…`).
    None when unknown."""
    if not isinstance(error_type, str) or not error_type:
        return None
    name = error_type.split(":", 1)[0].strip()
    return _BEDROCK_KINDS.get(name[:1].upper() + name[1:])


def bedrock_stream_exception(error: ApiError) -> str:
    """The Converse stream exception member (`throttlingException`, …) that reports `error` mid-stream."""
    return _BEDROCK_STREAM_TYPE[error.kind]


def error_headers(dialect: Dialect, error: ApiError) -> dict[str, str]:
    """Response headers an error answer needs besides its body: Bedrock clients (botocore) read the exception
    name from `x-amzn-ErrorType`, not from the body. Empty for the other dialects."""
    if dialect is Dialect.BEDROCK:
        return {BEDROCK_ERROR_TYPE_HEADER: _BEDROCK_TYPE[error.kind]}
    return {}


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
    if dialect is Dialect.BEDROCK:
        return {"message": error.message}  # the exception name goes in a header: `error_headers`
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


def parse_upstream_error(status: int, body: bytes, *, error_type: str | None = None) -> ApiError:
    """Read an error response from any of the providers into an `ApiError` keeping its status.

    The OpenAI, Anthropic and Gemini envelopes put the message at `error.message` (Anthropic nests it under
    `type: error`), Bedrock at `message`, so one reader serves them; a body that is not JSON is carried as text,
    shortened. `error_type`: Bedrock's `x-amzn-ErrorType` response header, which names the exception (its kind
    is more precise than the status: a 424 ModelErrorException is the model's failure, not the client's).
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
        elif isinstance(payload.get("Message"), str):  # some AWS services capitalise it
            message = payload["Message"]
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"upstream answered HTTP {status}"
    bedrock = bedrock_error_kind(error_type)
    kind = bedrock[0] if bedrock is not None else kind_for_status(status)
    return ApiError(kind=kind, message=message, status=status, code=code, retry_after=retry_after)


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
    """The SSE frame that reports a failure after a stream has started (the status line is long gone); for
    Bedrock, an event-stream exception message (`translation/bedrock/eventstream.py`)."""
    body = error_body(dialect, error)
    if dialect is Dialect.BEDROCK:
        from translation.bedrock.eventstream import encode_message  # here: the bedrock package imports this module

        return encode_message(bedrock_stream_exception(error), json.dumps(body).encode(), "exception")
    if dialect is Dialect.ANTHROPIC:
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    if dialect is Dialect.OPENAI_RESPONSES:
        inner = body["error"]
        event = {"type": "error", "code": inner["code"] or inner["type"], "message": inner["message"], "param": None}
        return b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"
    return b"data: " + json.dumps(body).encode() + b"\n\n"
