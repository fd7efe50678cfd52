"""Bedrock Converse request body (`POST /model/{modelId}/converse` and `/converse-stream`) <-> IR `Request`.

The model id is in the URL path, so `decode_request` takes it as `model=` and `encode_request` writes no model
(routing builds the path from `TargetOptions.model`, URL-quoting it: inference profile ARNs hold `:` and `/`);
streaming is the path too (`converse-stream`), so `stream` is never read from or written to the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from translation.bedrock.content import decode_content, encode_part
from translation.bedrock.reasoning import decode_reasoning, encode_reasoning, fit_max_tokens, model_family
from translation.bedrock.tools import decode_tool_choice, decode_tools, encode_tool_config
from translation.bedrock.wire import DIALECT, cache_from_wire, cache_to_wire, mapping, rest
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
from translation.ir.shape import ANY, BOOL, INT, NUM, OBJ, STR, ListOf, Obj, validated

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM}
_MODELLED = ("messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields", "outputConfig",
             "requestMetadata", "modelId")  # fmt: skip
_JSON_OBJECT_INSTRUCTION = "Respond with a single JSON object and nothing else."

# The JSON types of what decoding reads (translation/ir/shape.py): a wrong one is a 400 naming the field.
_CACHE_POINT = Obj({"type": STR, "ttl": STR})
_JSON_SCHEMA = Obj({"schema": STR, "name": STR, "description": STR})
_SOURCE = Obj({"bytes": STR, "text": STR, "s3Location": Obj({"uri": STR})})
_IMAGE = Obj({"format": STR, "source": _SOURCE})
_DOCUMENT = Obj({"format": STR, "name": STR, "source": _SOURCE})
_RESULT_BLOCK = Obj({"text": STR, "json": ANY, "image": _IMAGE, "document": _DOCUMENT})
_BLOCK = Obj(
    {
        "text": STR,
        "image": _IMAGE,
        "document": _DOCUMENT,
        "toolUse": Obj({"toolUseId": STR, "name": STR, "input": ANY}),
        "toolResult": Obj({"toolUseId": STR, "status": STR, "content": ListOf(_RESULT_BLOCK)}),
        "reasoningContent": Obj({"reasoningText": Obj({"text": STR, "signature": STR}), "redactedContent": STR}),
        "cachePoint": _CACHE_POINT,
    }
)
REQUEST_SHAPE = Obj(
    {
        "messages": ListOf(Obj({"role": STR, "content": ListOf(_BLOCK)})),
        "system": ListOf(Obj({"text": STR, "cachePoint": _CACHE_POINT})),
        "inferenceConfig": Obj({"maxTokens": INT, "temperature": NUM, "topP": NUM, "stopSequences": ListOf(STR)}),
        "toolConfig": Obj(
            {
                "tools": ListOf(
                    Obj(
                        {
                            "toolSpec": Obj(
                                {"name": STR, "description": STR, "inputSchema": Obj({"json": OBJ}), "strict": BOOL}
                            ),
                            "systemTool": Obj({"name": STR}),
                            "cachePoint": _CACHE_POINT,
                        }
                    )
                ),
                "toolChoice": Obj({"tool": Obj({"name": STR})}),
            }
        ),
        "additionalModelRequestFields": Obj(
            {
                "thinking": Obj({"type": STR, "budget_tokens": INT}),
                "top_k": INT,
                "reasoning_effort": STR,
                "reasoningConfig": Obj({"type": STR, "maxReasoningEffort": STR}),
            }
        ),
        "outputConfig": Obj({"textFormat": Obj({"type": STR, "structure": Obj({"jsonSchema": _JSON_SCHEMA})})}),
        "requestMetadata": OBJ,
    }
)


@validated(REQUEST_SHAPE)
def decode_request(body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]:
    w = Warnings()
    inference = mapping(body.get("inferenceConfig"))
    tool_config = mapping(body.get("toolConfig"))
    additional = dict(mapping(body.get("additionalModelRequestFields")))
    reasoning = decode_reasoning(additional)  # takes the reasoning fields out of `additional`
    top_k = additional.pop("top_k", None)
    system, system_native = _decode_system(body.get("system"))
    extras = rest(body, _MODELLED)
    if rest(inference, ("maxTokens", "temperature", "topP", "stopSequences")):
        extras["inferenceConfig"] = rest(inference, ("maxTokens", "temperature", "topP", "stopSequences"))
    if rest(tool_config, ("tools", "toolChoice")):
        extras["toolConfig"] = rest(tool_config, ("tools", "toolChoice"))
    if additional:
        extras["additionalModelRequestFields"] = additional
    if system_native:
        extras["system"] = system_native
    output_format, output_extras = _decode_output_config(body.get("outputConfig"))
    if output_extras:
        extras["outputConfig"] = output_extras
    metadata = mapping(body.get("requestMetadata"))
    request = Request(
        model=model if model is not None else str(body.get("modelId", "")),
        messages=tuple(_decode_message(m, i) for i, m in enumerate(body.get("messages") or [])),
        system=system,
        tools=decode_tools(tool_config),
        tool_choice=decode_tool_choice(tool_config),
        max_output_tokens=inference.get("maxTokens"),
        sampling=Sampling(
            temperature=inference.get("temperature"),
            top_p=inference.get("topP"),
            top_k=top_k if isinstance(top_k, int) else None,
            stop_sequences=tuple(inference.get("stopSequences") or ()),
        ),
        reasoning=reasoning,
        output_format=output_format,
        metadata={str(k): str(v) for k, v in metadata.items()},
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
    system: list[dict[str, Any]] = []
    for i, part in enumerate(instructions):
        system.extend(encode_part(part, w, f"system[{i}]"))
    system.extend(extras.pop("system", []))
    if request.output_format is not None and _json_without_schema(request.output_format):
        w.drop("json_object", "Bedrock Converse has no JSON mode; asked for it in the system prompt", "output_format")
        system.append({"text": _JSON_OBJECT_INSTRUCTION})
    first = len(request.messages) - len(conversation)
    messages = _encode_messages(conversation, first, w)
    if request.cache is not None and messages and "cachePoint" not in messages[-1]["content"][-1]:
        messages[-1]["content"].append(cache_to_wire(request.cache))

    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    additional: dict[str, Any] = dict(extras.pop("additionalModelRequestFields", {}))
    thinking_budget = encode_reasoning(request.reasoning, target, additional, w)
    inference = {**extras.pop("inferenceConfig", {}), **_inference_config(request, target, thinking_budget, w)}
    if inference:
        body["inferenceConfig"] = inference
    if (tool_config := encode_tool_config(request, w)) is not None:
        body["toolConfig"] = {**tool_config, **extras.pop("toolConfig", {})}
    _encode_extra_sampling(request.sampling, target, additional, w)
    if additional:
        body["additionalModelRequestFields"] = additional
    output_config = {**extras.pop("outputConfig", {}), **_output_config(request.output_format)}
    if output_config:
        body["outputConfig"] = output_config
    if request.metadata:
        body["requestMetadata"] = dict(request.metadata)
    if request.user is not None:
        w.drop("user", "Bedrock Converse has no end-user id", "user")
    body.update(extras)
    return w.result(body)


# -- decoding helpers ----------------------------------------------------------------------------------------


def _decode_message(message: Any, index: int) -> Message:
    role = _ROLES.get(str(message.get("role"))) if isinstance(message, Mapping) else None
    if role is None or not isinstance(message, Mapping):
        raise TranslationError("role", f"messages[{index}] has no valid role", f"messages[{index}].role")
    extras = own_extras(DIALECT, rest(message, ("role", "content")))
    return Message(role, decode_content(message.get("content")), extras)


def _decode_system(system: Any) -> tuple[tuple[TextPart, ...], list[Any]]:
    """(the text blocks with their cache points, the other blocks such as guardContent, kept for Bedrock)."""
    parts: list[TextPart] = []
    native: list[Any] = []
    for block in system if isinstance(system, list) else ():
        if isinstance(block, Mapping) and isinstance(block.get("text"), str):
            parts.append(TextPart(block["text"]))
        elif isinstance(block, Mapping) and "cachePoint" in block and parts and parts[-1].cache is None:
            parts[-1] = TextPart(parts[-1].text, cache_from_wire(block["cachePoint"]))
        else:
            native.append(block)
    return tuple(parts), native


def _decode_output_config(value: Any) -> tuple[OutputFormat | None, dict[str, Any]]:
    config = mapping(value)
    text_format = mapping(config.get("textFormat"))
    schema_def = mapping(mapping(text_format.get("structure")).get("jsonSchema"))
    leftover = rest(config, ("textFormat",))
    if text_format.get("type") != "json_schema" or not isinstance(schema_def.get("schema"), str):
        return None, dict(config)
    try:
        schema = json.loads(schema_def["schema"])
    except ValueError as exc:
        raise TranslationError(
            "output_schema", "outputConfig.textFormat.structure.jsonSchema.schema is not JSON", "outputConfig"
        ) from exc
    output = OutputFormat(
        OutputKind.JSON_SCHEMA,
        schema if isinstance(schema, dict) else None,
        name=schema_def.get("name"),
        description=schema_def.get("description"),
    )
    return output, leftover


# -- encoding helpers ----------------------------------------------------------------------------------------


def _encode_messages(messages: tuple[Message, ...], first: int, w: Warnings) -> list[dict[str, Any]]:
    """Converse turns: consecutive same-role messages merged (roles must alternate; Chat sends one message per
    tool result), tool results first in a user turn, later system messages folded into user turns."""
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages, start=first):
        path = f"messages[{i}]"
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = [b for j, p in enumerate(message.parts) for b in encode_part(p, w, f"{path}.parts[{j}]")]
        if message.role in (Role.SYSTEM, Role.DEVELOPER):
            w.drop("system_message", "a mid-conversation system message is folded into a user turn", path)
            blocks = [{"text": f"<system-reminder>\n{b['text']}\n</system-reminder>"} for b in blocks if "text" in b]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
        turns[-1].update(extras_for(message.extras, DIALECT))
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = _results_first(turn["content"])
    return turns


def _results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results before the rest of a user turn, each block keeping the cachePoint that follows it."""
    groups: list[list[dict[str, Any]]] = []
    for block in blocks:
        if "cachePoint" in block and groups:
            groups[-1].append(block)
        else:
            groups.append([block])
    groups.sort(key=lambda group: "toolResult" not in group[0])  # stable: keeps each kind's order
    return [block for group in groups for block in group]


def _json_without_schema(output_format: OutputFormat) -> bool:
    return output_format.kind is OutputKind.JSON_OBJECT or (
        output_format.kind is OutputKind.JSON_SCHEMA and output_format.schema is None
    )


def _output_config(output_format: OutputFormat | None) -> dict[str, Any]:
    if output_format is None or output_format.kind is not OutputKind.JSON_SCHEMA or output_format.schema is None:
        return {}
    schema_def: dict[str, Any] = {"schema": json.dumps(output_format.schema, ensure_ascii=False)}
    if output_format.name:
        schema_def["name"] = output_format.name
    if output_format.description:
        schema_def["description"] = output_format.description
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema_def}}}


def _inference_config(
    request: Request, target: TargetOptions, thinking_budget: int | None, w: Warnings
) -> dict[str, Any]:
    sampling = request.sampling
    if sampling.candidate_count is not None and sampling.candidate_count > 1:
        raise TranslationError("candidate_count", "Bedrock Converse generates one answer per request", "n")
    out: dict[str, Any] = {}
    max_tokens = fit_max_tokens(request.max_output_tokens, thinking_budget, target, w)
    if max_tokens is not None:
        out["maxTokens"] = max_tokens
    for name, wire in (("temperature", "temperature"), ("top_p", "topP")):
        value = getattr(sampling, name)
        if value is None:
            continue
        if not 0 <= value <= 1:
            w.drop(name, "clamped to Bedrock's range 0..1", name)
            value = min(max(value, 0), 1)
        out[wire] = value
    if sampling.stop_sequences:
        out["stopSequences"] = list(sampling.stop_sequences)
    return out


def _encode_extra_sampling(sampling: Sampling, target: TargetOptions, additional: dict[str, Any], w: Warnings) -> None:
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(sampling, name) is not None:
            w.drop(name, f"Bedrock Converse has no {name}", name)
    if sampling.top_k is not None:
        if model_family(target) == "anthropic":
            additional["top_k"] = sampling.top_k
        else:
            w.drop("top_k", "Bedrock Converse has no top_k for this model family", "top_k")
