"""Message content: Chat content parts <-> IR parts (text, images, files, audio, refusals)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from translation.ir import (
    CacheHint,
    DocumentPart,
    FileSource,
    ImagePart,
    InlineSource,
    MediaSource,
    NativePart,
    Part,
    RefusalPart,
    TextPart,
    TextSource,
    UrlSource,
    Warnings,
    extras_for,
    own_extras,
)
from translation.media import extension_for
from translation.openai_chat.wire import (
    DIALECT,
    cache_from_wire,
    cache_to_wire,
    data_url,
    source_from_url,
    unknown_fields,
)

_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_AUDIO_MEDIA_TYPES = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}
_DEFAULT_FILE_TYPE = "application/pdf"  # the file type Chat documents; file_data without a data: header


# -- decode --------------------------------------------------------------------------------------------------


def decode_content(content: Any) -> tuple[Part, ...]:
    """A `content` value (string, list of parts, or null) as IR parts. Empty text is skipped (pitfall 18)."""
    if content is None or content == "":
        return ()
    if isinstance(content, str):
        return (TextPart(content),)
    return tuple(part for item in content if (part := _decode_part(item)) is not None)


def _decode_part(item: Mapping[str, Any]) -> Part | None:
    match item.get("type"):
        case "text":
            if not item.get("text"):
                return None
            cache = cache_from_wire(item.get("prompt_cache_breakpoint"))
            extras = own_extras(DIALECT, unknown_fields(item, ("type", "text", "prompt_cache_breakpoint")))
            return TextPart(item["text"], cache=cache, extras=extras)
        case "image_url":
            image = item["image_url"]
            return ImagePart(
                source_from_url(image["url"]),
                detail=image.get("detail"),
                cache=cache_from_wire(item.get("prompt_cache_breakpoint")),
                extras=own_extras(DIALECT, unknown_fields(item, ("type", "image_url", "prompt_cache_breakpoint"))),
            )
        case "input_audio":
            audio = item["input_audio"]
            media_type = _AUDIO_FORMATS.get(audio.get("format", ""), f"audio/{audio.get('format')}")
            return DocumentPart(InlineSource(media_type, audio["data"]))
        case "file":
            return _decode_file(item)
        case "refusal":
            return RefusalPart(item.get("refusal", ""))
    return NativePart(DIALECT, dict(item))


def _decode_file(item: Mapping[str, Any]) -> DocumentPart:
    file = item["file"]
    source: MediaSource
    data = file.get("file_data") or ""  # null is an absent field (translation/ir/shape.py)
    if file.get("file_id") is not None:
        source = FileSource(file["file_id"])
    elif data.startswith("data:"):
        source = source_from_url(data, _DEFAULT_FILE_TYPE)
    else:
        source = InlineSource(_DEFAULT_FILE_TYPE, data)
    return DocumentPart(
        source,
        filename=file.get("filename"),
        cache=cache_from_wire(item.get("prompt_cache_breakpoint")),
        extras=own_extras(DIALECT, unknown_fields(item, ("type", "file", "prompt_cache_breakpoint"))),
    )


# -- encode --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartEncoder:
    """Encodes IR parts as Chat content parts, recording what had to be dropped in `warnings`."""

    warnings: Warnings
    breakpoints: bool = True

    def text(self, part: TextPart, path: str) -> dict[str, Any]:
        if part.signature is not None:
            self.warnings.drop("reasoning_signature", "Chat cannot carry a signature on text", path)
        return self.with_cache({"type": "text", "text": part.text, **extras_for(part.extras, DIALECT)}, part.cache)

    def user_part(self, part: Part, path: str) -> dict[str, Any] | None:
        """A part of a user message, or None (with a warning) when Chat has no form for it."""
        match part:
            case TextPart():
                return self.text(part, path) if part.text else None
            case ImagePart():
                return self._image(part, path)
            case DocumentPart():
                return self._document(part, path)
            case NativePart(dialect=dialect, data=data) if dialect is DIALECT:
                return dict(data)
            case NativePart(data=data):
                self.native_dropped(data, path)
                return None
        self.warnings.drop(f"content:{part.TAG}", f"a {part.TAG} part cannot appear in a Chat user message", path)
        return None

    def native_dropped(self, data: Mapping[str, Any], path: str) -> None:
        name = str(data.get("type") or next(iter(data), "unknown"))
        self.warnings.drop(name, f"{name} has no Chat Completions equivalent", path)

    def _image(self, part: ImagePart, path: str) -> dict[str, Any] | None:
        match part.source:
            case InlineSource() as source:
                url = data_url(source)
            case UrlSource(url=url):
                pass
            case _:
                self.warnings.drop(f"image:{part.source.TAG}", "Chat images must be a URL or base64 data", path)
                return None
        image: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image["detail"] = part.detail
        item = {"type": "image_url", "image_url": image, **extras_for(part.extras, DIALECT)}
        return self.with_cache(item, part.cache)

    def _document(self, part: DocumentPart, path: str) -> dict[str, Any] | None:
        source = part.source
        if isinstance(source, InlineSource) and source.media_type.startswith("audio/"):
            audio_format = _AUDIO_MEDIA_TYPES.get(source.media_type)
            if audio_format is None:
                self.warnings.drop("audio_format", f"Chat audio input takes wav or mp3, not {source.media_type}", path)
                return None
            return {"type": "input_audio", "input_audio": {"data": source.data, "format": audio_format}}
        match source:
            case TextSource(text=text):
                # Plain-text documents keep their meaning as text.
                return self.with_cache({"type": "text", "text": text}, part.cache)
            case InlineSource():
                file: dict[str, Any] = {"file_data": data_url(source), "filename": _filename(part, source)}
            case FileSource(file_id=file_id):
                file = {"file_id": file_id}
                if part.filename is not None:
                    file["filename"] = part.filename
            case UrlSource():
                self.warnings.drop("document:url", "Chat cannot fetch documents by URL", path)
                return None
        return self.with_cache({"type": "file", "file": file, **extras_for(part.extras, DIALECT)}, part.cache)

    def with_cache(self, item: dict[str, Any], cache: CacheHint | None) -> dict[str, Any]:
        # A hint only: upstreams without explicit breakpoints get none (flag prompt_cache_breakpoints=false).
        if cache is None or not self.breakpoints:
            return item
        return {**item, "prompt_cache_breakpoint": cache_to_wire(cache)}


def _filename(part: DocumentPart, source: InlineSource) -> str:
    """OpenAI requires a filename beside file_data and reads the file type from its extension."""
    name = part.filename or part.title or "document"
    if "." in name:
        return name
    return name + (extension_for(source.media_type) or "")


def compact_content(items: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One plain text part is sent as a string (what every OpenAI-compatible server accepts)."""
    if len(items) == 1 and items[0].keys() == {"type", "text"} and items[0]["type"] == "text":
        return str(items[0]["text"])
    return items
