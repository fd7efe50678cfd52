"""Small facts about the Responses wire shared by the request, response and stream modules.

Everything here is Responses-specific: data URLs, cache-breakpoint TTLs, item ids, the status table and the
usage object. Token numbers go through `translation.usage` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, kind_for_status, openai_error_kind, stream_error_event
from translation.ir import JSON, CacheHint, InlineSource, Response, StopReason, ToolCallPart, Usage
from translation.sse import SSEParser

DIALECT = Dialect.OPENAI_RESPONSES

# -- data URLs (images and files travel as `data:<type>;base64,<data>`) ---------------------------------------


def split_data_url(url: str) -> InlineSource | None:
    """The inline bytes of a base64 data URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return InlineSource(media_type=header[: -len(";base64")] or "application/octet-stream", data=data)


def data_url(source: InlineSource) -> str:
    return f"data:{source.media_type};base64,{source.data}"


# -- prompt-cache breakpoints ----------------------------------------------------------------------------------

_TTL_SECONDS = {"30m": 1800, "12h": 43200}


def decode_cache(part: Mapping[str, JSON]) -> CacheHint | None:
    breakpoint_ = part.get("prompt_cache_breakpoint")
    if not isinstance(breakpoint_, Mapping):
        return None
    return CacheHint(_TTL_SECONDS.get(str(breakpoint_.get("ttl"))))


def encode_cache(hint: CacheHint | None) -> dict[str, JSON]:
    """`prompt_cache_breakpoint` for a part; Responses offers 30m and 12h, so longer TTLs round up to 12h."""
    if hint is None:
        return {}
    breakpoint_: dict[str, JSON] = {"mode": "explicit"}
    if hint.ttl_seconds is not None:
        breakpoint_["ttl"] = "30m" if hint.ttl_seconds <= _TTL_SECONDS["30m"] else "12h"
    return {"prompt_cache_breakpoint": breakpoint_}


# -- ids -----------------------------------------------------------------------------------------------------


def response_id(upstream_id: str) -> str:
    """Responses clients expect `resp_…` ids (Codex replays them as previous_response_id)."""
    return upstream_id if upstream_id.startswith("resp_") else f"resp_{upstream_id}"


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """A deterministic output item id (`msg_`, `fc_`, `ctc_`, `rs_`) derived from the response id."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def synthetic_call_id(response_id: str, n: int) -> str:
    """For upstream calls without a `call_id` (README: `call_<response id>_<n>`, never random)."""
    return f"call_{response_id}_{n}"


# -- status <-> stop reason (protocols.md §2.2) ------------------------------------------------------------------

_INCOMPLETE_STOP = {"max_output_tokens": StopReason.MAX_TOKENS, "content_filter": StopReason.REFUSAL}


def decode_stop(status: str | None, incomplete_reason: str | None, *, has_calls: bool, has_refusal: bool) -> StopReason:
    """Responses has no finish reason: `status` plus `incomplete_details.reason` and what the output holds."""
    if status == "completed":
        if has_calls:
            return StopReason.TOOL_USE
        return StopReason.REFUSAL if has_refusal else StopReason.END_TURN
    if status == "incomplete":
        return _INCOMPLETE_STOP.get(incomplete_reason or "", StopReason.OTHER)
    if status == "failed":
        return StopReason.ERROR
    return StopReason.OTHER


def encode_status(stop: StopReason, *, has_refusal: bool) -> tuple[str, dict[str, JSON] | None]:
    """(`status`, `incomplete_details`) for a stop reason. A refusal the output already states as a refusal
    part is a completed response; otherwise it is reported as a content-filter stop."""
    if stop in (StopReason.MAX_TOKENS, StopReason.CONTEXT_OVERFLOW):
        return "incomplete", {"reason": "max_output_tokens"}
    if stop is StopReason.REFUSAL and not has_refusal:
        return "incomplete", {"reason": "content_filter"}
    if stop is StopReason.PAUSE:
        return "incomplete", None  # no matching reason exists; the turn is not finished (protocols.md §2.2)
    if stop is StopReason.ERROR:
        return "failed", None
    return "completed", None


def stop_detail(status: str | None, incomplete_reason: str | None) -> str | None:
    """The wire reason worth keeping beside the IR stop reason (None for a plain completion)."""
    if status == "incomplete":
        return incomplete_reason
    return None if status == "completed" else status


def has_calls(parts: tuple[Any, ...] | list[Any]) -> bool:
    return any(isinstance(p, ToolCallPart) for p in parts)


# -- usage -----------------------------------------------------------------------------------------------------


def decode_usage(usage: JSON) -> Usage:
    if not isinstance(usage, Mapping):
        return Usage()
    # A breakdown that is not an object is unknown, not an error.
    input_details = usage.get("input_tokens_details")
    input_details = input_details if isinstance(input_details, Mapping) else {}
    output_details = usage.get("output_tokens_details")
    output_details = output_details if isinstance(output_details, Mapping) else {}
    return Usage.from_openai(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        cached_tokens=input_details.get("cached_tokens"),
        cache_write_tokens=input_details.get("cache_write_tokens"),
        reasoning_tokens=output_details.get("reasoning_tokens"),
    )


def encode_usage(usage: Usage) -> dict[str, JSON] | None:
    """The wire usage object, or None when nothing is known. Its counts, cache and reasoning details included,
    are required integers (the SDK's ResponseUsage; Codex deserialises them strictly), so once anything is
    known an unknown count is written as 0."""
    if usage.total is None:
        return None
    numbers = usage.to_openai()
    input_details: dict[str, JSON] = {
        "cached_tokens": numbers.cached_tokens or 0,
        "cache_write_tokens": numbers.cache_write_tokens or 0,
    }
    return {
        "input_tokens": numbers.prompt_tokens or 0,
        "input_tokens_details": input_details,
        "output_tokens": numbers.completion_tokens or 0,
        "output_tokens_details": {"reasoning_tokens": numbers.reasoning_tokens or 0},
        "total_tokens": numbers.total_tokens or 0,
    }


# -- errors ----------------------------------------------------------------------------------------------------


def decode_error(error: JSON, status: JSON = None) -> ApiError:
    """An `error` event body, a WebSocket error's `error` object, or a failed response's `error`."""
    fields = error if isinstance(error, Mapping) else {}
    code = fields.get("code")
    code = str(code) if code else None
    known = openai_error_kind(code, fields.get("type"))
    http_status: int | None = None
    if isinstance(status, int):
        kind, http_status = kind_for_status(status), status  # the WebSocket error carries the HTTP status
    elif known is not None:
        kind, http_status = known
    else:
        kind = ErrorKind.INVALID_REQUEST if code else ErrorKind.UPSTREAM_ERROR
    message = str(fields.get("message") or "the upstream response failed")
    param = fields.get("param")
    return ApiError(kind, message, http_status, param, code)


def error_event(error: ApiError) -> dict[str, JSON]:
    """The `error` stream event body, exactly as `translation.errors.stream_error_event` spells it."""
    (event,) = SSEParser().feed(stream_error_event(DIALECT, error))
    body: dict[str, JSON] = event.json()
    return body


# `response.error.code` is a closed set (the SDK's ResponseError): the codes a proxied failure can take.
_FAILED_CODES = {"server_error", "rate_limit_exceeded", "invalid_prompt"}


def failed_error(error: ApiError) -> dict[str, JSON]:
    """`response.error` of a failed response: the `error` event's message, and its code when the closed set
    of response error codes has it, else `rate_limit_exceeded` for rate and quota limits and `server_error`
    for everything else (the `error` event before it carries the precise code)."""
    event = error_event(error)
    code = event["code"]
    if code not in _FAILED_CODES:
        limited = error.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUDGET_EXHAUSTED)
        code = "rate_limit_exceeded" if limited else "server_error"
    return {"code": code, "message": event["message"]}


def response_failed_error(response: Response) -> dict[str, JSON]:
    return {"code": "server_error", "message": response.stop_detail or "the model produced no usable output"}
