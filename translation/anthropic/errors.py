"""Anthropic error `type` names -> ErrorKind, for the in-stream `error` event of an Anthropic upstream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.errors import ApiError, ErrorKind

_KINDS = {
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
    "authentication_error": ErrorKind.AUTHENTICATION,
    "billing_error": ErrorKind.BUDGET_EXHAUSTED,
    "permission_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.REQUEST_TOO_LARGE,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "timeout_error": ErrorKind.TIMEOUT,
    "api_error": ErrorKind.UPSTREAM_ERROR,
    "overloaded_error": ErrorKind.OVERLOADED,
}


# The HTTP status Anthropic answers each error type with (https://docs.anthropic.com/en/api/errors), where it
# differs from the kind's default: an in-stream error carries no status line, only its type.
_STATUS = {"api_error": 500, "billing_error": 402}


def stream_error(payload: Mapping[str, Any]) -> ApiError:
    """`{"type": "error", "error": {"type": …, "message": …}}` as an ApiError (unknown types: upstream error)."""
    error = payload.get("error")
    error = error if isinstance(error, Mapping) else {}
    error_type = str(error.get("type", ""))
    message = str(error.get("message") or "the upstream reported an error mid-stream")
    # The Anthropic type is carried by `kind`; `code` is what OpenAI clients read, so it stays unset here rather
    # than showing them an Anthropic type name.
    return ApiError(_KINDS.get(error_type, ErrorKind.UPSTREAM_ERROR), message, status=_STATUS.get(error_type))
