"""Anthropic Messages non-streaming response body <-> IR response."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from translation.anthropic.blocks import decode_block, encode_part
from translation.anthropic.tools import wrapped_tools
from translation.anthropic.wire import (
    DIALECT,
    STOP_FROM_WIRE,
    STOP_TO_WIRE,
    mapping,
    rest,
    usage_from_wire,
    usage_to_wire,
)
from translation.codec import ClientContext
from translation.custom_tools import unwrap_arguments
from translation.ir import (
    Part,
    Request,
    Response,
    StopReason,
    ToolCallPart,
    ToolKind,
    Translated,
    Warnings,
    extras_for,
    own_extras,
)

_MODELLED = ("id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage")
_MODELLED_USAGE = (
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens_details",
)  # fmt: skip


def decode_response(body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]:
    w = Warnings()
    wrapped = wrapped_tools(request) if request is not None else {}
    response_id = str(body.get("id", ""))
    blocks = [block for block in body.get("content") or [] if isinstance(block, Mapping)]
    parts = tuple(_with_call_id(_unwrapped(decode_block(b), wrapped), response_id, i) for i, b in enumerate(blocks))
    stop, detail = decode_stop(body.get("stop_reason"), body.get("stop_details"))
    usage = mapping(body.get("usage"))
    extras = rest(body, _MODELLED)
    if rest(usage, _MODELLED_USAGE):
        extras["usage"] = rest(usage, _MODELLED_USAGE)  # server_tool_use, service_tier, cache_creation split
    response = Response(
        id=response_id,
        model=str(body.get("model", "")),
        parts=parts,
        stop=stop,
        usage=usage_from_wire(usage),
        stop_sequence=body.get("stop_sequence"),
        stop_detail=detail,
        extras=own_extras(DIALECT, extras),
    )
    return w.result(response)


def encode_response(response: Response, client: ClientContext) -> Translated[dict[str, Any]]:
    w = Warnings()
    content = [b for i, p in enumerate(response.parts) if (b := encode_part(p, w, f"content[{i}]")) is not None]
    extras = dict(extras_for(response.extras, DIALECT))
    usage = {**usage_to_wire(response.usage), **extras.pop("usage", {})}
    body: dict[str, Any] = {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": client.request.model,
        "content": content,
        "stop_reason": encode_stop(response.stop, w),
        "stop_sequence": response.stop_sequence,
        "usage": usage,
    }
    body.update(extras)
    return w.result(body)


def decode_stop(stop_reason: Any, stop_details: Any = None) -> tuple[StopReason, str | None]:
    """(stop, stop_detail): the refusal category when Anthropic gave one, the raw value when it is unknown."""
    stop = STOP_FROM_WIRE.get(str(stop_reason), StopReason.OTHER)
    if stop is StopReason.OTHER:
        return stop, None if stop_reason is None else str(stop_reason)
    category = stop_details.get("category") if isinstance(stop_details, Mapping) else None
    return stop, category if isinstance(category, str) else None


def encode_stop(stop: StopReason, w: Warnings) -> str:
    if stop in (StopReason.ERROR, StopReason.OTHER):
        w.drop(f"stop_reason:{stop.value}", "Anthropic has no such stop reason; reported as end_turn", "stop_reason")
    return STOP_TO_WIRE[stop]


def _unwrapped(part: Part, wrapped: Mapping[str, ToolKind]) -> Part:
    """Undo the `{"input": …}` wrapping the request encoder applied to this tool (tools.py)."""
    if not isinstance(part, ToolCallPart) or part.name not in wrapped:
        return part
    kind = wrapped[part.name]
    raw = unwrap_arguments(part.raw_arguments, kind)
    return dataclasses.replace(ToolCallPart.from_raw(part.id, part.name, raw, kind=kind), extras=part.extras)


def synthetic_call_id(response_id: str, index: int) -> str:
    """Anthropic-style servers that omit tool_use ids (pitfall 8) get deterministic ones (README convention)."""
    return f"call_{response_id}_{index}"


def _with_call_id(part: Part, response_id: str, index: int) -> Part:
    if isinstance(part, ToolCallPart) and not part.id:
        return dataclasses.replace(part, id=synthetic_call_id(response_id, index))
    return part
