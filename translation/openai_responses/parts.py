"""Message content parts: `input_text` / `input_image` / `input_file` / `output_text` / `refusal`, both ways.

Used for message items, tool outputs (`function_call_output.output` lists) and response output messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.ir import (
    JSON,
    DocumentPart,
    FileSource,
    ImagePart,
    InlineSource,
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
from translation.media import media_type_for
from translation.openai_responses.wire import DIALECT, data_url, decode_cache, encode_cache, split_data_url

# Part extras key holding the enclosing output message item's id/status/phase (response output parts are flat).
MESSAGE_KEY = "message"


def decode_content(content: JSON) -> tuple[Part, ...]:
    """A `content` / `output` value: a plain string or a list of typed parts."""
    if isinstance(content, str):
        return (TextPart(content),)
    if not isinstance(content, list):
        return ()
    return tuple(decode_part(part) for part in content if isinstance(part, Mapping))


def decode_part(part: Mapping[str, JSON]) -> Part:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        rest = _rest(part, "type", "text", "prompt_cache_breakpoint")
        if kind == "output_text" and rest.get("annotations") == []:
            del rest["annotations"]  # always present on output text; empty carries nothing
        return TextPart(str(part.get("text", "")), decode_cache(part), extras=own_extras(DIALECT, rest))
    if kind == "refusal":
        return RefusalPart(str(part.get("refusal", "")), extras=own_extras(DIALECT, _rest(part, "type", "refusal")))
    if kind == "input_image":
        image = _image_source(part)
        if image is not None:
            rest = _rest(part, "type", "image_url", "file_id", "detail", "prompt_cache_breakpoint")
            return ImagePart(image, part.get("detail"), decode_cache(part), own_extras(DIALECT, rest))
    if kind == "input_file":
        document = _file_source(part)
        if document is not None:
            rest = _rest(part, "type", "file_data", "file_url", "file_id", "filename", "prompt_cache_breakpoint")
            filename = part.get("filename")
            return DocumentPart(document, None, filename, decode_cache(part), own_extras(DIALECT, rest))
    return NativePart(DIALECT, dict(part))


def _rest(part: Mapping[str, JSON], *modelled: str) -> dict[str, JSON]:
    return {k: v for k, v in part.items() if k not in modelled}


def _image_source(part: Mapping[str, JSON]) -> InlineSource | UrlSource | FileSource | None:
    url = part.get("image_url")
    if isinstance(url, str):
        return split_data_url(url) or UrlSource(url)
    file_id = part.get("file_id")
    return FileSource(file_id) if isinstance(file_id, str) else None


def _file_source(part: Mapping[str, JSON]) -> InlineSource | UrlSource | FileSource | None:
    data = part.get("file_data")
    if isinstance(data, str):
        # The docs send a data URL; a bare base64 string gets its type from the file name (PDF by default).
        return split_data_url(data) or InlineSource(_guess_media_type(part.get("filename")), data)
    url = part.get("file_url")
    if isinstance(url, str):
        return UrlSource(url, _guess_media_type(part.get("filename")) if part.get("filename") else None)
    file_id = part.get("file_id")
    return FileSource(file_id) if isinstance(file_id, str) else None


def _guess_media_type(filename: Any) -> str:
    return media_type_for(str(filename or "")) or "application/pdf"


# -- encoding ------------------------------------------------------------------------------------------------


def encode_part(part: Part, *, assistant: bool, warnings: Warnings, path: str) -> dict[str, JSON] | None:
    """One content part, or None when Responses cannot carry it (dropped with a warning)."""
    match part:
        case TextPart(text=text, cache=cache, signature=signature, extras=extras):
            if signature is not None:
                warnings.drop("reasoning_signature", "a Gemini thought signature on text cannot go to Responses", path)
            own = {k: v for k, v in extras_for(extras, DIALECT).items() if k != MESSAGE_KEY}
            if assistant:
                return {"type": "output_text", "text": text, "annotations": [], **own}
            return {"type": "input_text", "text": text, **own, **encode_cache(cache)}
        case RefusalPart(text=text, extras=extras):
            own = {k: v for k, v in extras_for(extras, DIALECT).items() if k != MESSAGE_KEY}
            return {"type": "refusal", "refusal": text, **own}
        case ImagePart(source=source, detail=detail, cache=cache, extras=extras):
            return {
                "type": "input_image",
                **_image_location(source),
                "detail": detail or "auto",  # required by the Param type
                **extras_for(extras, DIALECT),
                **encode_cache(cache),
            }
        case DocumentPart(source=TextSource(text=text), cache=cache):
            # Responses files are binary uploads; inline plain text is simply text.
            return {"type": "input_text", "text": text, **encode_cache(cache)}
        case DocumentPart(source=source, filename=filename, cache=cache, extras=extras):
            return {
                "type": "input_file",
                **_file_location(source, filename),
                **extras_for(extras, DIALECT),
                **encode_cache(cache),
            }
        case NativePart(dialect=dialect, data=data) if dialect is DIALECT:
            return dict(data)
        case NativePart(data=data):
            name = str(data.get("type") or next(iter(data), "unknown"))
            warnings.drop(f"native:{name}", f"{name} content has no OpenAI Responses form", path)
            return None
    warnings.drop(part.TAG, f"a {part.TAG} part cannot appear in message content", path)
    return None


def _image_location(source: Any) -> dict[str, JSON]:
    match source:
        case InlineSource():
            return {"image_url": data_url(source)}
        case UrlSource(url=url):
            return {"image_url": url}
        case FileSource(file_id=file_id):
            return {"file_id": file_id}
    raise ValueError(f"an image cannot come from {source!r}")


def _file_location(source: Any, filename: str | None) -> dict[str, JSON]:
    match source:
        case InlineSource(media_type=media_type):
            # OpenAI needs a file name next to inline data to know the type.
            default = "document.pdf" if media_type == "application/pdf" else "document"
            return {"file_data": data_url(source), "filename": filename or default}
        case UrlSource(url=url):
            return {"file_url": url, **({"filename": filename} if filename else {})}
        case FileSource(file_id=file_id):
            return {"file_id": file_id, **({"filename": filename} if filename else {})}
    raise ValueError(f"a file cannot come from {source!r}")
