"""Anthropic Messages request body <-> IR request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.anthropic.blocks import content_value, decode_content, encode_part
from translation.anthropic.reasoning import decode_reasoning, encode_reasoning, fit_max_tokens
from translation.anthropic.tools import decode_tool, decode_tool_choice, encode_tool_choice, encode_tools
from translation.anthropic.wire import DIALECT, cache_from_wire, cache_to_wire, mapping, new_api, rest
from translation.codec import TargetOptions
from translation.ir import (
    Message,
    OutputFormat,
    OutputKind,
    Request,
    Role,
    Sampling,
    TextPart,
    Translated,
    TranslationError,
    Warnings,
    extras_for,
    own_extras,
)
from translation.ir.shape import ANY, BOOL, INT, NUM, OBJ, STR, Either, ListOf, Obj, Spec, validated

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM}
_MODELLED = (
    "model", "messages", "system", "tools", "tool_choice", "max_tokens", "stop_sequences", "temperature",
    "top_p", "top_k", "stream", "thinking", "output_config", "metadata", "cache_control",
)  # fmt: skip
_JSON_OBJECT_INSTRUCTION = "Respond with a single JSON object and nothing else."

# The JSON types of what decoding reads (translation/ir/shape.py): a wrong one is a 400 naming the field.
_CACHE = Obj({"type": STR, "ttl": STR})
_SOURCE = Obj({"type": STR, "media_type": STR, "data": STR, "url": STR, "file_id": STR})
_BLOCK_FIELDS: dict[str, Spec] = {"type": STR, "cache_control": _CACHE}
_LEAF_BLOCKS = {
    "text": Obj({"text": STR}),
    "image": Obj({"source": _SOURCE}),
    "document": Obj({"source": _SOURCE, "title": STR}),
}
_INNER_BLOCK = Obj(_BLOCK_FIELDS, required=("type",), variants=_LEAF_BLOCKS)
_BLOCK = Obj(
    _BLOCK_FIELDS,
    required=("type",),
    variants={
        **_LEAF_BLOCKS,
        "tool_use": Obj({"id": STR, "name": STR, "input": ANY}),
        "tool_result": Obj({"tool_use_id": STR, "content": Either(STR, ListOf(_INNER_BLOCK)), "is_error": BOOL}),
        "thinking": Obj({"thinking": STR, "signature": STR}),
        "redacted_thinking": Obj({"data": STR}),
    },
)
_CONTENT = Either(STR, ListOf(_BLOCK))
REQUEST_SHAPE = Obj(
    {
        "model": STR,
        "messages": ListOf(Obj({"role": STR, "content": _CONTENT})),
        "system": _CONTENT,
        "tools": ListOf(
            Obj(
                {
                    "type": STR,
                    "name": STR,
                    "description": STR,
                    "input_schema": OBJ,
                    "strict": BOOL,
                    "cache_control": _CACHE,
                }
            )
        ),
        "tool_choice": Obj({"type": STR, "name": STR, "disable_parallel_tool_use": BOOL}),
        "max_tokens": INT,
        "temperature": NUM,
        "top_p": NUM,
        "top_k": INT,
        "stop_sequences": ListOf(STR),
        "stream": BOOL,
        "thinking": Obj({"type": STR, "budget_tokens": INT, "display": STR}),
        "output_config": Obj({"effort": STR, "format": Obj({"type": STR, "schema": OBJ})}),
        "metadata": Obj({"user_id": STR}),
        "cache_control": _CACHE,
    }
)


@validated(REQUEST_SHAPE)
def decode_request(body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]:
    w = Warnings()
    tool_choice, parallel = decode_tool_choice(body.get("tool_choice"))
    output_config = mapping(body.get("output_config"))
    user, metadata_extras = _decode_metadata(body.get("metadata"))
    extras = rest(body, _MODELLED)
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") == "between_tools":
        extras["thinking"] = thinking  # no IR mode for it; kept for an Anthropic round trip
    if rest(output_config, ("effort", "format")):
        extras["output_config"] = rest(output_config, ("effort", "format"))
    if metadata_extras:
        extras["metadata"] = metadata_extras
    request = Request(
        model=model if model is not None else str(body.get("model", "")),
        messages=tuple(_decode_message(m, i) for i, m in enumerate(body.get("messages") or [])),
        system=tuple(p for p in decode_content(body.get("system")) if isinstance(p, TextPart)),
        tools=tuple(decode_tool(t) for t in body.get("tools") or [] if isinstance(t, Mapping)),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_output_tokens=body.get("max_tokens"),
        sampling=Sampling(
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            top_k=body.get("top_k"),
            stop_sequences=tuple(body.get("stop_sequences") or ()),
        ),
        reasoning=decode_reasoning(thinking, output_config.get("effort")),
        output_format=_decode_output_format(output_config.get("format")),
        stream=bool(body.get("stream", False)),
        user=user,
        cache=cache_from_wire(body.get("cache_control")),
        extras=own_extras(DIALECT, extras),
    )
    return w.result(request)


def encode_request(request: Request, target: TargetOptions) -> Translated[dict[str, Any]]:
    w = Warnings()
    if request.previous_response_id is not None:
        raise TranslationError(
            "previous_response_id", "previous_response_id needs stored history", "previous_response_id"
        )
    extras = dict(extras_for(request.extras, DIALECT))
    instructions, conversation = request.leading_instructions()
    system = [b for i, p in enumerate(instructions) if (b := encode_part(p, w, f"system[{i}]")) is not None]
    if request.output_format is not None and _json_without_schema(request.output_format):
        w.drop("json_object", "Anthropic has no JSON mode; asked for it in the system prompt", "output_format")
        system.append({"type": "text", "text": _JSON_OBJECT_INSTRUCTION})
    first = len(request.messages) - len(conversation)
    messages = _encode_messages(conversation, first, target, w)

    body: dict[str, Any] = {"model": target.model}
    if system:
        body["system"] = content_value(system)
    body["messages"] = messages
    if tools := encode_tools(request, w):
        body["tools"] = tools
    if (tool_choice := encode_tool_choice(request)) is not None:
        body["tool_choice"] = tool_choice
    thinking, effort = encode_reasoning(request.reasoning, messages, w)
    if "thinking" in extras:
        thinking = extras.pop("thinking")
    body["max_tokens"], thinking = fit_max_tokens(request.max_output_tokens, thinking, target, w)
    if thinking is not None:
        body["thinking"] = thinking
    output_config = {**extras.pop("output_config", {}), **_output_config(request.output_format, effort)}
    if output_config:
        body["output_config"] = output_config
    body.update(_encode_sampling(request.sampling, target, w))
    metadata = dict(extras.pop("metadata", {}))
    if request.user is not None:
        metadata["user_id"] = request.user
    if metadata:
        body["metadata"] = metadata
    if request.metadata:
        w.drop("metadata", "Anthropic metadata takes only user_id", "metadata")
    if request.cache is not None:
        body["cache_control"] = cache_to_wire(request.cache)
    if request.stream:
        body["stream"] = True
    body.update(extras)
    return w.result(body)


# -- decoding helpers ----------------------------------------------------------------------------------------


def _decode_message(message: Any, index: int) -> Message:
    role = _ROLES.get(str(message.get("role"))) if isinstance(message, Mapping) else None
    if role is None or not isinstance(message, Mapping):
        raise TranslationError("role", f"messages[{index}] has no valid role", f"messages[{index}].role")
    extras = own_extras(DIALECT, rest(message, ("role", "content")))
    return Message(role, decode_content(message.get("content")), extras)


def _decode_metadata(metadata: Any) -> tuple[str | None, dict[str, Any]]:
    """(end-user id, metadata to keep in extras). Claude Code's `user_id` is a JSON object of device and session
    ids, not an end-user id other providers could take (OpenAI caps safety_identifier at 64 characters), so it
    stays Anthropic-only in extras."""
    if not isinstance(metadata, Mapping):
        return None, {}
    user_id = metadata.get("user_id")
    if isinstance(user_id, str) and not user_id.lstrip().startswith("{"):
        return user_id, rest(metadata, ("user_id",))
    return None, dict(metadata)


def _decode_output_format(value: Any) -> OutputFormat | None:
    if isinstance(value, Mapping) and value.get("type") == "json_schema":
        schema = value.get("schema")
        return OutputFormat(OutputKind.JSON_SCHEMA, dict(schema) if isinstance(schema, Mapping) else None)
    return None


# -- encoding helpers ----------------------------------------------------------------------------------------


def _encode_messages(
    messages: tuple[Message, ...], first: int, target: TargetOptions, w: Warnings
) -> list[dict[str, Any]]:
    """Anthropic turns: consecutive same-role messages merged (Chat sends one message per tool result), tool
    results first in a user turn (pitfalls 6/7), later system messages kept or folded into user turns."""
    keep_system = new_api(target) or bool(target.flags.get("anthropic_system_messages"))
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages, start=first):
        path = f"messages[{i}]"
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = [b for j, p in enumerate(message.parts) if (b := encode_part(p, w, f"{path}.parts[{j}]")) is not None]
        if message.role in (Role.SYSTEM, Role.DEVELOPER):
            if keep_system:
                role = "system"
            else:
                w.drop("system_message", "a mid-conversation system message is folded into a user turn", path)
                blocks = [_as_reminder(b) for b in blocks if b["type"] == "text"]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role != "system":
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
        turns[-1].update(extras_for(message.extras, DIALECT))
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable: keeps each group's order
        turn["content"] = content_value(turn["content"])
    return turns


def _as_reminder(block: dict[str, Any]) -> dict[str, Any]:
    # Claude models are trained on <system-reminder> text inside user turns (Claude Code's own convention).
    return {**block, "text": f"<system-reminder>\n{block['text']}\n</system-reminder>"}


def _json_without_schema(output_format: OutputFormat) -> bool:
    return output_format.kind is OutputKind.JSON_OBJECT or (
        output_format.kind is OutputKind.JSON_SCHEMA and output_format.schema is None
    )


def _output_config(output_format: OutputFormat | None, effort: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if effort is not None:
        out["effort"] = effort
    if output_format is not None and output_format.kind is OutputKind.JSON_SCHEMA and output_format.schema:
        out["format"] = {"type": "json_schema", "schema": output_format.schema}
    return out


def _encode_sampling(sampling: Sampling, target: TargetOptions, w: Warnings) -> dict[str, Any]:
    if sampling.candidate_count is not None and sampling.candidate_count > 1:
        raise TranslationError("candidate_count", "Anthropic generates one answer per request", "n")
    out: dict[str, Any] = {}
    if sampling.stop_sequences:
        out["stop_sequences"] = list(sampling.stop_sequences)
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(sampling, name) is not None:
            w.drop(name, f"Anthropic has no {name}", name)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(sampling, name)
        if value is None:
            continue
        if new_api(target):
            w.drop(name, f"anthropic-version {target.flags.get('anthropic_version')} rejects {name}", name)
        elif name == "temperature" and not 0 <= value <= 1:
            w.drop("temperature", "clamped to Anthropic's range 0..1", name)
            out[name] = min(max(value, 0), 1)
        else:
            out[name] = value
    return out
