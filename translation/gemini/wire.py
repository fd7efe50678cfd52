"""Small facts about the Gemini wire shared by the request, response and stream modules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from translation.dialect import Dialect
from translation.ir import (
    OpaqueSignature,
    Request,
    SignatureKind,
    StopReason,
    Usage,
    Warnings,
)

GEMINI = Dialect.GEMINI

USER_ROLE = "user"
MODEL_ROLE = "model"

# The Gemini CLI puts this on functionCall parts of history it did not get a signature for (pitfall 35). It is
# not reasoning state, so decoders keep it only as an extra for a Gemini round trip.
DUMMY_SIGNATURE = "skip_thought_signature_validator"

SYNTHETIC_ID = "syntheticId"  # extras marker: the decoder made the call id up, a Gemini encoder omits it

# finishReason -> IR stop reason (protocols.md §2.2); STOP becomes TOOL_USE when the turn holds function calls.
_FINISH_TO_STOP: dict[str, StopReason] = {
    "STOP": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "MODEL_ARMOR",
            "JAILBREAK",
        ),
        StopReason.REFUSAL,
    ),
    **dict.fromkeys(
        (
            "MALFORMED_FUNCTION_CALL",
            "MALFORMED_RESPONSE",
            "UNEXPECTED_TOOL_CALL",
            "TOO_MANY_TOOL_CALLS",
            "MISSING_THOUGHT_SIGNATURE",
            "OTHER",
            "LANGUAGE",
            "NO_IMAGE",
            "IMAGE_OTHER",
        ),
        StopReason.ERROR,
    ),
}

_STOP_TO_FINISH: dict[StopReason, str] = {
    StopReason.END_TURN: "STOP",
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.TOOL_USE: "STOP",
    StopReason.PAUSE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.CONTEXT_OVERFLOW: "MAX_TOKENS",
    StopReason.REFUSAL: "SAFETY",
    StopReason.ERROR: "OTHER",
    StopReason.OTHER: "OTHER",
}


def stop_from_finish(finish_reason: str | None, has_calls: bool) -> tuple[StopReason, str | None]:
    """(stop reason, stop_detail): the raw value is kept as the detail whenever it says more than STOP."""
    if finish_reason is None or finish_reason == "STOP":
        return (StopReason.TOOL_USE if has_calls else StopReason.END_TURN), None
    return _FINISH_TO_STOP.get(finish_reason, StopReason.OTHER), finish_reason


def finish_from_stop(stop: StopReason, stop_detail: str | None, w: Warnings) -> str:
    """The finishReason for a Gemini client; a Gemini detail (RECITATION, …) is reused when it fits `stop`."""
    if stop_detail is not None and _FINISH_TO_STOP.get(stop_detail) is stop:
        return stop_detail
    if stop is StopReason.PAUSE:
        w.drop("pause_turn", "Gemini has no paused turn; reported as STOP")
    return _STOP_TO_FINISH[stop]


def usage_from_metadata(metadata: Mapping[str, Any] | None) -> Usage | None:
    if not isinstance(metadata, Mapping):
        return None
    return Usage.from_gemini(
        metadata.get("promptTokenCount"),
        metadata.get("candidatesTokenCount"),
        metadata.get("cachedContentTokenCount"),
        metadata.get("thoughtsTokenCount"),
        metadata.get("toolUsePromptTokenCount"),
    )


def usage_metadata(usage: Usage) -> dict[str, int]:
    """`usageMetadata` with only the counts that are known (unknown is left out, never written as 0)."""
    numbers = usage.to_gemini()
    fields = {
        "promptTokenCount": numbers.prompt_token_count,
        "candidatesTokenCount": numbers.candidates_token_count,
        "totalTokenCount": numbers.total_token_count,
        "cachedContentTokenCount": numbers.cached_content_token_count,
        "thoughtsTokenCount": numbers.thoughts_token_count,
    }
    return {k: v for k, v in fields.items() if v is not None}


USAGE_FIELDS = frozenset(
    {"promptTokenCount", "candidatesTokenCount", "totalTokenCount", "cachedContentTokenCount", "thoughtsTokenCount"}
)


def signature_of(part: Mapping[str, Any]) -> OpaqueSignature | None:
    value = part.get("thoughtSignature")
    if not isinstance(value, str) or value == DUMMY_SIGNATURE:
        return None
    return OpaqueSignature(GEMINI, SignatureKind.GEMINI_THOUGHT_SIGNATURE, value)


def own_signature(signature: OpaqueSignature | None, w: Warnings, path: str) -> str | None:
    """The thoughtSignature to send: only a Gemini one, byte for byte; another provider's is dropped."""
    if signature is None:
        return None
    if signature.dialect is GEMINI:
        return signature.value
    w.drop("reasoning_signature", f"a {signature.dialect.label} signature cannot be sent to Gemini", path)
    return None


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def derived_id(body: Any) -> str:
    """A deterministic response id for an upstream that sent no `responseId` (the IR never uses randomness)."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return f"gemini_{digest[:24]}"


def leftovers(obj: Mapping[str, Any], known: frozenset[str] | set[str]) -> dict[str, Any]:
    """The fields of a wire object the decoder does not model, for `extras`."""
    return {k: v for k, v in obj.items() if k not in known}


def include_thoughts(request: Request) -> bool:
    """Gemini returns thoughts only to clients that set thinkingConfig.includeThoughts."""
    return bool(request.reasoning is not None and request.reasoning.include_thoughts)


# -- errors --------------------------------------------------------------------------------------------------

# google.rpc status names -> the HTTP status the Gemini API answers with (https://ai.google.dev/gemini-api/docs/troubleshooting).
_RPC_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def rpc_http_status(status: object) -> int | None:
    """The HTTP status for a google.rpc status name (`"INTERNAL"` -> 500), None when unknown."""
    return _RPC_HTTP_STATUS.get(status) if isinstance(status, str) else None
