"""Non-streaming `chat.completion` body <-> IR response."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from translation.codec import ClientContext
from translation.custom_tools import custom_tool_names, unwrap_arguments
from translation.ir import (
    Part,
    ReasoningPart,
    RefusalPart,
    Request,
    Response,
    TextPart,
    ToolCallPart,
    ToolKind,
    Translated,
    Usage,
    Warnings,
    extras_for,
    own_extras,
)
from translation.openai_chat.messages import decode_assistant_parts, encode_tool_call
from translation.openai_chat.wire import (
    DIALECT,
    finish_reason,
    stop_detail,
    stop_from_finish,
    unknown_fields,
    usage_from_wire,
    usage_to_wire,
)

_TOP_LEVEL = ("id", "object", "created", "model", "choices", "usage")
_CHOICE_FIELDS = ("index", "message", "finish_reason")
_MESSAGE_FIELDS = ("role", "content", "refusal", "tool_calls", "function_call", "reasoning_content", "reasoning")


def decode_response(body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]:
    w = Warnings()
    response_id = str(body.get("id", ""))
    choices = body.get("choices") or []
    if len(choices) > 1:
        w.drop("choices", f"only the first of {len(choices)} choices is kept", "choices")
    choice: Mapping[str, Any] = choices[0] if choices else {}
    message: Mapping[str, Any] = choice.get("message") or {}
    custom = custom_tool_names(request)
    parts = tuple(_unwrapped(part, custom) for part in decode_assistant_parts(message, response_id))
    finish = choice.get("finish_reason")
    stop = stop_from_finish(
        finish,
        has_tool_calls=any(isinstance(p, ToolCallPart) for p in parts),
        has_refusal=any(isinstance(p, RefusalPart) for p in parts),
    )
    extras = unknown_fields(body, _TOP_LEVEL)
    # Nested unknowns are kept under "choice" / "message"; nulls are just absent values (logprobs: null).
    for key, fields, known in (("choice", choice, _CHOICE_FIELDS), ("message", message, _MESSAGE_FIELDS)):
        unknown = {k: v for k, v in unknown_fields(fields, known).items() if v is not None}
        if unknown:
            extras[key] = unknown
    response = Response(
        id=response_id,
        model=str(body.get("model", "")),
        parts=parts,
        stop=stop,
        usage=usage_from_wire(body.get("usage")) or Usage(),
        stop_detail=stop_detail(finish, stop),
        created=body.get("created"),
        extras=own_extras(DIALECT, extras),
    )
    return w.result(response)


def encode_response(response: Response, client: ClientContext) -> Translated[dict[str, Any]]:
    w = Warnings()
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, part in enumerate(response.parts):
        path = f"parts[{i}]"
        match part:
            case TextPart(text=text):
                texts.append(text)
            case RefusalPart(text=text):
                refusals.append(text)
            case ReasoningPart(text=text, signature=signature):
                reasoning.extend([text] if text else [])
                if signature is not None:
                    w.drop("reasoning_signature", "Chat clients cannot return signed reasoning", path)
            case ToolCallPart():
                calls.append(encode_tool_call(part))
            case _:
                w.drop(f"content:{part.TAG}", "Chat responses carry text, refusals and tool calls only", path)
    extras = dict(extras_for(response.extras, DIALECT))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "\n".join(refusals) if refusals else None,
        **extras.pop("message", {}),
    }
    if reasoning:
        # Non-standard but additive: DeepSeek-aware clients show it, SDKs ignore unknown fields.
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason(response.stop, response.stop_detail, w)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish, **extras.pop("choice", {})}
    body: dict[str, Any] = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created if response.created is not None else client.created,
        "model": client.request.model,
        "choices": [choice],
        **extras,
    }
    usage = usage_to_wire(response.usage)
    if usage is not None:
        body["usage"] = usage
    return w.result(body)


def _unwrapped(part: Part, custom: Set[str]) -> Part:
    """A function call to a CUSTOM tool the request encoder exposed as `{input: string}` (custom_tools.py) is
    the CUSTOM call again, its raw text the `input` value; native `custom` calls are already CUSTOM."""
    if not isinstance(part, ToolCallPart) or part.kind is ToolKind.CUSTOM or part.name not in custom:
        return part
    raw = unwrap_arguments(part.raw_arguments)
    return ToolCallPart.from_raw(
        part.id, part.name, raw, kind=ToolKind.CUSTOM, signature=part.signature, extras=part.extras
    )
