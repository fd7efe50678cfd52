"""Bedrock Converse non-streaming answer <-> IR `Response`.

`{"output": {"message": {"role": "assistant", "content": [...]}}, "stopReason": …, "usage": {...},
"metrics": {"latencyMs": …}}`. The answer has no id and no model: the id is derived from the body (routing may
use the `x-amzn-RequestId` header instead), the model is the one the request named. `metrics.latencyMs` is
required: an encoded answer carries the upstream's when it was a Bedrock answer, else 0 (the translation package
reads no clock; routing may overwrite it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from translation.bedrock.content import decode_content, encode_part
from translation.bedrock.tools import custom_tools
from translation.bedrock.wire import (
    DETAILED_STOPS,
    DIALECT,
    STOP_FROM_WIRE,
    STOP_TO_WIRE,
    derived_id,
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

_MODELLED = ("output", "stopReason", "usage")
_MODELLED_USAGE = ("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


def decode_response(body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]:
    w = Warnings()
    response_id = derived_id(body)
    message = mapping(mapping(body.get("output")).get("message"))
    custom = custom_tools(request)
    decoded = decode_content(message.get("content"))
    parts = tuple(_with_call_id(_unwrapped(part, custom), response_id, i) for i, part in enumerate(decoded))
    stop, detail = decode_stop(body.get("stopReason"))
    usage = mapping(body.get("usage"))
    extras = rest(body, _MODELLED)
    if rest(usage, _MODELLED_USAGE):
        extras["usage"] = rest(usage, _MODELLED_USAGE)  # cacheDetails
    additional = mapping(body.get("additionalModelResponseFields"))
    stop_sequence = additional.get("stop_sequence")
    response = Response(
        id=response_id,
        model=request.model if request is not None else "",
        parts=parts,
        stop=stop,
        usage=usage_from_wire(usage),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        stop_detail=detail,
        extras=own_extras(DIALECT, extras),
    )
    return w.result(response)


def encode_response(response: Response, client: ClientContext) -> Translated[dict[str, Any]]:
    w = Warnings()
    content: list[dict[str, Any]] = []
    for i, part in enumerate(response.parts):
        content.extend(b for b in encode_part(part, w, f"content[{i}]", history=False) if "cachePoint" not in b)
    extras = dict(extras_for(response.extras, DIALECT))
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": encode_stop(response.stop, response.stop_detail, w),
        "usage": {**usage_to_wire(response.usage), **extras.pop("usage", {})},
        "metrics": extras.pop("metrics", {"latencyMs": 0}),
    }
    body.update(extras)
    return w.result(body)


def decode_stop(stop_reason: Any) -> tuple[StopReason, str | None]:
    """(stop, stop_detail): the raw value when it says more than the IR reason (guardrail_intervened) or is unknown."""
    stop = STOP_FROM_WIRE.get(str(stop_reason), StopReason.OTHER)
    if stop is StopReason.OTHER or stop_reason in DETAILED_STOPS:
        return stop, None if stop_reason is None else str(stop_reason)
    return stop, None


def encode_stop(stop: StopReason, detail: str | None, w: Warnings) -> str:
    if detail in DETAILED_STOPS and STOP_FROM_WIRE[detail] is stop:
        return detail
    if stop in (StopReason.PAUSE, StopReason.OTHER):
        w.drop(f"stop_reason:{stop.value}", "Bedrock has no such stop reason; reported as end_turn", "stopReason")
    return STOP_TO_WIRE[stop]


def unwrap_call(part: ToolCallPart) -> ToolCallPart:
    """A call to a CUSTOM tool exposed as `{"input": string}` (tools.py), as the CUSTOM call it stands for."""
    raw = unwrap_arguments(part.raw_arguments, ToolKind.CUSTOM)
    return dataclasses.replace(ToolCallPart.from_raw(part.id, part.name, raw, kind=ToolKind.CUSTOM), extras=part.extras)


def synthetic_call_id(response_id: str, index: int) -> str:
    return f"call_{response_id}_{index}"


def _unwrapped(part: Part, custom: frozenset[str]) -> Part:
    return unwrap_call(part) if isinstance(part, ToolCallPart) and part.name in custom else part


def _with_call_id(part: Part, response_id: str, index: int) -> Part:
    if isinstance(part, ToolCallPart) and not part.id:
        return dataclasses.replace(part, id=synthetic_call_id(response_id, index))
    return part
