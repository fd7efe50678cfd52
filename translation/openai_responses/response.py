"""Non-streamed Response objects <-> IR responses, and the pieces the stream encoder shares.

Item ids the client sees are derived from the response id (`msg_<id>_<n>`, `fc_…`, `ctc_…`, `rs_…` with n the
output index), so a replayed translation gives the same ids. The response echoes the client's settings
(tools, tool_choice, instructions, …): the SDK's Response model requires them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from translation.codec import ClientContext, TargetOptions
from translation.ir import (
    JSON,
    NativePart,
    OpaqueSignature,
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
)
from translation.openai_responses.items import decode_output_item, encode_call, encode_reasoning
from translation.openai_responses.parts import MESSAGE_KEY, encode_part
from translation.openai_responses.request import encode_settings
from translation.openai_responses.tools import namespaces
from translation.openai_responses.wire import (
    DIALECT,
    decode_stop,
    decode_usage,
    encode_status,
    encode_usage,
    has_calls,
    item_id,
    response_failed_error,
    response_id,
    stop_detail,
    synthetic_call_id,
)

# Settings a Response object echoes, with the value the SDK model needs when the request had none.
_ECHOED_DEFAULTS: dict[str, JSON] = {"tools": [], "tool_choice": "auto", "parallel_tool_calls": True, "metadata": {}}
_NOT_ECHOED = {"stream", "stream_options", "include", "client_metadata", "type", "generate", "input"}


def decode_response(body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]:
    rid = str(body.get("id", ""))
    parts: list[Part] = []
    for index, item in enumerate(body.get("output") or ()):
        if isinstance(item, Mapping):
            parts.extend(decode_output_item(item, synthetic_call_id(rid, index)))
    status = body.get("status")
    details = body.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    error = body.get("error")
    detail = stop_detail(status, reason)
    if status == "failed" and isinstance(error, Mapping):
        detail = str(error.get("code") or error.get("message") or "failed")
    created = body.get("created_at")
    response = Response(
        id=rid,
        model=str(body.get("model", "")),
        parts=tuple(parts),
        stop=decode_stop(
            status,
            reason,
            has_calls=has_calls(parts),
            has_refusal=any(isinstance(p, RefusalPart) for p in parts),
        ),
        usage=decode_usage(body.get("usage")),
        stop_detail=detail,
        created=int(created) if isinstance(created, (int, float)) else None,
    )
    return Warnings().result(response)


def encode_response(response: Response, client: ClientContext) -> Translated[dict[str, Any]]:
    w = Warnings()
    rid = response_id(response.id)
    tool_namespaces = namespaces(client.request.tools)
    output: list[dict[str, JSON]] = []
    for i, part in enumerate(response.parts):
        path = f"parts[{i}]"
        if isinstance(part, (TextPart, RefusalPart)):
            content = encode_part(part, assistant=True, warnings=w, path=path)
            if content is None:
                continue
            header = extras_for(part.extras, DIALECT).get(MESSAGE_KEY)
            previous = output[-1] if output else None
            if header and previous is not None and previous.get("_header") == header:
                previous["content"].append(content)
            else:
                output.append({**message_item(item_id("msg", rid, len(output)), [content], header), "_header": header})
            continue
        item = _output_item(part, item_id_for(part, rid, len(output)), tool_namespaces, w, path)
        if item is not None:
            output.append(item)
    for item in output:
        item.pop("_header", None)
    has_refusal = any(isinstance(p, RefusalPart) for p in response.parts)
    status, details = encode_status(response.stop, has_refusal=has_refusal)
    body = envelope(
        client,
        rid,
        response.created,
        status,
        output,
        response.usage,
        incomplete_details=details,
        error=response_failed_error(response) if status == "failed" else None,
    )
    return w.result(body)


def item_id_for(part: Part, rid: str, output_index: int) -> str:
    prefix = "rs"
    if isinstance(part, ToolCallPart):
        prefix = "ctc" if part.kind is ToolKind.CUSTOM else "fc"
    return item_id(prefix, rid, output_index)


def _output_item(
    part: Part, new_id: str, tool_namespaces: Mapping[str, str], w: Warnings, path: str
) -> dict[str, JSON] | None:
    match part:
        case ToolCallPart():
            status = {} if part.kind is ToolKind.CUSTOM else {"status": "completed"}  # custom calls have none
            return {"id": new_id, **encode_call(part, tool_namespaces, w, path), **status}
        case ReasoningPart(text=text, summary=summary, signature=signature):
            if "id" in extras_for(part.extras, DIALECT):
                return encode_reasoning(part, w, path)
            return reasoning_item(new_id, text, summary, signature, w, path)
        case NativePart():
            return encode_part(part, assistant=True, warnings=w, path=path)
    w.drop(part.TAG, f"a {part.TAG} part has no OpenAI Responses output item", path)
    return None


# -- output item shapes, shared with the stream encoder -------------------------------------------------------


def message_item(new_id: str, content: list[JSON], header: JSON = None, status: str = "completed") -> dict[str, JSON]:
    fields = dict(header) if isinstance(header, Mapping) else {}
    return {"type": "message", "id": new_id, "status": status, "role": "assistant", "content": content, **fields}


def reasoning_item(
    new_id: str,
    text: str,
    summary: bool,
    signature: OpaqueSignature | None,
    w: Warnings,
    path: str | None = None,
) -> dict[str, JSON]:
    """A reasoning output item for the client. Only Responses-issued state becomes `encrypted_content`."""
    item: dict[str, JSON] = {"type": "reasoning", "id": new_id, "summary": []}
    if text and summary:
        item["summary"] = [{"type": "summary_text", "text": text}]
    elif text:
        item["content"] = [{"type": "reasoning_text", "text": text}]
    if signature is not None and signature.dialect is DIALECT:
        item["encrypted_content"] = signature.value
    elif signature is not None:
        w.drop(
            "reasoning_signature", f"{signature.dialect.label} reasoning state cannot go to a Responses client", path
        )
    return item


def envelope(
    client: ClientContext,
    rid: str,
    created: int | None,
    status: str,
    output: Sequence[JSON],
    usage: Usage | None,
    *,
    incomplete_details: JSON = None,
    error: JSON = None,
) -> dict[str, Any]:
    """The Response object, as returned whole or carried by response.created/completed/… events."""
    settings = encode_settings(client.request, TargetOptions(model=client.request.model), Warnings())
    echoed = {k: v for k, v in settings.items() if k not in _NOT_ECHOED}
    instructions = "\n\n".join(p.text for p in client.request.system) if client.request.system else None
    return {
        "id": rid,
        "object": "response",
        "created_at": created if created is not None else client.created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": instructions,
        "model": client.request.model,
        "output": list(output),
        "usage": encode_usage(usage) if usage is not None else None,
        **_ECHOED_DEFAULTS,
        **echoed,
    }
