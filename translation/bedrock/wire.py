"""Small facts about the Bedrock Converse wire shared by the request, response and stream modules."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from translation.dialect import Dialect
from translation.ir import CacheHint, OpaqueSignature, SignatureKind, StopReason, Usage

DIALECT = Dialect.BEDROCK

STOP_FROM_WIRE: dict[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "tool_use": StopReason.TOOL_USE,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "guardrail_intervened": StopReason.REFUSAL,
    "content_filtered": StopReason.REFUSAL,
    "malformed_model_output": StopReason.ERROR,
    "malformed_tool_use": StopReason.ERROR,
    "model_context_window_exceeded": StopReason.CONTEXT_OVERFLOW,
}
# Wire values that say more than the IR reason does: kept as `stop_detail` and sent back as they came.
DETAILED_STOPS = frozenset({"guardrail_intervened", "content_filtered", "malformed_model_output", "malformed_tool_use"})
STOP_TO_WIRE: dict[StopReason, str] = {
    StopReason.END_TURN: "end_turn",
    StopReason.TOOL_USE: "tool_use",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.REFUSAL: "content_filtered",
    StopReason.ERROR: "malformed_model_output",
    StopReason.CONTEXT_OVERFLOW: "model_context_window_exceeded",
    # No Bedrock form: the turn simply ended (a warning says so).
    StopReason.PAUSE: "end_turn",
    StopReason.OTHER: "end_turn",
}

_TTL_SECONDS = {"5m": 300, "1h": 3600}


def cache_from_wire(cache_point: Any) -> CacheHint:
    """A `cachePoint` block (`{"type": "default", "ttl"?: "5m" | "1h"}`) as the hint on the item before it."""
    ttl = cache_point.get("ttl") if isinstance(cache_point, Mapping) else None
    return CacheHint(_TTL_SECONDS.get(str(ttl))) if ttl is not None else CacheHint()


def cache_to_wire(hint: CacheHint) -> dict[str, Any]:
    """`{"cachePoint": {...}}` with the offered TTL nearest to the hint's (5m or 1h), or none for the default."""
    point: dict[str, Any] = {"type": "default"}
    if hint.ttl_seconds is not None:
        point["ttl"] = min(_TTL_SECONDS, key=lambda name: abs(_TTL_SECONDS[name] - (hint.ttl_seconds or 0)))
    return {"cachePoint": point}


def reasoning_signature(value: str) -> OpaqueSignature:
    return OpaqueSignature(DIALECT, SignatureKind.BEDROCK_SIGNATURE, value)


def redacted_signature(data: str) -> OpaqueSignature:
    return OpaqueSignature(DIALECT, SignatureKind.BEDROCK_REDACTED, data)


def usage_from_wire(usage: Any) -> Usage:
    """Converse `usage`, normalised by `Usage.from_bedrock` (input excludes the cache buckets, as Anthropic's)."""
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage.from_bedrock(
        usage.get("inputTokens"),
        usage.get("outputTokens"),
        usage.get("cacheReadInputTokens"),
        usage.get("cacheWriteInputTokens"),
    )


def usage_to_wire(usage: Usage) -> dict[str, Any]:
    """Converse `usage`: the three required counts are 0 when unknown (TokenUsage requires them), the cache
    counts left out when unknown."""
    numbers = usage.to_bedrock()
    out: dict[str, Any] = {
        "inputTokens": numbers.input_tokens or 0,
        "outputTokens": numbers.output_tokens or 0,
        "totalTokens": numbers.total_tokens or 0,
    }
    if numbers.cache_read_input_tokens is not None:
        out["cacheReadInputTokens"] = numbers.cache_read_input_tokens
    if numbers.cache_write_input_tokens is not None:
        out["cacheWriteInputTokens"] = numbers.cache_write_input_tokens
    return out


_TOOL_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_.:-]")


def wire_tool_id(call_id: str) -> str:
    """A toolUseId Bedrock accepts (`[a-zA-Z0-9_.:-]+`, at most 64 characters); applied to calls and results
    alike so they still pair up. A longer id keeps its start and gets a digest of the whole for uniqueness."""
    safe = _TOOL_ID_UNSAFE.sub("_", call_id) or "tooluse_"
    if len(safe) <= 64:
        return safe
    return f"{safe[:47]}_{hashlib.sha256(call_id.encode()).hexdigest()[:16]}"


def derived_id(*parts: Any) -> str:
    """A deterministic response id: Converse answers carry none (only the `x-amzn-RequestId` header, which routing
    may put in its place), and the IR never uses randomness."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"bedrock_{digest[:24]}"


def rest(data: Mapping[str, Any], known: tuple[str, ...] | frozenset[str]) -> dict[str, Any]:
    """The fields of `data` a decoder does not model, for `own_extras`."""
    return {k: v for k, v in data.items() if k not in known}


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one: wire bodies are untrusted."""
    return value if isinstance(value, Mapping) else {}


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
