"""Small value types shared by requests, responses and stream events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from translation.dialect import Dialect

JSON = Any
"""A value `json.loads` can return. Kept as `Any` because JSON schemas and tool arguments are free-form."""

Extras = Mapping[str, Mapping[str, JSON]]
"""Wire fields the IR does not model, bucketed by the dialect they came from (`Dialect` value -> field -> value).

A decoder stores every field it does not understand under its own dialect key; an encoder reads only its
own dialect's bucket and ignores the others. That makes a same-dialect round trip lossless without letting,
say, an Anthropic-only field leak into a Gemini request. Treat it as read-only.
"""


def extras_for(extras: Extras, dialect: Dialect) -> Mapping[str, JSON]:
    """The bucket an encoder for `dialect` may use (empty when the value came from elsewhere)."""
    return extras.get(dialect.value, {})


def own_extras(dialect: Dialect, fields: Mapping[str, JSON]) -> dict[str, dict[str, JSON]]:
    """Build an `extras` value holding `fields` for `dialect`; no bucket at all when there is nothing to keep."""
    return {dialect.value: dict(fields)} if fields else {}


@dataclass(frozen=True, slots=True)
class CacheHint:
    """A prompt-cache breakpoint: "cache everything up to and including this point".

    A hint, never a requirement: encoders whose upstream has no explicit breakpoints drop it silently.
    `ttl_seconds` is None for the provider default (Anthropic 5m, OpenAI 30m); encoders round to the nearest
    TTL their dialect offers (Anthropic 5m/1h, OpenAI 30m/12h).
    """

    ttl_seconds: int | None = None


class SignatureKind(StrEnum):
    """What an `OpaqueSignature` value is, in its provider's terms."""

    ANTHROPIC_SIGNATURE = "anthropic_signature"  # thinking block `signature`
    ANTHROPIC_REDACTED = "anthropic_redacted"  # `redacted_thinking.data` (the whole block is opaque)
    RESPONSES_ENCRYPTED = "responses_encrypted"  # reasoning item `encrypted_content`
    GEMINI_THOUGHT_SIGNATURE = "gemini_thought_signature"  # part-level `thoughtSignature` (base64)
    BEDROCK_SIGNATURE = "bedrock_signature"  # Converse `reasoningContent.reasoningText.signature`
    BEDROCK_REDACTED = "bedrock_redacted"  # Converse `reasoningContent.redactedContent` (base64 in JSON)


@dataclass(frozen=True, slots=True)
class OpaqueSignature:
    """Provider-signed reasoning state that only the provider that issued it can verify.

    Encoders send it back only when `dialect` equals their own dialect (byte for byte, never edited, never
    invented); any other encoder drops it and records a warning. `item_id` is the provider's id for the
    carrying item when it has one (Responses `rs_…`), needed to replay the item.
    """

    dialect: Dialect
    kind: SignatureKind
    value: str
    item_id: str | None = None
