"""Content parts: the pieces of a message or of a response, in order.

Every part class carries a `TAG` (its name in IR JSON) and an `extras` bucket. Use structural pattern matching
to dispatch (`match part: case TextPart(text=text): ...`); `Part` is the closed union of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from translation.dialect import Dialect
from translation.ir.common import JSON, CacheHint, Extras, OpaqueSignature

# -- where the bytes of an image or document live ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InlineSource:
    """Bytes carried in the request, base64-encoded (never a data: URL; codecs split/build those)."""

    TAG: ClassVar[str] = "inline"
    media_type: str
    data: str


@dataclass(frozen=True, slots=True)
class UrlSource:
    """A URL the provider fetches (https://, or gs:// / Files-API URIs for Gemini)."""

    TAG: ClassVar[str] = "url"
    url: str
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class FileSource:
    """A provider-side uploaded file id: only meaningful to the provider that issued it."""

    TAG: ClassVar[str] = "file"
    file_id: str
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class TextSource:
    """A plain-text document given inline (Anthropic `source: {type: "text"}`)."""

    TAG: ClassVar[str] = "text"
    text: str
    media_type: str = "text/plain"


MediaSource = InlineSource | UrlSource | FileSource | TextSource


# -- parts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text. `signature` is set only for Gemini, which may hang a thoughtSignature on a plain text part."""

    TAG: ClassVar[str] = "text"
    text: str
    cache: CacheHint | None = None
    signature: OpaqueSignature | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image. `detail` is OpenAI's fidelity hint ("auto", "low", "high", "original"), None when unset."""

    TAG: ClassVar[str] = "image"
    source: MediaSource
    detail: str | None = None
    cache: CacheHint | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentPart:
    """Any non-image file: PDF, plain text, audio. `source.media_type` says which."""

    TAG: ClassVar[str] = "document"
    source: MediaSource
    title: str | None = None
    filename: str | None = None
    cache: CacheHint | None = None
    extras: Extras = field(default_factory=dict)


class ToolKind(StrEnum):
    FUNCTION = "function"  # arguments are a JSON object matching a schema
    CUSTOM = "custom"  # freeform string input, optionally constrained by a grammar (Codex apply_patch)


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """The model calling a tool, in an assistant message or a response.

    `raw_arguments` is always the exact argument text: the JSON string from OpenAI dialects, the compact
    `json.dumps` of the object from Anthropic/Gemini, the freeform input of a CUSTOM call. `arguments` is the
    parsed JSON object, or None when the text is not a JSON object (CUSTOM calls, or a model that produced
    broken JSON). Build it with `from_raw` or `from_object` so the two never disagree.
    `id` is the call id clients use to pair results (Anthropic `tool_use.id`, OpenAI `call_id`); decoders
    synthesise a deterministic one when the upstream gave none (Gemini).
    `signature`: Gemini's thoughtSignature when it rode on this functionCall part.
    """

    TAG: ClassVar[str] = "tool_call"
    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, JSON] | None
    kind: ToolKind = ToolKind.FUNCTION
    signature: OpaqueSignature | None = None
    cache: CacheHint | None = None
    extras: Extras = field(default_factory=dict)

    @classmethod
    def from_raw(
        cls,
        id: str,
        name: str,
        raw: str,
        *,
        kind: ToolKind = ToolKind.FUNCTION,
        signature: OpaqueSignature | None = None,
        extras: Extras | None = None,
    ) -> ToolCallPart:
        """From argument text (OpenAI dialects, custom tools, accumulated stream fragments)."""
        arguments = parse_arguments(raw) if kind is ToolKind.FUNCTION else None
        return cls(id, name, raw, arguments, kind, signature, extras=extras or {})

    @classmethod
    def from_object(
        cls,
        id: str,
        name: str,
        arguments: dict[str, JSON],
        *,
        signature: OpaqueSignature | None = None,
        extras: Extras | None = None,
    ) -> ToolCallPart:
        """From an argument object (Anthropic `input`, Gemini `args`)."""
        raw = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        return cls(id, name, raw, arguments, ToolKind.FUNCTION, signature, extras=extras or {})


def parse_arguments(raw: str) -> dict[str, JSON] | None:
    """The JSON object in `raw`, or None. An empty string means "no arguments" and parses as `{}`."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The outcome of a tool call, sent back by the client in a USER message.

    `parts` holds TextPart / ImagePart / DocumentPart only. `name` is the tool's name when the wire names it
    (Gemini requires it; the Chat decoder can look it up from the matching call). `is_error` is Anthropic's
    flag, Gemini's `response.error`; dialects without one get the text prefixed (see README).
    """

    TAG: ClassVar[str] = "tool_result"
    call_id: str
    parts: tuple[Part, ...]
    name: str | None = None
    is_error: bool = False
    kind: ToolKind = ToolKind.FUNCTION
    cache: CacheHint | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReasoningPart:
    """Model reasoning ("thinking"). One part per Anthropic thinking block, Gemini thought part, or
    Responses reasoning item (summary segments joined with a blank line; exact segments kept in extras).

    `text` is what the model let us see ("" for redacted/encrypted-only reasoning); `summary` is True when it
    is a summary rather than the raw chain of thought. `signature` is the opaque provider state needed to
    replay this reasoning to the same provider.
    """

    TAG: ClassVar[str] = "reasoning"
    text: str = ""
    summary: bool = False
    signature: OpaqueSignature | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefusalPart:
    """The model declined (OpenAI `refusal`). Anthropic/Gemini express refusal only as a stop reason."""

    TAG: ClassVar[str] = "refusal"
    text: str
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NativePart:
    """A dialect-specific item the IR does not model, kept verbatim for a same-dialect round trip.

    Examples: Anthropic `server_tool_use` / `web_search_tool_result`, Responses `web_search_call`,
    `item_reference`, `compaction`; Gemini `executableCode`. The encoder for `dialect` writes `data` back as
    is; every other encoder drops it with a warning naming `data["type"]` (or its first key).
    """

    TAG: ClassVar[str] = "native"
    dialect: Dialect
    data: dict[str, JSON]


Part = TextPart | ImagePart | DocumentPart | ToolCallPart | ToolResultPart | ReasoningPart | RefusalPart | NativePart
