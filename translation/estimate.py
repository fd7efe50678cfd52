"""A tokenizer-free estimate of a request's input tokens, for the count-tokens endpoints
(`/v1/messages/count_tokens`, `/v1/responses/input_tokens`, Gemini `:countTokens`) when the upstream has no
counter for the request's dialect. Callers must present the result as an estimate (the ledger row says so).

It is a heuristic, not a tokenizer, and errs a little high: clients use the count to decide when to compact
a conversation, and being cut off by the upstream is worse than compacting a bit early.

Text is priced per character, by class:
- ASCII letters, digits and whitespace: 1/4 token (the usual "4 characters per token" for English);
- ASCII punctuation: 1/2 token, so JSON and code come out denser than prose without having to guess which
  a string is;
- other Latin letters, Greek, Cyrillic, Hebrew, Arabic (two UTF-8 bytes): 1/2 token;
- CJK, Hangul, Indic, Thai and other three-byte scripts, and symbols: 1.2 tokens (tokenizers spend about one
  token per character on them; cl100k 1.1-1.2 on Chinese and Japanese);
- emoji and the rest of the astral planes: 2 tokens.
Checked against cl100k on Claude Code's system prompt and tools, this repository's Python and docs, and
Chinese/Japanese/Korean/Russian samples, the estimate is 1.1-1.2x cl100k for prose, 1.2-1.35x for code and
JSON schemas and 0.9-1.1x for CJK and Cyrillic: about what Claude's tokenizer spends more than OpenAI's, so it
suits the Anthropic endpoint that asks most and overshoots a little for the others.

Media never count as text: an inline image is priced by Anthropic's published rule (width * height / 750
tokens, at most ~1,600 because larger images are scaled down) from dimensions read out of its PNG, JPEG, GIF
or WebP header, else at that cap. Inline documents are priced by decoded size (see `_DOCUMENT_BYTES_PER_TOKEN`),
text documents by their text. Reasoning signatures and encrypted reasoning are not counted.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
import re
import struct

from translation.ir import (
    JSON,
    DocumentPart,
    FileSource,
    FunctionTool,
    HostedTool,
    ImagePart,
    InlineSource,
    MediaSource,
    NativePart,
    OutputKind,
    Part,
    ReasoningPart,
    RefusalPart,
    Request,
    TextPart,
    TextSource,
    Tool,
    ToolCallPart,
    ToolResultPart,
    UrlSource,
)

# Framing the providers add around content; small fixed guesses in line with OpenAI's published
# "3 tokens per message, 3 to prime the reply" accounting.
_PER_REQUEST = 3
_PER_MESSAGE = 4
_PER_TOOL_BLOCK = 8  # a tool call or result: its type tags and call id
_PER_TOOL = 10  # one tool definition's wrapper
_TOOLS_PREAMBLE = 300  # Anthropic documents a 313-346 token tool-use system prompt whenever tools are present
_PER_OUTPUT_FORMAT = 10

_ASCII_WEIGHT = 0.25
_ASCII_PUNCT_WEIGHT = 0.5
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# (first code point, tokens per character), sorted: see the module docstring.
_SCRIPT_STARTS = (0x80, 0x800, 0x1E00, 0x2000, 0x10000)
_SCRIPT_WEIGHTS = (0.5, 1.2, 0.5, 1.2, 2.0)  # 0x1E00-0x1FFF: Vietnamese letters and polytonic Greek

_IMAGE_PIXELS_PER_TOKEN = 750
_IMAGE_MAX_TOKENS = 1600  # also the price of an image whose size is unknown (URL, file id, unreadable header)
_IMAGE_LOW_DETAIL = 85  # OpenAI's flat price for detail="low"

# Anthropic prices a PDF page at 1,500-3,000 text tokens plus the page rendered as an image (~1,600), and a
# text PDF takes some 10-20 KB a page (content stream plus its share of the embedded fonts): ~4 bytes a token.
# Scanned pages are far bigger and so overestimated; only a PDF parser could do better.
_DOCUMENT_BYTES_PER_TOKEN = 4
# Gemini prices audio at 32 tokens a second, which compressed audio (~128 kbit/s) fills with ~16 KB; video at
# ~263 tokens a second, about the same ratio at ~1 Mbit/s. Uncompressed WAV is overestimated ~10x.
_AV_BYTES_PER_TOKEN = 500
_DOCUMENT_FLAT = 3000  # a document behind a URL or file id: about one PDF page, the size being unknowable
_TEXT_MEDIA_SUFFIXES = ("json", "xml", "yaml", "csv", "javascript")


def estimate_input_tokens(request: Request) -> int:
    """Roughly how many input tokens `request` costs: system, messages, tools and output schema included."""
    total = float(_PER_REQUEST)
    if request.system:
        total += _PER_MESSAGE + sum(_text_tokens(p.text) for p in request.system)
    for message in request.messages:
        total += _PER_MESSAGE + sum(_part_tokens(p) for p in message.parts)
    if request.tools:
        total += _TOOLS_PREAMBLE + sum(_tool_tokens(t) for t in request.tools)
    fmt = request.output_format
    if fmt is not None and fmt.kind is not OutputKind.TEXT:
        total += _PER_OUTPUT_FORMAT + _text_tokens(fmt.name or "") + _text_tokens(fmt.description or "")
        if fmt.schema is not None:
            total += _json_tokens(fmt.schema)
    return math.ceil(total)


def _text_tokens(text: str) -> float:
    if not text:
        return 0.0
    punct = _ASCII_PUNCT.subn("", text)[1]
    other = 0
    total = 0.0
    if not text.isascii():
        for run in _NON_ASCII.findall(text):
            other += len(run)
            for char in run:
                total += _SCRIPT_WEIGHTS[bisect.bisect_right(_SCRIPT_STARTS, ord(char)) - 1]
    return total + (len(text) - other - punct) * _ASCII_WEIGHT + punct * _ASCII_PUNCT_WEIGHT


def _json_tokens(value: JSON) -> float:
    # Compact, as the schema's own characters are what the provider renders; default=str so nothing can crash.
    return _text_tokens(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def _tool_tokens(tool: Tool) -> float:
    match tool:
        case FunctionTool():
            tokens = _PER_TOOL + _text_tokens(tool.name) + _text_tokens(tool.description or "")
            if tool.parameters is not None:
                tokens += _json_tokens(tool.parameters)
            if tool.grammar is not None:
                tokens += _text_tokens(tool.grammar.definition)
            return tokens
        case HostedTool():
            # The provider's own prompt for a hosted tool is unknown; its declaration is what we can see.
            return _PER_TOOL + _json_tokens(tool.config)


def _part_tokens(part: Part) -> float:
    match part:
        case TextPart(text=text) | ReasoningPart(text=text) | RefusalPart(text=text):
            return _text_tokens(text)
        case ToolCallPart():
            return _PER_TOOL_BLOCK + _text_tokens(part.name) + _text_tokens(part.raw_arguments)
        case ToolResultPart():
            return _PER_TOOL_BLOCK + sum(_part_tokens(p) for p in part.parts)
        case ImagePart():
            return _image_tokens(part.source, part.detail)
        case DocumentPart():
            return _document_tokens(part.source)
        case NativePart():
            # Provider items (web search results, compaction, executable code) are mostly text or ciphertext
            # wrapping text; pricing their JSON as text tracks the plaintext within a factor of ~1.5.
            return _json_tokens(part.data)


def _image_tokens(source: MediaSource, detail: str | None = None) -> int:
    if detail == "low":
        return _IMAGE_LOW_DETAIL
    size = _image_size(_decode(source.data)) if isinstance(source, InlineSource) else None
    if size is None:
        return _IMAGE_MAX_TOKENS
    width, height = size
    return min(math.ceil(width * height / _IMAGE_PIXELS_PER_TOKEN), _IMAGE_MAX_TOKENS)


def _document_tokens(source: MediaSource) -> float:
    match source:
        case TextSource(text=text):
            return _text_tokens(text)
        case InlineSource(media_type=media_type, data=data):
            media_type = media_type.lower()
            if media_type.startswith("image/"):
                return _image_tokens(source)
            if media_type.startswith("text/") or media_type.endswith(_TEXT_MEDIA_SUFFIXES):
                return _text_tokens(_decode(data).decode("utf-8", errors="replace"))
            size = len(data.rstrip("=")) * 3 // 4  # decoded size without decoding
            if media_type.startswith(("audio/", "video/")):
                return size / _AV_BYTES_PER_TOKEN
            return size / _DOCUMENT_BYTES_PER_TOKEN
        case UrlSource() | FileSource():
            return _DOCUMENT_FLAT


def _decode(data: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional) to bytes; b"" when it is not base64."""
    padded = data + "=" * (-len(data) % 4)
    try:
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded)
    except (binascii.Error, ValueError):
        return b""


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, WebP or JPEG header; None for anything else or a truncated header."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        pass
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the 3-byte frame tag and the 9d 01 2a start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit width-1 and height-1 packed after the 0x2f signature
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1 after 4 bytes of flags
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments (EXIF and ICC segments can precede the frame header by many kilobytes).
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xD9 or marker == 0xDA:  # end of image, start of scan: no frame header before them
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers have no length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
