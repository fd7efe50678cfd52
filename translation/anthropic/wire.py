"""Small facts about the Anthropic wire shared by the request, response and stream modules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.ir import CacheHint, OpaqueSignature, SignatureKind, StopReason, Usage

DIALECT = Dialect.ANTHROPIC
DEFAULT_VERSION = "2023-06-01"
# The first API version without sampling parameters and with `{role: "system"}` messages (protocols.md §1.1).
SAMPLING_FREE_VERSION = "2026-10-21"

STOP_FROM_WIRE: dict[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "pause_turn": StopReason.PAUSE,
    "refusal": StopReason.REFUSAL,
    "model_context_window_exceeded": StopReason.CONTEXT_OVERFLOW,
}
STOP_TO_WIRE: dict[StopReason, str] = {stop: wire for wire, stop in STOP_FROM_WIRE.items()}
# Anthropic has no "the output was unusable" or "other" reason: the turn simply ended (protocols.md §2.2).
STOP_TO_WIRE[StopReason.ERROR] = "end_turn"
STOP_TO_WIRE[StopReason.OTHER] = "end_turn"

_TTL_SECONDS = {"5m": 300, "1h": 3600}


def new_api(target: TargetOptions) -> bool:
    """Whether the upstream speaks the sampling-free API version (dates compare correctly as strings)."""
    return str(target.flags.get("anthropic_version", DEFAULT_VERSION)) >= SAMPLING_FREE_VERSION


def cache_from_wire(value: Any) -> CacheHint | None:
    if not isinstance(value, Mapping):
        return None
    return CacheHint(_TTL_SECONDS.get(str(value.get("ttl")))) if "ttl" in value else CacheHint()


def cache_to_wire(hint: CacheHint) -> dict[str, Any]:
    """`{type: ephemeral}` plus the offered TTL nearest to the hint's (5m or 1h)."""
    if hint.ttl_seconds is None:
        return {"type": "ephemeral"}
    ttl = min(_TTL_SECONDS, key=lambda name: abs(_TTL_SECONDS[name] - (hint.ttl_seconds or 0)))
    return {"type": "ephemeral", "ttl": ttl}


def thinking_signature(value: str) -> OpaqueSignature:
    return OpaqueSignature(DIALECT, SignatureKind.ANTHROPIC_SIGNATURE, value)


def redacted_signature(data: str) -> OpaqueSignature:
    return OpaqueSignature(DIALECT, SignatureKind.ANTHROPIC_REDACTED, data)


def usage_from_wire(usage: Any) -> Usage:
    """Anthropic counts, normalised by `Usage.from_anthropic`; absent fields stay None."""
    if not isinstance(usage, Mapping):
        return Usage()
    details = usage.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, Mapping) else None
    return Usage.from_anthropic(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        usage.get("cache_read_input_tokens"),
        usage.get("cache_creation_input_tokens"),
        thinking,
    )


def usage_to_wire(usage: Usage, *, required: tuple[str, ...] = ("input_tokens", "output_tokens")) -> dict[str, Any]:
    """Anthropic `usage`: the `required` counts are 0 when unknown (the SDK models demand integers), the
    optional ones are left out when unknown."""
    numbers = usage.to_anthropic()
    out: dict[str, Any] = {}
    for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"):
        value = getattr(numbers, name)
        if value is not None or name in required:
            out[name] = value or 0
    if numbers.thinking_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": numbers.thinking_tokens}
    return out


_TOOL_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def wire_tool_id(call_id: str) -> str:
    """A tool_use id Anthropic accepts (`^[a-zA-Z0-9_-]+$`); applied to calls and results alike so they
    still pair up."""
    return _TOOL_ID_UNSAFE.sub("_", call_id) or "toolu_"


def rest(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The fields of `data` a decoder does not model, for `own_extras`."""
    return {k: v for k, v in data.items() if k not in known}


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one: wire bodies are untrusted."""
    return value if isinstance(value, Mapping) else {}
