"""Small facts about the Chat Completions wire shared by the request, response and stream modules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from translation.dialect import Dialect
from translation.errors import ApiError, openai_error_kind, parse_upstream_error
from translation.ir import CacheHint, InlineSource, MediaSource, StopReason, UrlSource, Usage, Warnings

DIALECT = Dialect.OPENAI_CHAT

# finish_reason -> StopReason (protocols.md §2.2). `function_call` is the legacy spelling of `tool_calls`.
FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.REFUSAL,
}

# StopReason -> finish_reason. Chat cannot tell a stop sequence from a natural end, nor overflow from length.
STOP_TO_FINISH: dict[StopReason, str] = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.CONTEXT_OVERFLOW: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.REFUSAL: "content_filter",
    StopReason.PAUSE: "stop",
    StopReason.ERROR: "stop",
    StopReason.OTHER: "stop",
}

_LOSSY_STOPS = (StopReason.PAUSE, StopReason.ERROR)


def stop_from_finish(finish_reason: str | None, *, has_tool_calls: bool, has_refusal: bool) -> StopReason:
    """Some OpenAI-compatible servers (Ollama, older vLLM) end tool calls with "stop", and OpenAI ends a
    structured-output refusal with "stop" + `message.refusal`: the content decides in those cases."""
    stop = FINISH_TO_STOP.get(finish_reason or "", StopReason.OTHER)
    if stop is StopReason.END_TURN and has_tool_calls:
        return StopReason.TOOL_USE
    if stop is StopReason.END_TURN and has_refusal:
        return StopReason.REFUSAL
    return stop


def stop_detail(finish_reason: str | None, stop: StopReason) -> str | None:
    """The raw finish_reason when it says more than `stop` (content_filter, function_call, unknown values)."""
    if finish_reason is None or STOP_TO_FINISH.get(stop) == finish_reason:
        return None
    return finish_reason


def finish_reason(stop: StopReason, detail: str | None, w: Warnings) -> str:
    """A detail that is itself a Chat finish_reason for the same stop wins, so Chat round trips are exact.
    Stop reasons Chat has no word for end in "stop", with a warning."""
    if detail is not None and FINISH_TO_STOP.get(detail) is stop:
        return detail
    if stop in _LOSSY_STOPS:
        w.drop(f"stop_reason:{stop.value}", "Chat has no such finish_reason; sent as stop", "finish_reason")
    return STOP_TO_FINISH[stop]


def unknown_fields(item: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The fields of a wire object a decoder does not model: they go to `extras`."""
    modelled = set(known)
    return {k: v for k, v in item.items() if k not in modelled}


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """Non-standard reasoning on a message or delta: `reasoning_content` (DeepSeek, vLLM) or `reasoning`
    (Ollama, OpenRouter, newer vLLM); servers sending both send the same text."""
    text = message.get("reasoning_content") or message.get("reasoning")
    return text if isinstance(text, str) and text else None


def synthetic_call_id(response_id: str, n: int) -> str:
    """Deterministic id for a tool call the upstream sent without one (Ollama, legacy function_call)."""
    return f"call_{response_id}_{n}"


# -- usage ---------------------------------------------------------------------------------------------------


def usage_from_wire(raw: Any) -> Usage | None:
    """`cached_tokens` / `cache_write_tokens` are inside `prompt_tokens`: Usage.from_openai splits them out."""
    if not isinstance(raw, Mapping):
        return None
    # A breakdown that is not an object is unknown, not an error.
    prompt_details = raw.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, Mapping) else {}
    completion_details = raw.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, Mapping) else {}
    return Usage.from_openai(
        raw.get("prompt_tokens"),
        raw.get("completion_tokens"),
        cached_tokens=prompt_details.get("cached_tokens"),
        cache_write_tokens=prompt_details.get("cache_write_tokens"),
        reasoning_tokens=completion_details.get("reasoning_tokens"),
    )


def usage_to_wire(usage: Usage) -> dict[str, Any] | None:
    """Only the numbers that are known: an unknown count is left out, never written as 0."""
    numbers = usage.to_openai()
    out: dict[str, Any] = {
        key: value
        for key, value in (
            ("prompt_tokens", numbers.prompt_tokens),
            ("completion_tokens", numbers.completion_tokens),
            ("total_tokens", numbers.total_tokens),
        )
        if value is not None
    }
    prompt_details = {
        k: v
        for k, v in (("cached_tokens", numbers.cached_tokens), ("cache_write_tokens", numbers.cache_write_tokens))
        if v is not None
    }
    if prompt_details:
        out["prompt_tokens_details"] = prompt_details
    if numbers.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": numbers.reasoning_tokens}
    return out or None


# -- media ---------------------------------------------------------------------------------------------------


def source_from_url(url: str, default_media_type: str | None = None) -> MediaSource:
    """`data:<type>;base64,<data>` becomes inline bytes; anything else is a URL the provider fetches."""
    if url.startswith("data:") and ";base64," in url:
        header, _, data = url.partition(";base64,")
        return InlineSource(header.removeprefix("data:") or default_media_type or "application/octet-stream", data)
    return UrlSource(url, default_media_type)


def data_url(source: InlineSource) -> str:
    return f"data:{source.media_type};base64,{source.data}"


# Chat breakpoint TTLs; a longer IR TTL rounds up so the cache lives at least as long as asked.
_TTL_SECONDS = {"30m": 1800, "12h": 43200}


def cache_from_wire(raw: Any) -> CacheHint | None:
    if not isinstance(raw, Mapping):
        return None
    return CacheHint(_TTL_SECONDS.get(raw.get("ttl", "")))


def cache_to_wire(hint: CacheHint) -> dict[str, Any]:
    if hint.ttl_seconds is None:
        return {"mode": "explicit"}
    return {"mode": "explicit", "ttl": "30m" if hint.ttl_seconds <= _TTL_SECONDS["30m"] else "12h"}


# -- errors --------------------------------------------------------------------------------------------------


def stream_error(payload: Mapping[str, Any]) -> ApiError:
    """An `{"error": …}` chunk: OpenAI-compatible servers sometimes put the HTTP status in `error.code`."""
    inner = payload.get("error")
    inner = inner if isinstance(inner, Mapping) else {}
    code = inner.get("code")
    if isinstance(code, int) and 400 <= code < 600:
        return parse_upstream_error(code, json.dumps(payload).encode())
    error = parse_upstream_error(502, json.dumps(payload).encode())
    known = openai_error_kind(code, inner.get("type"))
    if known is None:
        return error
    kind, status = known
    return replace(error, kind=kind, status=status)  # what the chunk says, not the 502 of an unknown failure


# --- stream usage for a pass-through client ---------------------------------------------------------------


# Request fields the Chat stream encoder honours itself whatever the upstream (the usage chunk): never "unmapped".
CLIENT_SIDE_FIELDS = frozenset({"stream_options"})


def usage_not_requested(body: Mapping[str, Any]) -> bool:
    """A streaming request that did not ask for `stream_options.include_usage`: its stream would report no
    usage at all (pitfall 29), so a proxy asks for it and keeps the extra chunk from the client."""
    if body.get("stream") is not True:
        return False
    options = body.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage"))


def with_usage_requested(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}


def is_usage_only_chunk(data: str) -> bool:
    """The closing `choices: []` chunk that carries usage when `include_usage` is on."""
    if not data.startswith("{") or '"usage"' not in data:
        return False
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and bool(chunk.get("usage"))
