"""Content blocks <-> IR parts, shared by requests (messages, system) and responses (content)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from translation.anthropic.wire import (
    DIALECT,
    cache_from_wire,
    cache_to_wire,
    redacted_signature,
    rest,
    thinking_signature,
    wire_tool_id,
)
from translation.ir import (
    DocumentPart,
    FileSource,
    ImagePart,
    InlineSource,
    MediaSource,
    NativePart,
    Part,
    ReasoningPart,
    RefusalPart,
    SignatureKind,
    TextPart,
    TextSource,
    ToolCallPart,
    ToolKind,
    ToolResultPart,
    TranslationError,
    UrlSource,
    Warnings,
    extras_for,
    own_extras,
)

# -- decoding ------------------------------------------------------------------------------------------------


def decode_content(content: Any) -> tuple[Part, ...]:
    """A `content` value: a string (one text part; nothing when empty) or a list of blocks."""
    if isinstance(content, str):
        return (TextPart(content),) if content else ()
    if isinstance(content, list):
        return tuple(decode_block(block) for block in content if isinstance(block, Mapping))
    return ()


def decode_block(block: Mapping[str, Any]) -> Part:
    """One content block; block types the IR does not model become `NativePart`s, kept verbatim."""
    cache = cache_from_wire(block.get("cache_control"))
    match block.get("type"):
        case "text":
            return TextPart(str(block.get("text", "")), cache, extras=_extras(block, "text"))
        case "image" if (source := _source_from_wire(block.get("source"), document=False)) is not None:
            return ImagePart(source, cache=cache, extras=_extras(block, "source"))
        case "document" if (source := _source_from_wire(block.get("source"), document=True)) is not None:
            extras = _extras(block, "source", "title")
            return DocumentPart(source, title=block.get("title"), cache=cache, extras=extras)
        case "tool_use":
            return dataclasses.replace(decode_tool_use(block), cache=cache)
        case "tool_result":
            return ToolResultPart(
                call_id=str(block.get("tool_use_id", "")),
                parts=decode_content(block.get("content")),
                is_error=bool(block.get("is_error", False)),
                cache=cache,
                # An explicit `is_error: false` stays in extras so an Anthropic round trip is exact.
                extras=_extras(block, "tool_use_id", "content", *(("is_error",) if block.get("is_error") else ())),
            )
        case "thinking":
            signature = block.get("signature")
            return ReasoningPart(
                text=str(block.get("thinking", "")),
                # An empty signature (third-party Anthropic-style servers send one) is no signature at all.
                signature=thinking_signature(signature) if isinstance(signature, str) and signature else None,
                extras=_extras(block, "thinking", "signature"),
            )
        case "redacted_thinking":
            return ReasoningPart(signature=redacted_signature(str(block.get("data", ""))))
    return NativePart(DIALECT, dict(block))


def decode_tool_use(block: Mapping[str, Any]) -> ToolCallPart:
    call_id, name, arguments = str(block.get("id", "")), str(block.get("name", "")), block.get("input", {})
    extras = _extras(block, "id", "name", "input")
    if isinstance(arguments, dict):
        return ToolCallPart.from_object(call_id, name, arguments, extras=extras)
    return ToolCallPart.from_raw(call_id, name, json.dumps(arguments, ensure_ascii=False), extras=extras)


def _extras(block: Mapping[str, Any], *modelled: str) -> dict[str, dict[str, Any]]:
    return own_extras(DIALECT, rest(block, ("type", "cache_control", *modelled)))


def _source_from_wire(source: Any, *, document: bool) -> MediaSource | None:
    if not isinstance(source, Mapping):
        return None
    match source.get("type"):
        case "base64":
            return InlineSource(str(source.get("media_type", "")), str(source.get("data", "")))
        case "url":
            # Anthropic document URLs are always PDFs (URLPDFSourceParam); image URLs name no type.
            return UrlSource(str(source.get("url", "")), "application/pdf" if document else None)
        case "file":
            return FileSource(str(source.get("file_id", "")))
        case "text" if document:
            return TextSource(str(source.get("data", "")), str(source.get("media_type", "text/plain")))
    return None  # e.g. a `content` document source: the block is kept whole as a NativePart


# -- encoding ------------------------------------------------------------------------------------------------


def encode_part(part: Part, w: Warnings, path: str) -> dict[str, Any] | None:
    """One IR part as a content block, or None when Anthropic has no place for it (warned unless harmless)."""
    block: dict[str, Any] | None
    match part:
        case TextPart(text=text, signature=signature):
            if signature is not None:
                w.drop("reasoning_signature", "a thoughtSignature on text is only valid for its provider", path)
            # Anthropic rejects empty text blocks (pitfall 18); an empty text says nothing anyway.
            block = {"type": "text", "text": text} if text else None
        case ImagePart(source=source, detail=detail):
            if detail not in (None, "auto"):
                w.drop("image_detail", f"Anthropic has no image detail setting ({detail!r})", path)
            block = {"type": "image", "source": _image_source(source, path)}
        case DocumentPart(source=source, title=title, filename=filename):
            block = {"type": "document", "source": _document_source(source, path)}
            if title or filename:
                block["title"] = title or filename
        case ToolCallPart():
            block = encode_tool_use(part, w, path)
        case ToolResultPart():
            block = _tool_result(part, w, path)
        case ReasoningPart(signature=signature) if signature is not None and signature.dialect is DIALECT:
            if signature.kind is SignatureKind.ANTHROPIC_REDACTED:
                block = {"type": "redacted_thinking", "data": signature.value}
            else:
                block = {"type": "thinking", "thinking": part.text, "signature": signature.value}
        case ReasoningPart(signature=signature):
            # A thinking block must carry Anthropic's own signature (pitfall 33): never forge one.
            feature = "unsigned_reasoning" if signature is None else "reasoning_signature"
            w.drop(feature, "only reasoning signed by Anthropic can be sent back to Anthropic", path)
            return None
        case RefusalPart(text=text):
            block = {"type": "text", "text": text} if text else None
        case NativePart(dialect=dialect, data=data):
            if dialect is DIALECT:
                return dict(data)
            native_type = str(data.get("type") or next(iter(data), "item"))
            w.drop(f"native:{native_type}", f"{dialect.value} item {native_type!r} has no Anthropic form", path)
            return None
    if block is None:
        return None
    block.update(extras_for(part.extras, DIALECT))
    cache = getattr(part, "cache", None)
    if cache is not None:
        block["cache_control"] = cache_to_wire(cache)
    return block


def encode_tool_use(part: ToolCallPart, w: Warnings, path: str) -> dict[str, Any]:
    if part.signature is not None:
        w.drop("reasoning_signature", "a thoughtSignature on a call is only valid for its provider", path)
    arguments: dict[str, Any]
    if part.arguments is not None:
        arguments = part.arguments
    elif part.kind is ToolKind.CUSTOM:
        arguments = {"input": part.raw_arguments}  # how CUSTOM tools are exposed (see tools.py)
    else:
        w.drop("tool_arguments", "the call's arguments are not a JSON object; sent as {}", path)
        arguments = {}
    return {"type": "tool_use", "id": wire_tool_id(part.id), "name": part.name, "input": arguments}


def content_value(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The short string form when the content is one plain text block, as clients usually send it."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks


def _tool_result(part: ToolResultPart, w: Warnings, path: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": wire_tool_id(part.call_id)}
    inner = [b for i, p in enumerate(part.parts) if (b := encode_part(p, w, f"{path}.parts[{i}]")) is not None]
    if inner:
        block["content"] = content_value(inner)
    if part.is_error:
        block["is_error"] = True
    return block


def _image_source(source: MediaSource, path: str) -> dict[str, Any]:
    match source:
        case InlineSource(media_type=media_type, data=data):
            return {"type": "base64", "media_type": media_type, "data": data}
        case UrlSource(url=url):
            return {"type": "url", "url": url}
        case FileSource(file_id=file_id):
            return {"type": "file", "file_id": file_id}
    raise TranslationError("image_source", "a text source cannot be sent as an Anthropic image", path)


_TEXT_MEDIA = ("text/", "application/json", "application/xml")


def _document_source(source: MediaSource, path: str) -> dict[str, Any]:
    match source:
        case InlineSource(media_type="application/pdf", data=data):
            return {"type": "base64", "media_type": "application/pdf", "data": data}
        case InlineSource(media_type=media_type, data=data) if media_type.startswith(_TEXT_MEDIA):
            # Anthropic takes text documents as plain text, not base64.
            try:
                text = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise TranslationError("document_media_type", f"{media_type} document is not UTF-8", path) from exc
            return {"type": "text", "media_type": "text/plain", "data": text}
        case InlineSource(media_type=media_type):
            raise TranslationError(
                "document_media_type", f"Anthropic documents are PDF or plain text, not {media_type}", path
            )
        case UrlSource(url=url):
            return {"type": "url", "url": url}
        case FileSource(file_id=file_id):
            return {"type": "file", "file_id": file_id}
        case TextSource(text=text):
            return {"type": "text", "media_type": "text/plain", "data": text}
    raise AssertionError(source)  # unreachable: MediaSource is closed
