"""File extensions <-> media types, from one explicit table instead of the host's `mime.types`.

Python's `mimetypes` reads /etc/mime.types and the Windows registry, so the same request could translate
differently on two hosts. The table covers what the APIs accept as images, audio, video and documents.
"""

from __future__ import annotations

# extension -> media type. The first extension listed for a media type is the one `extension_for` gives.
_BY_EXTENSION: dict[str, str] = {
    # images
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "svg": "image/svg+xml",
    # audio
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "aiff": "audio/aiff",
    "aif": "audio/aiff",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "opus": "audio/opus",
    "weba": "audio/webm",
    # video
    "mp4": "video/mp4",
    "mpeg": "video/mpeg",
    "mpg": "video/mpeg",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "webm": "video/webm",
    "wmv": "video/x-ms-wmv",
    "3gp": "video/3gpp",
    # documents
    "pdf": "application/pdf",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "text/javascript",
    "xml": "text/xml",
    "rtf": "text/rtf",
    "json": "application/json",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}

_EXTENSION: dict[str, str] = {}
for _extension, _media_type in _BY_EXTENSION.items():
    _EXTENSION.setdefault(_media_type, _extension)
# Spellings clients send that are not the canonical name above.
_EXTENSION.update({"image/jpg": "jpg", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mp3": "mp3"})


def media_type_for(name: str) -> str | None:
    """The media type of a file name or URL path by its extension (case-insensitive; a query string or
    fragment is ignored), or None when the extension is unknown or missing."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    base = path.rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem:
        return None
    return _BY_EXTENSION.get(extension.lower())


def extension_for(media_type: str) -> str | None:
    """The usual extension for a media type, with its dot (".pdf"); parameters such as `; charset=utf-8` are
    ignored. None for an unknown type."""
    extension = _EXTENSION.get(media_type.split(";", 1)[0].strip().lower())
    return f".{extension}" if extension else None
