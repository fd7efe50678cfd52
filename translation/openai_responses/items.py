"""Input/output items <-> IR messages and parts.

Responses history is a flat list of items. Decoding groups it the way the IR expects while keeping order:
- a `message` item is one Message (its `id`/`status`/`phase` in the Message's extras); an assistant message
  shares its Message with the reasoning and call items around it (`reasoning, message, function_call` is one
  turn), but never with a second message item;
- `function_call_output` / `custom_tool_call_output` items in a row are one USER Message of ToolResultParts;
- items the IR does not model are NativeParts, on the assistant side when the model produced them.
Encoding walks the parts in order and cuts a new item wherever the part kind changes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from translation.ir import (
    JSON,
    DocumentPart,
    ImagePart,
    Message,
    NativePart,
    OpaqueSignature,
    Part,
    ReasoningPart,
    RefusalPart,
    Role,
    SignatureKind,
    TextPart,
    Tool,
    ToolCallPart,
    ToolKind,
    ToolResultPart,
    Warnings,
    extras_for,
    own_extras,
)
from translation.openai_responses.parts import MESSAGE_KEY, decode_content, encode_part
from translation.openai_responses.tools import namespaces
from translation.openai_responses.wire import DIALECT

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM, "developer": Role.DEVELOPER}
_CALL_TYPES = {"function_call": ToolKind.FUNCTION, "custom_tool_call": ToolKind.CUSTOM}
_OUTPUT_TYPES = {"function_call_output": ToolKind.FUNCTION, "custom_tool_call_output": ToolKind.CUSTOM}
# Items the model produces (they belong to the assistant turn); every other unmodelled item is client-side.
_MODEL_ITEMS = {
    "web_search_call",
    "file_search_call",
    "computer_call",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "shell_call",
    "apply_patch_call",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "tool_search_call",
    "compaction",
    "program",
}
_CONTENT_PARTS = (TextPart, ImagePart, DocumentPart, RefusalPart)


# -- single items (shared with response output) ---------------------------------------------------------------


def decode_call(item: Mapping[str, JSON], fallback_id: str) -> ToolCallPart:
    kind = _CALL_TYPES[str(item["type"])]
    raw_field = "arguments" if kind is ToolKind.FUNCTION else "input"
    rest = {k: v for k, v in item.items() if k not in ("type", "call_id", "name", raw_field)}
    return ToolCallPart.from_raw(
        str(item.get("call_id") or fallback_id),
        str(item.get("name", "")),
        str(item.get(raw_field) or ""),
        kind=kind,
        extras=own_extras(DIALECT, rest),
    )


def decode_reasoning(item: Mapping[str, JSON]) -> ReasoningPart:
    """Summary segments joined with a blank line (the raw `content` only when there is no summary)."""
    summary = [str(s.get("text", "")) for s in item.get("summary") or () if isinstance(s, Mapping)]
    content = [str(c.get("text", "")) for c in item.get("content") or () if isinstance(c, Mapping)]
    encrypted = item.get("encrypted_content")
    signature = None
    if isinstance(encrypted, str):
        item_id = item.get("id")
        signature = OpaqueSignature(DIALECT, SignatureKind.RESPONSES_ENCRYPTED, encrypted, item_id and str(item_id))
    rest = {k: v for k, v in item.items() if k not in ("type", "encrypted_content")}
    return ReasoningPart(
        text="\n\n".join(summary or content),
        summary=bool(summary),
        signature=signature,
        extras=own_extras(DIALECT, rest),
    )


def decode_output_item(item: Mapping[str, JSON], fallback_call_id: str) -> list[Part]:
    """One `response.output` item (or an assistant-side input item) as IR parts."""
    kind = item.get("type")
    if kind in _CALL_TYPES:
        return [decode_call(item, fallback_call_id)]
    if kind == "reasoning":
        return [decode_reasoning(item)]
    if kind == "message":
        # Response parts are flat, so the message item's own fields ride on each of its parts.
        header = {k: v for k, v in item.items() if k not in ("type", "role", "content")}
        return [_with_message(part, header) for part in decode_content(item.get("content"))]
    return [NativePart(DIALECT, dict(item))]


def _with_message(part: Part, header: dict[str, JSON]) -> Part:
    if not header or not isinstance(part, (TextPart, RefusalPart)):
        return part
    own = {**extras_for(part.extras, DIALECT), MESSAGE_KEY: header}
    return dataclasses.replace(part, extras=own_extras(DIALECT, own))


# -- input items -> messages ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    role: Role
    kind: str  # "turn" (assistant items), "results" (client-side items), "message" (a non-assistant message)
    parts: list[Part] = field(default_factory=list)
    extras: dict[str, dict[str, JSON]] = field(default_factory=dict)
    has_message: bool = False

    def message(self) -> Message:
        return Message(self.role, tuple(self.parts), self.extras)


def decode_items(items: Sequence[JSON]) -> tuple[Message, ...]:
    groups: list[_Group] = []
    call_names: dict[str, str] = {}

    def group(role: Role, kind: str) -> _Group:
        if not groups or groups[-1].kind != kind or groups[-1].role is not role:
            groups.append(_Group(role, kind))
        return groups[-1]

    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(str(item.get("role")), Role.USER)
            header = {k: v for k, v in item.items() if k not in ("type", "role", "content")}
            content = decode_content(item.get("content"))
            if role is Role.ASSISTANT and groups and groups[-1].kind == "turn" and not groups[-1].has_message:
                target = groups[-1]
            else:
                target = _Group(role, "turn" if role is Role.ASSISTANT else "message")
                groups.append(target)
            target.parts.extend(content)
            target.extras = own_extras(DIALECT, header)
            target.has_message = True
        elif kind in _CALL_TYPES or kind == "reasoning" or kind in _MODEL_ITEMS:
            parts = decode_output_item(item, f"call_{i}")
            call_names.update((p.id, p.name) for p in parts if isinstance(p, ToolCallPart))
            group(Role.ASSISTANT, "turn").parts.extend(parts)
        elif kind in _OUTPUT_TYPES:
            group(Role.USER, "results").parts.append(_decode_result(item, call_names))
        else:
            group(Role.USER, "results").parts.append(NativePart(DIALECT, dict(item)))
    return tuple(g.message() for g in groups)


def _decode_result(item: Mapping[str, JSON], call_names: Mapping[str, str]) -> ToolResultPart:
    call_id = str(item.get("call_id", ""))
    rest = {k: v for k, v in item.items() if k not in ("type", "call_id", "output")}
    name = item.get("name")
    return ToolResultPart(
        call_id=call_id,
        parts=decode_content(item.get("output")),
        name=str(name) if isinstance(name, str) else call_names.get(call_id),
        kind=_OUTPUT_TYPES[str(item["type"])],
        extras=own_extras(DIALECT, rest),
    )


# -- messages -> input items ---------------------------------------------------------------------------------


def encode_messages(messages: Sequence[Message], tools: Sequence[Tool], warnings: Warnings) -> list[dict[str, JSON]]:
    tool_namespaces = namespaces(tools)
    items: list[dict[str, JSON]] = []
    for m, message in enumerate(messages):
        items += _encode_message(message, f"messages[{m}]", tool_namespaces, warnings)
    return items


def _encode_message(
    message: Message, path: str, tool_namespaces: Mapping[str, str], warnings: Warnings
) -> list[dict[str, JSON]]:
    """Runs of content parts become message items; every other part is an item of its own, in order."""
    items: list[dict[str, JSON]] = []
    header = dict(extras_for(message.extras, DIALECT))
    assistant = message.role is Role.ASSISTANT
    numbered = list(enumerate(message.parts))
    for is_content, run in itertools.groupby(numbered, key=lambda pair: isinstance(pair[1], _CONTENT_PARTS)):
        if not is_content:
            for p, part in run:
                item = encode_item(part, tool_namespaces, warnings, f"{path}.content[{p}]")
                if item is not None:
                    items.append(item)
            continue
        content = [
            wire
            for p, part in run
            if (wire := encode_part(part, assistant=assistant, warnings=warnings, path=f"{path}.content[{p}]"))
        ]
        if content:
            items.append({"type": "message", "role": message.role.value, "content": content, **header})
            header = {}  # the item's id/status/phase belong to the first message item only
    return items


def encode_item(
    part: Part, tool_namespaces: Mapping[str, str], warnings: Warnings, path: str
) -> dict[str, JSON] | None:
    """A part that is an item of its own: a call, a tool result, reasoning, a native item."""
    match part:
        case ToolCallPart():
            return encode_call(part, tool_namespaces, warnings, path)
        case ToolResultPart():
            return _encode_result(part, warnings, path)
        case ReasoningPart():
            return encode_reasoning(part, warnings, path)
        case NativePart():
            return encode_part(part, assistant=False, warnings=warnings, path=path)
    return None


def encode_call(
    part: ToolCallPart, tool_namespaces: Mapping[str, str], warnings: Warnings, path: str
) -> dict[str, JSON]:
    if part.signature is not None:
        warnings.drop("reasoning_signature", "a Gemini thought signature on a call cannot go to Responses", path)
    own = dict(extras_for(part.extras, DIALECT))
    if "namespace" not in own and part.name in tool_namespaces:
        own["namespace"] = tool_namespaces[part.name]
    if part.kind is ToolKind.CUSTOM:
        return {"type": "custom_tool_call", "call_id": part.id, "name": part.name, "input": part.raw_arguments, **own}
    return {"type": "function_call", "call_id": part.id, "name": part.name, "arguments": part.raw_arguments, **own}


def _encode_result(part: ToolResultPart, warnings: Warnings, path: str) -> dict[str, JSON]:
    parts = list(part.parts)
    if part.is_error:
        # Responses has no error flag: say it in the text (README convention).
        warnings.drop("tool_result_error", "the tool error flag became an `Error: ` prefix", path)
        if parts and isinstance(parts[0], TextPart):
            parts[0] = TextPart(f"Error: {parts[0].text}", parts[0].cache, extras=parts[0].extras)
        else:
            parts.insert(0, TextPart("Error: "))
    output: JSON
    if not parts:
        output = ""
    elif len(parts) == 1 and isinstance(parts[0], TextPart) and parts[0].cache is None and not parts[0].extras:
        output = parts[0].text
    else:
        output = [
            wire
            for i, p in enumerate(parts)
            if (wire := encode_part(p, assistant=False, warnings=warnings, path=f"{path}.content[{i}]"))
        ]
    wire_type = "custom_tool_call_output" if part.kind is ToolKind.CUSTOM else "function_call_output"
    return {"type": wire_type, "call_id": part.call_id, "output": output, **extras_for(part.extras, DIALECT)}


def encode_reasoning(part: ReasoningPart, warnings: Warnings, path: str | None) -> dict[str, JSON] | None:
    """A reasoning item, only for reasoning that came from Responses: the API needs its `rs_…` id (and its
    `encrypted_content` when nothing is stored), which no other provider's reasoning has."""
    signature = part.signature
    if signature is not None and signature.dialect is not DIALECT:
        warnings.drop("reasoning_signature", f"{signature.dialect.label} reasoning state cannot go to Responses", path)
        return None
    own = dict(extras_for(part.extras, DIALECT))
    reasoning_id = own.pop("id", None) or (signature.item_id if signature else None)
    if reasoning_id is None:
        if part.text:
            warnings.drop("reasoning", "reasoning without a Responses item id cannot be replayed", path)
        return None
    item: dict[str, JSON] = {"type": "reasoning", "id": reasoning_id, "summary": _summary(part)}
    if not part.summary and part.text:
        item["content"] = [{"type": "reasoning_text", "text": part.text}]
    item.update(own)
    if signature is not None:
        item["encrypted_content"] = signature.value
    return item


def _summary(part: ReasoningPart) -> list[JSON]:
    return [{"type": "summary_text", "text": part.text}] if part.summary and part.text else []
