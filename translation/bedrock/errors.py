"""Converse stream exceptions (`throttlingException`, `modelStreamErrorException`, …) -> `ApiError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.errors import ApiError, ErrorKind, bedrock_error_kind


def stream_error(exception_type: str, payload: Any) -> ApiError:
    """An exception message of a Converse stream (its `:exception-type` and `{"message": …}` payload); unknown
    exception names are upstream errors. `modelStreamErrorException` also carries the model's own
    `originalStatusCode` / `originalMessage`, kept in the message."""
    payload = payload if isinstance(payload, Mapping) else {}
    message = str(payload.get("message") or payload.get("Message") or f"the upstream reported {exception_type}")
    original = payload.get("originalMessage")
    if isinstance(original, str) and original and original not in message:
        message = f"{message} ({original})"
    kind, status = bedrock_error_kind(exception_type) or (ErrorKind.UPSTREAM_ERROR, None)
    return ApiError(kind, message, status=status)
