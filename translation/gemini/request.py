"""Gemini generateContent request body <-> IR `Request`.

The model is in the URL path (`models/{model}:generateContent`), so `decode_request` takes it as `model=` and
`encode_request` writes no model (routing builds the path from `TargetOptions.model`); streaming is the path too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.gemini.config import decode_generation_config, encode_generation_config
from translation.gemini.parts import PartDecoder, PartEncoder
from translation.gemini.tools import decode_tool_config, decode_tools, encode_tool_choice, encode_tools
from translation.gemini.wire import DUMMY_SIGNATURE, GEMINI, MODEL_ROLE, USER_ROLE, leftovers
from translation.ir import (
    Message,
    Request,
    Role,
    TextPart,
    ToolCallPart,
    Translated,
    TranslationError,
    Warnings,
    extras_for,
    own_extras,
)
from translation.ir.shape import ANY, BOOL, INT, NUM, OBJ, STR, Either, ListOf, Obj, validated

DUMMY_SIGNATURE_FLAG = "gemini_dummy_thought_signature"

_BODY_KEYS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model"})

# The JSON types of what decoding reads (translation/ir/shape.py): a wrong one is a 400 naming the field.
# Google's JSON mapping takes snake_case names too (google-genai sends some), so both spellings are checked.
_BLOB = Obj({"mimeType": STR, "mime_type": STR, "data": STR})
_FILE = Obj({"mimeType": STR, "mime_type": STR, "fileUri": STR, "file_uri": STR})
_MEDIA = {"inlineData": _BLOB, "inline_data": _BLOB, "fileData": _FILE, "file_data": _FILE}
_PART = Obj(
    {
        **_MEDIA,
        "text": STR,
        "thought": BOOL,
        "thoughtSignature": STR,
        "functionCall": Obj({"name": STR, "id": STR, "args": OBJ}),
        "functionResponse": Obj({"name": STR, "id": STR, "response": OBJ, "parts": ListOf(Obj(_MEDIA))}),
    }
)
_CONTENT = Obj({"role": STR, "parts": ListOf(_PART)})
_SCHEMA = OBJ
_THINKING = {"thinkingBudget": INT, "thinking_budget": INT, "thinkingLevel": STR, "thinking_level": STR}
REQUEST_SHAPE = Obj(
    {
        "model": STR,
        "contents": ListOf(_CONTENT),
        "systemInstruction": Either(STR, Obj({"parts": ListOf(Obj({"text": STR}))})),
        "tools": ListOf(
            Obj(
                {
                    "functionDeclarations": ListOf(
                        Obj({"name": STR, "description": STR, "parameters": _SCHEMA, "parametersJsonSchema": ANY})
                    )
                }
            )
        ),
        "toolConfig": Obj({"functionCallingConfig": Obj({"mode": STR, "allowedFunctionNames": ListOf(STR)})}),
        "generationConfig": Obj(
            {
                "maxOutputTokens": INT,
                "temperature": NUM,
                "topP": NUM,
                "topK": INT,
                "seed": INT,
                "presencePenalty": NUM,
                "frequencyPenalty": NUM,
                "candidateCount": INT,
                "stopSequences": ListOf(STR),
                "responseMimeType": STR,
                "responseSchema": _SCHEMA,
                "responseJsonSchema": ANY,
                "thinkingConfig": Obj({**_THINKING, "includeThoughts": BOOL, "include_thoughts": BOOL}),
            }
        ),
    }
)


# -- decoding ------------------------------------------------------------------------------------------------


@validated(REQUEST_SHAPE)
def decode_request(body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]:
    w = Warnings()
    extras = leftovers(body, _BODY_KEYS)
    system = _decode_system(body.get("systemInstruction"), extras)
    decoder = PartDecoder()
    messages = tuple(
        _decode_content(content, f"contents[{i}]", decoder) for i, content in enumerate(body.get("contents") or ())
    )
    tool_choice, tool_config_rest = decode_tool_config(body.get("toolConfig") or {})
    if tool_config_rest:
        extras["toolConfig"] = tool_config_rest
    settings = decode_generation_config(body.get("generationConfig") or {})
    if settings.extras:
        extras["generationConfig"] = settings.extras
    name = model or str(body.get("model") or "")
    request = Request(
        model=name.removeprefix("models/"),
        messages=messages,
        system=system,
        tools=decode_tools(body.get("tools") or ()),
        tool_choice=tool_choice,
        max_output_tokens=settings.max_output_tokens,
        sampling=settings.sampling,
        reasoning=settings.reasoning,
        output_format=settings.output_format,
        extras=own_extras(GEMINI, extras),
    )
    return w.result(request)


def _decode_system(instruction: Any, extras: dict[str, Any]) -> tuple[TextPart, ...]:
    if instruction is None:
        return ()
    if isinstance(instruction, str):  # the SDKs accept a bare string; the REST API a Content
        return (TextPart(instruction),)
    if rest := leftovers(instruction, {"parts"}):
        extras["systemInstruction"] = rest  # the Gemini CLI sends role "user" here
    parts = []
    for i, part in enumerate(instruction.get("parts") or ()):
        if set(part) != {"text"}:
            raise TranslationError(
                "system_instruction_part", "systemInstruction may hold text only", f"systemInstruction.parts[{i}]"
            )
        parts.append(TextPart(str(part["text"])))
    return tuple(parts)


def _decode_content(content: Mapping[str, Any], path: str, decoder: PartDecoder) -> Message:
    # Only "model" is the assistant; "user", a missing role and the legacy "function" role are all user turns.
    wire_role = content.get("role")
    role = Role.ASSISTANT if wire_role == MODEL_ROLE else Role.USER
    parts = tuple(decoder.decode(part, f"{path}.parts[{i}]") for i, part in enumerate(content.get("parts") or ()))
    rest = leftovers(content, {"parts", "role"})
    if wire_role not in (MODEL_ROLE, USER_ROLE, None):
        rest["role"] = wire_role  # the legacy "function" role, restored for a Gemini upstream
    return Message(role, parts, extras=own_extras(GEMINI, rest))


# -- encoding ------------------------------------------------------------------------------------------------


def encode_request(request: Request, target: TargetOptions) -> Translated[dict[str, Any]]:
    w = Warnings()
    if request.previous_response_id is not None:
        raise TranslationError("previous_response_id", "Gemini keeps no conversation state", "previous_response_id")
    own = dict(extras_for(request.extras, GEMINI))
    instructions, rest = request.leading_instructions()
    body: dict[str, Any] = {"contents": _encode_messages(request, rest, target, w)}
    if system_parts := [{"text": part.text} for part in instructions if part.text]:
        body["systemInstruction"] = {**own.pop("systemInstruction", {}), "parts": system_parts}
    if request.tools and (tools := encode_tools(request.tools, target, w)):
        body["tools"] = tools
    tool_config = dict(own.pop("toolConfig", {}))
    validated = bool(tool_config.pop("validated", False))
    if request.tool_choice is not None:
        calling = {**encode_tool_choice(request.tool_choice, validated), **tool_config.pop("functionCallingConfig", {})}
        tool_config["functionCallingConfig"] = calling
    if tool_config:
        body["toolConfig"] = tool_config
    if request.parallel_tool_calls is False:
        w.drop("parallel_tool_calls", "Gemini cannot forbid parallel function calls", "parallel_tool_calls")
    if config := encode_generation_config(request, target, own.pop("generationConfig", {}), w):
        body["generationConfig"] = config
    body.update(own)  # safetySettings, cachedContent, labels … from a Gemini client
    return w.result(body)


def _encode_messages(
    request: Request, messages: tuple[Message, ...], target: TargetOptions, w: Warnings
) -> list[dict[str, Any]]:
    """Gemini contents: user/model turns only, consecutive same-role turns merged (protocols.md §6 #23)."""
    call_names = {p.id: p.name for m in request.messages for p in m.parts if isinstance(p, ToolCallPart)}
    encoder = PartEncoder(w, call_names)
    offset = len(request.messages) - len(messages)
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        path = f"messages[{offset + i}]"
        if message.role in (Role.SYSTEM, Role.DEVELOPER):
            parts = _system_as_user_text(message, w, path)
        else:
            parts = [p for j, part in enumerate(message.parts) for p in encoder.encode(part, f"{path}.parts[{j}]")]
        if not parts:
            continue
        role = MODEL_ROLE if message.role is Role.ASSISTANT else USER_ROLE
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts, **extras_for(message.extras, GEMINI)})
    for content in contents:
        if content["role"] == USER_ROLE:
            # Function responses first, as they answer the model turn just before (stable for the rest).
            content["parts"].sort(key=lambda part: "functionResponse" not in part)
        elif target.flags.get(DUMMY_SIGNATURE_FLAG):
            _add_dummy_signature(content["parts"])
    return contents


def _system_as_user_text(message: Message, w: Warnings, path: str) -> list[dict[str, Any]]:
    text = "\n".join(part.text for part in message.parts if isinstance(part, TextPart))
    if not text:
        return []
    w.drop("system_message", "Gemini has no system turns mid-conversation; sent as user text", path)
    return [{"text": f"System: {text}"}]


def _add_dummy_signature(parts: list[dict[str, Any]]) -> None:
    """History from another model has no signatures, which Gemini 3 rejects on function-calling turns: the
    documented dummy goes on the turn's first functionCall, as a real signature would (pitfall 35)."""
    if any("thoughtSignature" in part for part in parts):
        return
    first_call = next((part for part in parts if "functionCall" in part), None)
    if first_call is not None:
        first_call["thoughtSignature"] = DUMMY_SIGNATURE
