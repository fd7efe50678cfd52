"""`messages`: Chat messages <-> IR messages.

Decoding is faithful (a `role: tool` message becomes a USER message with one ToolResultPart). Encoding
normalises for Chat: one `role: tool` message per result before the rest of the user turn (pitfall 6), media
from tool results moved to a following user message (pitfall 19), `content: null` for an assistant turn that
only calls tools (pitfall 18), reasoning echoed as `reasoning_content` only when the upstream wants it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from translation.custom_tools import wrap_json
from translation.ir import (
    DocumentPart,
    ImagePart,
    Message,
    NativePart,
    Part,
    ReasoningPart,
    RefusalPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolKind,
    ToolResultPart,
    TranslationError,
    Warnings,
    extras_for,
    own_extras,
)
from translation.openai_chat.content import PartEncoder, compact_content, decode_content
from translation.openai_chat.wire import DIALECT, reasoning_text, synthetic_call_id, unknown_fields

_ASSISTANT_FIELDS = ("role", "content", "refusal", "tool_calls", "function_call", "reasoning_content", "reasoning")


# -- decode --------------------------------------------------------------------------------------------------


@dataclass
class _CallNames:
    """Tool names by call id, so a `role: tool` result can be named; legacy calls get made-up ids."""

    by_id: dict[str, str] = field(default_factory=dict)
    legacy_by_name: dict[str, str] = field(default_factory=dict)


def decode_messages(raw: Sequence[Mapping[str, Any]]) -> tuple[Message, ...]:
    names = _CallNames()
    return tuple(_decode_message(i, message, names) for i, message in enumerate(raw))


def _decode_message(i: int, message: Mapping[str, Any], names: _CallNames) -> Message:
    role = message.get("role")
    match role:
        case "system" | "developer" | "user":
            extras = own_extras(DIALECT, unknown_fields(message, ("role", "content")))
            return Message(Role(role), decode_content(message.get("content")), extras)
        case "assistant":
            return _decode_assistant(i, message, names)
        case "tool":
            call_id = message["tool_call_id"]
            result = ToolResultPart(call_id, decode_content(message.get("content")), name=names.by_id.get(call_id))
            return Message(
                Role.USER, (result,), own_extras(DIALECT, unknown_fields(message, ("role", "content", "tool_call_id")))
            )
        case "function":
            name = message["name"]
            call_id = names.legacy_by_name.get(name, synthetic_call_id(f"msg{i}", 0))
            result = ToolResultPart(call_id, decode_content(message.get("content")), name=name)
            return Message(
                Role.USER, (result,), own_extras(DIALECT, unknown_fields(message, ("role", "content", "name")))
            )
    raise TranslationError("role", f"unknown message role {role!r}", f"messages[{i}].role")


def _decode_assistant(i: int, message: Mapping[str, Any], names: _CallNames) -> Message:
    parts = decode_assistant_parts(message, f"msg{i}")
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    names.by_id.update((call.id, call.name) for call in calls)
    if message.get("function_call"):
        names.legacy_by_name[calls[-1].name] = calls[-1].id
    return Message(Role.ASSISTANT, parts, own_extras(DIALECT, unknown_fields(message, _ASSISTANT_FIELDS)))


def decode_assistant_parts(message: Mapping[str, Any], id_scope: str) -> tuple[Part, ...]:
    """An assistant message (history) or a response's `message`, in output order; missing call ids are made
    up from `id_scope`."""
    parts: list[Part] = []
    reasoning = reasoning_text(message)
    if reasoning is not None:
        parts.append(ReasoningPart(reasoning))
    parts.extend(decode_content(message.get("content")))
    if message.get("refusal"):
        parts.append(RefusalPart(message["refusal"]))
    calls = message.get("tool_calls") or ()
    parts.extend(decode_tool_calls(calls, id_scope))
    legacy = message.get("function_call")
    if legacy:
        call_id = synthetic_call_id(id_scope, len(calls))
        parts.append(ToolCallPart.from_raw(call_id, legacy["name"], legacy.get("arguments") or ""))
    return tuple(parts)


def decode_tool_calls(raw: Sequence[Mapping[str, Any]], id_scope: str) -> list[ToolCallPart]:
    """`tool_calls` of a message (request history or response); ids made up from `id_scope` when missing."""
    calls = []
    for n, call in enumerate(raw):
        call_id = call.get("id") or synthetic_call_id(id_scope, n)
        if call.get("type") == "custom":
            custom = call["custom"]
            calls.append(ToolCallPart.from_raw(call_id, custom["name"], custom.get("input", ""), kind=ToolKind.CUSTOM))
        else:
            function = call["function"]
            calls.append(ToolCallPart.from_raw(call_id, function["name"], function.get("arguments") or ""))
    return calls


# -- encode --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageEncoder:
    parts: PartEncoder
    echo_reasoning: bool = False
    developer_role: bool = True
    custom_tools: bool = True  # CUSTOM calls as Chat `custom` calls; False: as function calls (custom_tools.py)

    @property
    def warnings(self) -> Warnings:
        return self.parts.warnings

    def encode(self, system: Sequence[TextPart], messages: Sequence[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        instructions = list(system)
        if instructions:
            items = [self.parts.text(p, f"system[{j}]") for j, p in enumerate(instructions)]
            out.append({"role": "system", "content": compact_content(items)})
        for i, message in enumerate(messages):
            path = f"messages[{i}]"
            match message.role:
                case Role.ASSISTANT:
                    out.append(self._assistant(message, path))
                case Role.USER:
                    out.extend(self._user(message, path))
                case _:
                    out.append(self._instructions(message, path))
        return out

    def _instructions(self, message: Message, path: str) -> dict[str, Any]:
        items = []
        for j, part in enumerate(message.parts):
            if isinstance(part, TextPart):
                items.append(self.parts.text(part, f"{path}.parts[{j}]"))
            else:
                self.warnings.drop(f"content:{part.TAG}", "Chat instructions are text only", f"{path}.parts[{j}]")
        role = "developer" if message.role is Role.DEVELOPER and self.developer_role else "system"
        return {"role": role, "content": compact_content(items), **extras_for(message.extras, DIALECT)}

    def _user(self, message: Message, path: str) -> list[dict[str, Any]]:
        """Tool messages first, then one user message with moved tool media and the remaining parts."""
        tool_messages: list[dict[str, Any]] = []
        user_items: list[dict[str, Any]] = []
        for j, part in enumerate(message.parts):
            if isinstance(part, ToolResultPart):
                tool_messages.append(self._tool_result(part, f"{path}.parts[{j}]", user_items))
        for j, part in enumerate(message.parts):
            if not isinstance(part, ToolResultPart):
                item = self.parts.user_part(part, f"{path}.parts[{j}]")
                user_items.extend([item] if item is not None else [])
        if not user_items:
            return tool_messages
        user = {"role": "user", "content": compact_content(user_items), **extras_for(message.extras, DIALECT)}
        return [*tool_messages, user]

    def _tool_result(self, result: ToolResultPart, path: str, moved: list[dict[str, Any]]) -> dict[str, Any]:
        """Chat tool content is text only: images and documents go to `moved` (the next user message)."""
        items: list[dict[str, Any]] = []
        media: list[dict[str, Any]] = []
        for k, part in enumerate(result.parts):
            part_path = f"{path}.parts[{k}]"
            if isinstance(part, TextPart):
                items.append(self.parts.text(part, part_path))
            elif isinstance(part, (ImagePart, DocumentPart)):
                self.warnings.drop(f"tool_result_{part.TAG}", "moved to a user message after the tool result", path)
                media.extend(item for item in [self.parts.user_part(part, part_path)] if item is not None)
            else:
                self.warnings.drop(f"content:{part.TAG}", "Chat tool results are text only", part_path)
        if media:
            label = f"Media returned by the {result.name or 'tool'} call {result.call_id}:"
            moved.extend([{"type": "text", "text": label}, *media])
            items = items or [{"type": "text", "text": "(media output follows in the next user message)"}]
        if result.is_error:
            self.warnings.drop("tool_result_error", "Chat has no error flag: the result text says 'Error: '", path)
            items = _prefixed_error(items)
        if result.cache is not None and items:
            items[-1] = self.parts.with_cache(items[-1], result.cache)
        content = compact_content(items) if items else ""
        extras = extras_for(result.extras, DIALECT)
        return {"role": "tool", "tool_call_id": result.call_id, "content": content, **extras}

    def _assistant(self, message: Message, path: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        refusals: list[str] = []
        calls: list[dict[str, Any]] = []
        reasoning: list[str] = []
        for j, part in enumerate(message.parts):
            part_path = f"{path}.parts[{j}]"
            match part:
                case TextPart(text=text) if text:
                    items.append(self.parts.text(part, part_path))
                case TextPart():
                    pass  # empty text means nothing (pitfall 18)
                case RefusalPart(text=text):
                    refusals.append(text)
                case ToolCallPart():
                    calls.append(self._tool_call(part, part_path))
                case ReasoningPart(text=text, signature=signature):
                    if signature is not None:
                        self.warnings.drop("reasoning_signature", "signed reasoning goes back only to its issuer", path)
                    reasoning.extend([text] if text else [])
                case NativePart(dialect=dialect, data=data) if dialect is DIALECT:
                    items.append(dict(data))
                case NativePart(data=data):
                    self.parts.native_dropped(data, part_path)
                case _:
                    self.warnings.drop(f"content:{part.TAG}", "Chat assistant content is text only", part_path)
        out: dict[str, Any] = {"role": "assistant"}
        if self.echo_reasoning and calls and reasoning:
            out["reasoning_content"] = "\n\n".join(reasoning)
        elif reasoning:
            self.warnings.drop("reasoning", "Chat history carries no reasoning for this upstream", path)
        # null, never "", when the turn only calls tools (pitfall 18); "" keeps an otherwise empty turn valid.
        out["content"] = compact_content(items) if items else (None if calls or refusals else "")
        if refusals:
            out["refusal"] = "\n".join(refusals)
        if calls:
            out["tool_calls"] = calls
        return {**out, **extras_for(message.extras, DIALECT)}

    def _tool_call(self, call: ToolCallPart, path: str) -> dict[str, Any]:
        if call.signature is not None:
            self.warnings.drop("reasoning_signature", "Chat cannot carry a tool call signature", path)
        return encode_tool_call(call, custom_tools=self.custom_tools)


def encode_tool_call(call: ToolCallPart, *, custom_tools: bool = True) -> dict[str, Any]:
    """Arguments stay the exact JSON string they were (pitfall 4); custom calls carry raw input, or without
    `custom_tools` become calls of the function standing in for the tool, `{"input": raw}`."""
    arguments = call.raw_arguments
    if call.kind is ToolKind.CUSTOM:
        if custom_tools:
            return {"id": call.id, "type": "custom", "custom": {"name": call.name, "input": arguments}}
        arguments = wrap_json(arguments)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _prefixed_error(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if items and items[0].get("type") == "text":
        return [{**items[0], "text": f"Error: {items[0]['text']}"}, *items[1:]]
    return [{"type": "text", "text": "Error"}, *items]
