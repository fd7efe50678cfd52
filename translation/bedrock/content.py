"""Converse content blocks <-> IR parts, shared by requests (messages, system) and responses (output.message).

A Converse block is a union: an object with exactly one member (`{"text": …}`, `{"image": {...}}`,
`{"toolUse": {...}}`, `{"reasoningContent": {...}}`, `{"cachePoint": {...}}`, …). A `cachePoint` block marks the
block before it as a cache breakpoint, which the IR says with a `CacheHint` on that part. Unmodelled fields of a
member object (`document.context`, `toolResult.type`) are kept in the part's extras and written back inside it.
Bytes (images, documents, redacted reasoning) are base64 strings in the JSON form, as in the IR.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from translation.bedrock.wire import (
    DIALECT,
    cache_from_wire,
    cache_to_wire,
    compact,
    reasoning_signature,
    redacted_signature,
    rest,
    wire_tool_id,
)
from translation.custom_tools import wrap
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

IMAGE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
_IMAGE_MEDIA = {media: fmt for fmt, media in IMAGE_FORMATS.items()} | {"image/jpg": "jpeg"}
DOCUMENT_FORMATS = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
}
_DOCUMENT_MEDIA = {media: fmt for fmt, media in DOCUMENT_FORMATS.items()}
_CACHEABLE = (TextPart, ImagePart, DocumentPart, ToolCallPart, ToolResultPart)
_JSON_MARK = "json"  # extras flag on a TextPart that was a toolResult `{"json": …}` block

# -- decoding ------------------------------------------------------------------------------------------------


def decode_content(blocks: Any) -> tuple[Part, ...]:
    """A `content` list; `cachePoint` blocks become the cache hint of the part before them."""
    parts: list[Part] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, Mapping):
            continue
        previous = parts[-1] if parts else None
        if "cachePoint" in block and isinstance(previous, _CACHEABLE) and previous.cache is None:
            parts[-1] = dataclasses.replace(previous, cache=cache_from_wire(block["cachePoint"]))
            continue
        parts.append(decode_block(block))
    return tuple(parts)


def decode_block(block: Mapping[str, Any]) -> Part:
    """One content block; members the IR does not model (video, audio, guardContent, citationsContent,
    searchResult, a document given as `content` blocks, …) become `NativePart`s, kept verbatim."""
    if isinstance(text := block.get("text"), str):
        return TextPart(text)
    if isinstance(image := block.get("image"), Mapping):
        source = _source_from_wire(image.get("source"), IMAGE_FORMATS.get(str(image.get("format"))))
        if source is not None and not isinstance(source, TextSource):
            return ImagePart(source, extras=_extras(image, "format", "source"))
    elif isinstance(document := block.get("document"), Mapping):
        source = _source_from_wire(document.get("source"), DOCUMENT_FORMATS.get(str(document.get("format"))))
        if source is not None:
            name = document.get("name")
            extras = _extras(document, "format", "source", "name")
            return DocumentPart(source, title=name if isinstance(name, str) else None, extras=extras)
    elif isinstance(tool_use := block.get("toolUse"), Mapping):
        return decode_tool_use(tool_use)
    elif isinstance(result := block.get("toolResult"), Mapping):
        return ToolResultPart(
            call_id=str(result.get("toolUseId", "")),
            parts=tuple(_decode_result_block(b) for b in result.get("content") or [] if isinstance(b, Mapping)),
            is_error=result.get("status") == "error",
            # An explicit `status: success` stays in extras so a Bedrock round trip is exact.
            extras=_extras(result, "toolUseId", "content", *(("status",) if result.get("status") == "error" else ())),
        )
    elif isinstance(reasoning := block.get("reasoningContent"), Mapping):
        if isinstance(text_block := reasoning.get("reasoningText"), Mapping):
            signature = text_block.get("signature")
            return ReasoningPart(
                text=str(text_block.get("text", "")),
                signature=reasoning_signature(signature) if isinstance(signature, str) and signature else None,
            )
        if isinstance(redacted := reasoning.get("redactedContent"), str):
            return ReasoningPart(signature=redacted_signature(redacted))
    return NativePart(DIALECT, dict(block))


def decode_tool_use(tool_use: Mapping[str, Any]) -> ToolCallPart:
    call_id, name, arguments = str(tool_use.get("toolUseId", "")), str(tool_use.get("name", "")), tool_use.get("input")
    extras = _extras(tool_use, "toolUseId", "name", "input")
    if isinstance(arguments, dict):
        return ToolCallPart.from_object(call_id, name, arguments, extras=extras)
    return ToolCallPart.from_raw(call_id, name, json.dumps(arguments, ensure_ascii=False), extras=extras)


def _decode_result_block(block: Mapping[str, Any]) -> Part:
    if "json" in block:
        return TextPart(compact(block["json"]), extras=own_extras(DIALECT, {_JSON_MARK: True}))
    return decode_block(block)


def _extras(member: Mapping[str, Any], *modelled: str) -> dict[str, dict[str, Any]]:
    return own_extras(DIALECT, rest(member, modelled))


def _source_from_wire(source: Any, media_type: str | None) -> MediaSource | None:
    if not isinstance(source, Mapping):
        return None
    if isinstance(data := source.get("bytes"), str):
        return InlineSource(media_type or "application/octet-stream", data)
    if isinstance(location := source.get("s3Location"), Mapping) and not rest(location, ("uri",)):
        return UrlSource(str(location.get("uri", "")), media_type)
    if isinstance(text := source.get("text"), str):
        return TextSource(text, media_type or "text/plain")
    return None  # a `content` document source, an s3Location with a bucketOwner: kept whole as a NativePart


# -- encoding ------------------------------------------------------------------------------------------------


def encode_part(part: Part, w: Warnings, path: str, *, history: bool = True) -> list[dict[str, Any]]:
    """One IR part as content blocks: the block, then a `cachePoint` when the part carries a cache hint; none
    when Converse has no place for it (warned unless harmless). `history`: the part goes upstream in a request
    (reasoning must carry Bedrock's own signature there) rather than to a client in a response."""
    block: dict[str, Any] | None
    match part:
        case TextPart(text=text, signature=signature):
            if signature is not None:
                w.drop("reasoning_signature", "a thoughtSignature on text is only valid for its provider", path)
            own = extras_for(part.extras, DIALECT)
            if own.get(_JSON_MARK) and (value := _json_value(text)) is not None:
                block = {"json": value}
            else:
                # Bedrock rejects blank text blocks; an empty text says nothing anyway.
                block = {"text": text} if text else None
        case ImagePart(source=source, detail=detail):
            if detail not in (None, "auto"):
                w.drop("image_detail", f"Bedrock has no image detail setting ({detail!r})", path)
            block = {"image": {**_image(source, path), **extras_for(part.extras, DIALECT)}}
        case DocumentPart(source=source, title=title, filename=filename):
            document = {**_document(source, path), "name": document_name(title or filename)}
            block = {"document": {**document, **extras_for(part.extras, DIALECT)}}
        case ToolCallPart():
            block = {"toolUse": encode_tool_use(part, w, path)}
        case ToolResultPart():
            block = {"toolResult": _tool_result(part, w, path)}
        case ReasoningPart():
            block = _reasoning(part, w, path, history)
        case RefusalPart(text=text):
            block = {"text": text} if text else None
        case NativePart(dialect=dialect, data=data):
            if dialect is DIALECT:
                return [dict(data)]
            native_type = str(data.get("type") or next(iter(data), "item"))
            w.drop(f"native:{native_type}", f"{dialect.value} item {native_type!r} has no Bedrock form", path)
            return []
    if block is None:
        return []
    cache = getattr(part, "cache", None)
    return [block, cache_to_wire(cache)] if cache is not None else [block]


def encode_tool_use(part: ToolCallPart, w: Warnings, path: str) -> dict[str, Any]:
    if part.signature is not None:
        w.drop("reasoning_signature", "a thoughtSignature on a call is only valid for its provider", path)
    arguments: dict[str, Any]
    if part.arguments is not None:
        arguments = part.arguments
    elif part.kind is ToolKind.CUSTOM:
        arguments = wrap(part.raw_arguments)  # how CUSTOM tools are exposed (tools.py)
    else:
        w.drop("tool_arguments", "the call's arguments are not a JSON object; sent as {}", path)
        arguments = {}
    out = {"toolUseId": wire_tool_id(part.id), "name": part.name, "input": arguments}
    out.update(extras_for(part.extras, DIALECT))
    return out


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\s()\[\]-]+")


def document_name(name: str | None) -> str:
    """A document `name` Bedrock accepts: letters, digits, single spaces, hyphens, parentheses and square
    brackets, at most 200 characters ("report.pdf" becomes "report pdf")."""
    cleaned = " ".join(_NAME_UNSAFE.sub(" ", name or "").split())[:200].strip()
    return cleaned or "document"


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _reasoning(part: ReasoningPart, w: Warnings, path: str, history: bool) -> dict[str, Any] | None:
    signature = part.signature
    if signature is not None and signature.dialect is DIALECT:
        if signature.kind is SignatureKind.BEDROCK_REDACTED:
            return {"reasoningContent": {"redactedContent": signature.value}}
        return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": signature.value}}}
    if history:
        # Models that sign their reasoning (Claude) reject it unsigned or signed elsewhere: never forge one.
        feature = "unsigned_reasoning" if signature is None else "reasoning_signature"
        w.drop(feature, "only reasoning signed by Bedrock can be sent back to Bedrock", path)
        return None
    if signature is not None:
        w.drop("reasoning_signature", f"a {signature.dialect.value} reasoning signature has no Bedrock form", path)
    return {"reasoningContent": {"reasoningText": {"text": part.text}}} if part.text else None


def _tool_result(part: ToolResultPart, w: Warnings, path: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for i, inner in enumerate(part.parts):
        content.extend(b for b in encode_part(inner, w, f"{path}.parts[{i}]") if "cachePoint" not in b)
    out: dict[str, Any] = {"toolUseId": wire_tool_id(part.call_id), "content": content}
    if part.is_error:
        out["status"] = "error"
    out.update(extras_for(part.extras, DIALECT))
    return out


def _image(source: MediaSource, path: str) -> dict[str, Any]:
    match source:
        case InlineSource(media_type=media_type, data=data) if media_type.lower() in _IMAGE_MEDIA:
            return {"format": _IMAGE_MEDIA[media_type.lower()], "source": {"bytes": data}}
        case InlineSource(media_type=media_type):
            message = f"Bedrock images are PNG, JPEG, GIF or WebP, not {media_type}"
            raise TranslationError("image_media_type", message, path)
        case UrlSource(url=url, media_type=media_type) if url.startswith("s3://"):
            fmt = _IMAGE_MEDIA.get((media_type or "").lower()) or _format_from_name(url, IMAGE_FORMATS) or "png"
            return {"format": fmt, "source": {"s3Location": {"uri": url}}}
        case UrlSource():
            raise TranslationError("image_url", "Bedrock takes images as bytes or s3:// locations, not URLs", path)
        case FileSource():
            raise TranslationError("image_file_id", "Bedrock cannot read another provider's uploaded files", path)
    raise TranslationError("image_source", "a text source cannot be sent as a Bedrock image", path)


def _document(source: MediaSource, path: str) -> dict[str, Any]:
    match source:
        case InlineSource(media_type=media_type, data=data) if media_type.lower() in _DOCUMENT_MEDIA:
            return {"format": _DOCUMENT_MEDIA[media_type.lower()], "source": {"bytes": data}}
        case InlineSource(media_type=media_type):
            raise TranslationError(
                "document_media_type", f"Bedrock documents are {', '.join(DOCUMENT_FORMATS)}, not {media_type}", path
            )
        case TextSource(text=text, media_type=media_type):
            return {"format": _DOCUMENT_MEDIA.get(media_type.lower(), "txt"), "source": {"text": text}}
        case UrlSource(url=url, media_type=media_type) if url.startswith("s3://"):
            fmt = _DOCUMENT_MEDIA.get((media_type or "").lower()) or _format_from_name(url, DOCUMENT_FORMATS) or "pdf"
            return {"format": fmt, "source": {"s3Location": {"uri": url}}}
        case UrlSource():
            message = "Bedrock takes documents as bytes or s3:// locations, not URLs"
            raise TranslationError("document_url", message, path)
        case FileSource():
            raise TranslationError("document_file_id", "Bedrock cannot read another provider's uploaded files", path)
    raise AssertionError(source)  # unreachable: MediaSource is closed


def _format_from_name(url: str, formats: Mapping[str, str]) -> str | None:
    extension = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    extension = "jpeg" if extension == "jpg" else extension
    return extension if extension in formats else None
