"""Gemini GenerateContentResponse <-> IR `Response` (non-streaming)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import ClientContext
from translation.custom_tools import custom_tool_names
from translation.gemini.parts import PartDecoder, PartEncoder
from translation.gemini.wire import (
    GEMINI,
    MODEL_ROLE,
    USAGE_FIELDS,
    derived_id,
    finish_from_stop,
    include_thoughts,
    leftovers,
    stop_from_finish,
    usage_from_metadata,
    usage_metadata,
)
from translation.ir import (
    Request,
    Response,
    StopReason,
    ToolCallPart,
    Translated,
    Usage,
    Warnings,
    extras_for,
    own_extras,
)

_BODY_KEYS = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_CANDIDATE_KEYS = frozenset({"content", "finishReason", "index"})
_READ_USAGE = USAGE_FIELDS | {"toolUsePromptTokenCount"}


def decode_response(body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]:
    w = Warnings()
    response_id = str(body.get("responseId") or derived_id(body))
    model = str(body.get("modelVersion") or (request.model if request else ""))
    extras = leftovers(body, _BODY_KEYS)  # promptFeedback, createTime, … kept for a Gemini client
    metadata = body.get("usageMetadata")
    usage = usage_from_metadata(metadata) or Usage()
    if isinstance(metadata, Mapping) and (rest := leftovers(metadata, _READ_USAGE)):
        extras["usageMetadata"] = rest
    candidates = body.get("candidates") or []
    if not candidates:
        # A blocked prompt is an empty refusal, not an error (protocols.md §6 #21).
        feedback = body.get("promptFeedback") or {}
        reason = feedback.get("blockReason")
        stop = StopReason.REFUSAL if reason else StopReason.ERROR
        detail = reason or "no candidates"
        return w.result(
            Response(response_id, model, (), stop, usage, stop_detail=detail, extras=own_extras(GEMINI, extras))
        )
    if len(candidates) > 1:
        w.drop("candidate_count", "only the first candidate is translated", "candidates")
    candidate = candidates[0]
    if rest := leftovers(candidate, _CANDIDATE_KEYS):
        extras["candidate"] = rest  # safetyRatings, citationMetadata, groundingMetadata, finishMessage …
    decoder = PartDecoder(f"call_{response_id}", custom_tool_names(request))
    content = candidate.get("content") or {}
    parts = tuple(
        decoder.decode(p, f"candidates[0].content.parts[{i}]") for i, p in enumerate(content.get("parts") or ())
    )
    stop, detail = stop_from_finish(candidate.get("finishReason"), any(isinstance(p, ToolCallPart) for p in parts))
    response = Response(response_id, model, parts, stop, usage, stop_detail=detail, extras=own_extras(GEMINI, extras))
    return w.result(response)


def encode_response(response: Response, client: ClientContext) -> Translated[dict[str, Any]]:
    w = Warnings()
    own = dict(extras_for(response.extras, GEMINI))
    encoder = PartEncoder(w, for_client=True, include_thoughts=include_thoughts(client.request))
    parts = [p for i, part in enumerate(response.parts) for p in encoder.encode(part, f"parts[{i}]")]
    body: dict[str, Any] = {}
    candidate_extras = own.pop("candidate", {})
    blocked = not response.parts and "blockReason" in own.get("promptFeedback", {})
    if not blocked:
        candidate: dict[str, Any] = {"content": {"role": MODEL_ROLE, "parts": parts}} if parts else {}
        candidate["finishReason"] = finish_from_stop(response.stop, response.stop_detail, w)
        candidate["index"] = 0
        body["candidates"] = [{**candidate, **candidate_extras}]
    body["usageMetadata"] = {**usage_metadata(response.usage), **own.pop("usageMetadata", {})}
    body["modelVersion"] = client.request.model  # the alias the client asked for
    body["responseId"] = response.id
    body.update(own)
    return w.result(body)
