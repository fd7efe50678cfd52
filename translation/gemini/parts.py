"""Gemini `Part` objects <-> IR parts, both directions, for requests and responses alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.custom_tools import INPUT, wrap
from translation.gemini.wire import GEMINI, SYNTHETIC_ID, compact_json, leftovers, own_signature, signature_of
from translation.ir import (
    DocumentPart,
    FileSource,
    ImagePart,
    InlineSource,
    MediaSource,
    NativePart,
    OpaqueSignature,
    Part,
    ReasoningPart,
    RefusalPart,
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
from translation.media import media_type_for

_PART_KEYS = frozenset(
    {"text", "thought", "thoughtSignature", "inlineData", "inline_data", "fileData", "file_data", "functionCall"}
    | {"functionResponse"}
)
_CALL_KEYS = frozenset({"id", "name", "args"})
_RESULT_KEYS = frozenset({"id", "name", "parts"})


# -- decoding ------------------------------------------------------------------------------------------------


@dataclass
class PartDecoder:
    """Decodes the parts of one request or response, keeping the call-id state that spans turns.

    `id_prefix` makes synthesised ids (`call_<n>` in requests, `call_<responseId>_<n>` in responses);
    `custom_tools` are the CUSTOM tools our encoder exposed as `{input: string}` functions, whose calls turn
    back into CUSTOM calls carrying the raw input.
    """

    id_prefix: str = "call"
    custom_tools: frozenset[str] = frozenset()
    calls_seen: int = 0
    unanswered: list[tuple[str, str]] = field(default_factory=list)  # (id, name) of calls awaiting a response

    def decode(self, part: Mapping[str, Any], path: str) -> Part:
        extras = leftovers(part, _PART_KEYS)
        if isinstance(part.get("thoughtSignature"), str) and signature_of(part) is None:
            extras["thoughtSignature"] = part["thoughtSignature"]  # the CLI's dummy: only Gemini may see it again
        # null is an absent field (translation/ir/shape.py), as Google's JSON mapping reads it.
        if part.get("functionCall") is not None:
            return self._call(part["functionCall"], part, extras)
        if part.get("functionResponse") is not None:
            return self._result(part["functionResponse"], extras, path)
        if part.get("text") is not None:
            text = str(part["text"])
            if part.get("thought") is True:
                return ReasoningPart(
                    text, summary=True, signature=signature_of(part), extras=own_extras(GEMINI, extras)
                )
            return TextPart(text, signature=signature_of(part), extras=own_extras(GEMINI, extras))
        media = decode_media(part, extras)
        return media if media is not None else NativePart(GEMINI, dict(part))

    def next_id(self) -> str:
        self.calls_seen += 1
        return f"{self.id_prefix}_{self.calls_seen - 1}"

    def _call(self, call: Mapping[str, Any], part: Mapping[str, Any], extras: dict[str, Any]) -> ToolCallPart:
        name = str(call.get("name", ""))
        if rest := leftovers(call, _CALL_KEYS):
            extras["functionCall"] = rest
        call_id = call.get("id")
        if not call_id:
            call_id = self.next_id()
            extras[SYNTHETIC_ID] = True
        self.unanswered.append((call_id, name))
        args = _mapping(call.get("args"))
        signature, bucket = signature_of(part), own_extras(GEMINI, extras)
        if name in self.custom_tools and isinstance(args.get(INPUT), str):
            return ToolCallPart.from_raw(
                call_id, name, args[INPUT], kind=ToolKind.CUSTOM, signature=signature, extras=bucket
            )
        return ToolCallPart.from_object(call_id, name, dict(args), signature=signature, extras=bucket)

    def _result(self, result: Mapping[str, Any], extras: dict[str, Any], path: str) -> ToolResultPart:
        name = str(result.get("name", ""))
        rest = leftovers(result, _RESULT_KEYS)
        call_id = result.get("id") or self._match_by_name(name)
        if not result.get("id"):
            extras[SYNTHETIC_ID] = True
        self.unanswered = [(i, n) for i, n in self.unanswered if i != call_id]
        response = _mapping(result.get("response"))
        text, is_error = _result_text(response)
        if response_object(text, is_error) == response:
            rest.pop("response", None)  # rebuilt from the IR; anything else (MCP-style {"result": …}) is kept
        if rest:
            extras["functionResponse"] = rest
        parts: list[Part] = [TextPart(text)] if text else []
        for i, media in enumerate(result.get("parts") or ()):
            decoded = decode_media(media, {})
            if decoded is None:
                raise TranslationError(
                    "function_response_part", "unsupported functionResponse part", f"{path}.parts[{i}]"
                )
            parts.append(decoded)
        kind = ToolKind.CUSTOM if name in self.custom_tools else ToolKind.FUNCTION
        return ToolResultPart(call_id, tuple(parts), name, is_error, kind, extras=own_extras(GEMINI, extras))

    def _match_by_name(self, name: str) -> str:
        """Gemini may omit ids: a response then answers the oldest unanswered call of that name."""
        for call_id, call_name in self.unanswered:
            if call_name == name:
                return call_id
        return self.next_id()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _result_text(response: Mapping[str, Any]) -> tuple[str, bool]:
    """Gemini convention (SDK docstring): `output` for output, `error` for an error, else the whole object."""
    is_error = "error" in response and "output" not in response
    value: Any = response["error"] if is_error else response.get("output", response)
    return (value if isinstance(value, str) else compact_json(value)), is_error


def response_object(text: str, is_error: bool) -> dict[str, Any]:
    return {"error": text} if is_error else {"output": text}


def _standard_base64(data: str) -> str:
    """The IR holds standard padded base64; Gemini also takes the URL-safe alphabet (google-genai sends it)."""
    data = data.replace("-", "+").replace("_", "/")
    return data + "=" * (-len(data) % 4)


def decode_media(part: Mapping[str, Any], extras: dict[str, Any]) -> ImagePart | DocumentPart | None:
    # Google's JSON mapping accepts snake_case field names too, and google-genai sends some of them that way.
    source: MediaSource
    blob = part.get("inlineData", part.get("inline_data"))
    file = part.get("fileData", part.get("file_data"))
    if isinstance(blob, Mapping):
        mime = str(blob.get("mimeType", blob.get("mime_type", "application/octet-stream")))
        source = InlineSource(mime, _standard_base64(str(blob.get("data", ""))))
        if rest := leftovers(blob, {"mimeType", "mime_type", "data"}):
            extras["inlineData"] = rest
    elif isinstance(file, Mapping):
        mime = str(file.get("mimeType", file.get("mime_type", "")))
        source = UrlSource(str(file.get("fileUri", file.get("file_uri", ""))), mime or None)
        if rest := leftovers(file, {"mimeType", "mime_type", "fileUri", "file_uri"}):
            extras["fileData"] = rest
    else:
        return None
    bucket = own_extras(GEMINI, extras)
    if mime.startswith("image/"):
        return ImagePart(source, extras=bucket)
    return DocumentPart(source, extras=bucket)


# -- encoding ------------------------------------------------------------------------------------------------


@dataclass
class PartEncoder:
    """Encodes IR parts as Gemini parts.

    `call_names` maps call ids to tool names for functionResponse (Gemini requires the name; Chat results do
    not carry it). `for_client`: the parts go to a Gemini client, which sees reasoning text as thought parts
    when it asked for them (`include_thoughts`); an upstream only gets reasoning that carries a Gemini signature.
    """

    w: Warnings
    call_names: dict[str, str] = field(default_factory=dict)
    for_client: bool = False
    include_thoughts: bool = False

    def encode(self, part: Part, path: str) -> list[dict[str, Any]]:
        match part:
            case TextPart(text=text, signature=signature):
                out = self._signed({"text": text, **extras_for(part.extras, GEMINI)}, signature, path)
                # An empty part is sent only to carry its signature: Gemini rejects empty parts (pitfall 18).
                return [out] if text or "thoughtSignature" in out else []
            case ReasoningPart():
                return self._reasoning(part, path)
            case RefusalPart(text=text):
                return [{"text": text}] if text else []
            case ImagePart() | DocumentPart():
                return [self.media(part, path)]
            case ToolCallPart():
                return [self._call(part, path)]
            case ToolResultPart():
                return [self._result(part, path)]
            case NativePart(dialect=dialect, data=data):
                if dialect is GEMINI:
                    return [dict(data)]
                name = str(data.get("type") or next(iter(data), "unknown"))
                self.w.drop(f"native_part:{name}", f"{dialect.label} item {name!r} has no Gemini form", path)
                return []

    def _signed(self, out: dict[str, Any], signature: OpaqueSignature | None, path: str) -> dict[str, Any]:
        value = own_signature(signature, self.w, path)
        if value is not None:
            out["thoughtSignature"] = value
        return out

    def _reasoning(self, part: ReasoningPart, path: str) -> list[dict[str, Any]]:
        if self.for_client and not self.include_thoughts:
            return []  # Gemini sends thoughts only to clients that set includeThoughts
        value = own_signature(part.signature, self.w, path)
        if value is None and not (self.for_client and part.text):
            return []  # an upstream ignores thought text in history; only its own signature carries state
        out = {"text": part.text, "thought": True, **extras_for(part.extras, GEMINI)}
        if value is not None:
            out["thoughtSignature"] = value
        return [out]

    def _call(self, part: ToolCallPart, path: str) -> dict[str, Any]:
        own = dict(extras_for(part.extras, GEMINI))
        args: dict[str, Any]
        if part.kind is ToolKind.CUSTOM:
            args = wrap(part.raw_arguments)
        elif part.arguments is None:
            self.w.drop("tool_arguments", "the call's arguments are not a JSON object; sent as {}", path)
            args = {}
        else:
            args = part.arguments
        call: dict[str, Any] = {} if own.pop(SYNTHETIC_ID, False) else {"id": part.id}
        call.update({"name": part.name, "args": args, **own.pop("functionCall", {})})
        return self._signed({"functionCall": call, **own}, part.signature, path)

    def _result(self, part: ToolResultPart, path: str) -> dict[str, Any]:
        own = dict(extras_for(part.extras, GEMINI))
        name = part.name or self.call_names.get(part.call_id)
        if not name:
            raise TranslationError("tool_result_name", f"no tool call matches result {part.call_id!r}", path)
        texts: list[str] = []
        media: list[dict[str, Any]] = []
        for i, inner in enumerate(part.parts):
            if isinstance(inner, TextPart):
                texts.append(inner.text)
            elif isinstance(inner, (ImagePart, DocumentPart)):
                encoded = self.media(inner, f"{path}.parts[{i}]")
                if "text" in encoded:
                    texts.append(encoded["text"])
                else:
                    media.append(encoded)
        result: dict[str, Any] = {} if own.pop(SYNTHETIC_ID, False) else {"id": part.call_id}
        result["name"] = name
        result["response"] = response_object("\n".join(texts), part.is_error)
        if media:
            result["parts"] = media
        result.update(own.pop("functionResponse", {}))
        return {"functionResponse": result, **own}

    def media(self, part: ImagePart | DocumentPart, path: str) -> dict[str, Any]:
        own = dict(extras_for(part.extras, GEMINI))
        if isinstance(part, ImagePart) and part.detail not in (None, "auto"):
            self.w.drop("image_detail", f"Gemini has no image detail {part.detail!r}", path)
        match part.source:
            case InlineSource(media_type=mime, data=data):
                return {"inlineData": {"mimeType": mime, "data": data, **own.pop("inlineData", {})}, **own}
            case UrlSource(url=url, media_type=mime):
                file = {"mimeType": mime or _guess_mime(url, part), "fileUri": url, **own.pop("fileData", {})}
                return {"fileData": file, **own}
            case TextSource(text=text):
                return {"text": text}
            case FileSource(file_id=file_id):
                raise TranslationError("file_id", f"provider file {file_id!r} cannot be sent to Gemini", path)


def _guess_mime(url: str, part: ImagePart | DocumentPart) -> str:
    """Gemini requires fileData.mimeType; guess it from the URL when the source did not say."""
    return media_type_for(url) or ("image/jpeg" if isinstance(part, ImagePart) else "application/pdf")
