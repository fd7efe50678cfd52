"""`POST /v1/responses` bodies (and WebSocket `response.create` frames) <-> IR requests.

Fields the IR does not model (`store`, `include`, `client_metadata`, `truncation`, `text.verbosity`,
`reasoning.summary`'s exact value, WebSocket `type`/`generate`, …) stay in the request's extras, so a Responses
client's request re-encodes for a Responses upstream unchanged. Responses has no stop sequences, seed,
penalties or top_k: the encoder drops them with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.ir import (
    JSON,
    Effort,
    Message,
    OutputFormat,
    OutputKind,
    ReasoningConfig,
    Request,
    Role,
    Sampling,
    TextPart,
    ThinkingMode,
    Translated,
    TranslationError,
    Warnings,
    budget_to_effort,
    extras_for,
    own_extras,
)
from translation.ir.shape import BOOL, INT, NUM, OBJ, STR, Either, ListOf, Obj, Spec, validated
from translation.openai_responses.items import decode_items, encode_messages
from translation.openai_responses.tools import decode_tool_choice, decode_tools, encode_tool_choice, encode_tools
from translation.openai_responses.wire import DIALECT

# Top-level fields decoded into IR fields; everything else is kept in extras.
_MODELLED = {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "text",
    "stream",
    "safety_identifier",
    "user",
    "metadata",
    "prompt_cache_key",
    "previous_response_id",
}
# The JSON types of what decoding reads (translation/ir/shape.py): a wrong one is a 400 naming the field.
_PART = Obj(
    {
        "type": STR,
        "text": STR,
        "refusal": STR,
        "image_url": STR,
        "file_id": STR,
        "detail": STR,
        "file_data": STR,
        "file_url": STR,
        "filename": STR,
        "prompt_cache_breakpoint": Obj({"ttl": STR}),
    }
)
_CONTENT = Either(STR, ListOf(_PART))
_ITEM = Obj(
    {
        "type": STR,
        "role": STR,
        "id": STR,
        "content": _CONTENT,
        "call_id": STR,
        "name": STR,
        "arguments": STR,
        "input": STR,
        "output": _CONTENT,
        "encrypted_content": STR,
    }
)
_FUNCTION_TOOL: dict[str, Spec] = {
    "type": STR,
    "name": STR,
    "description": STR,
    "parameters": OBJ,
    "strict": BOOL,
    "format": OBJ,
}
REQUEST_SHAPE = Obj(
    {
        "model": STR,
        "input": Either(STR, ListOf(_ITEM)),
        "instructions": STR,
        "tools": ListOf(Obj({**_FUNCTION_TOOL, "tools": ListOf(Obj(_FUNCTION_TOOL))})),
        "tool_choice": Either(
            STR, Obj({"type": STR, "name": STR, "mode": STR, "tools": ListOf(Obj({"type": STR, "name": STR}))})
        ),
        "parallel_tool_calls": BOOL,
        "max_output_tokens": INT,
        "temperature": NUM,
        "top_p": NUM,
        "reasoning": Obj({"effort": STR}),
        "text": Obj({"format": Obj({"type": STR, "name": STR, "schema": OBJ, "description": STR, "strict": BOOL})}),
        "stream": BOOL,
        "store": BOOL,
        "safety_identifier": STR,
        "user": STR,
        "metadata": OBJ,
        "prompt_cache_key": STR,
        "previous_response_id": STR,
    }
)
_OUTPUT_KINDS = {kind.value: kind for kind in OutputKind}
_EFFORTS = {effort.value: effort for effort in Effort}


@validated(REQUEST_SHAPE)
def decode_request(body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]:
    extras: dict[str, JSON] = {k: v for k, v in body.items() if k not in _MODELLED}
    tool_choice, choice_extras = decode_tool_choice(body.get("tool_choice"))
    extras.update(choice_extras)
    reasoning, reasoning_extras = _decode_reasoning(body.get("reasoning"))
    extras.update(reasoning_extras)
    output_format, text_extras = _decode_text(body.get("text"))
    extras.update(text_extras)
    user, user_extras = _decode_user(body)
    extras.update(user_extras)
    instructions = body.get("instructions")
    request = Request(
        model=model or str(body.get("model", "")),
        messages=_decode_input(body.get("input")),
        system=(TextPart(instructions),) if isinstance(instructions, str) and instructions else (),
        tools=decode_tools(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_output_tokens=body.get("max_output_tokens"),
        sampling=Sampling(temperature=body.get("temperature"), top_p=body.get("top_p")),
        reasoning=reasoning,
        output_format=output_format,
        stream=bool(body.get("stream", False)),
        user=user,
        metadata=dict(body.get("metadata") or {}),
        cache_key=body.get("prompt_cache_key"),
        previous_response_id=body.get("previous_response_id"),
        extras=own_extras(DIALECT, extras),
    )
    return Warnings().result(request)


def _decode_input(value: JSON) -> tuple[Message, ...]:
    if isinstance(value, str):
        return (Message(Role.USER, (TextPart(value),)),)
    return decode_items(value) if isinstance(value, list) else ()


def _decode_reasoning(value: JSON) -> tuple[ReasoningConfig | None, dict[str, JSON]]:
    """`effort` is modelled; `summary` only as "show me reasoning" (its exact value stays in extras)."""
    if not isinstance(value, Mapping):
        return None, {}
    effort = _EFFORTS.get(str(value.get("effort")))
    summary = value.get("summary") or value.get("generate_summary")
    config = ReasoningConfig(
        mode=ThinkingMode.DISABLED if effort is Effort.NONE else None,
        effort=effort,
        include_thoughts=True if summary else None,
    )
    rest = {k: v for k, v in value.items() if k != "effort"}
    return config, {"reasoning": rest} if rest else {}


def _decode_text(value: JSON) -> tuple[OutputFormat | None, dict[str, JSON]]:
    if not isinstance(value, Mapping):
        return None, {}
    rest = {k: v for k, v in value.items() if k != "format"}
    fmt = value.get("format")
    output_format = None
    if isinstance(fmt, Mapping) and fmt.get("type") in _OUTPUT_KINDS:
        output_format = OutputFormat(
            kind=_OUTPUT_KINDS[str(fmt["type"])],
            schema=fmt.get("schema"),
            name=fmt.get("name"),
            description=fmt.get("description"),
            strict=fmt.get("strict"),
        )
    elif fmt is not None:
        rest["format"] = fmt
    return output_format, {"text": rest} if rest else {}


def _decode_user(body: Mapping[str, Any]) -> tuple[str | None, dict[str, JSON]]:
    """`safety_identifier` (or the deprecated `user`) is the end-user id; `user` is also kept verbatim so the
    encoder writes back the field the client used."""
    legacy = body.get("user")
    user = body.get("safety_identifier", legacy)
    return user, {"user": legacy} if legacy is not None else {}


# -- encoding ------------------------------------------------------------------------------------------------


def encode_request(request: Request, target: TargetOptions) -> Translated[dict[str, Any]]:
    w = Warnings()
    body: dict[str, Any] = {"model": target.model}
    if request.system:
        # Several system blocks (Anthropic) become one `instructions` string, in order (pitfall 20).
        body["instructions"] = "\n\n".join(p.text for p in request.system)
    body["input"] = encode_messages(request.messages, request.tools, w)
    body.update(encode_settings(request, target, w))
    return w.result(body)


def encode_settings(request: Request, target: TargetOptions, w: Warnings) -> dict[str, Any]:
    """Every top-level field but `model`, `instructions` and `input`; a response echoes these back."""
    own = dict(extras_for(request.extras, DIALECT))
    body: dict[str, Any] = {}
    if request.tools and (tools := encode_tools(request.tools, w)):
        body["tools"] = tools
    if "tool_choice" in own:
        body["tool_choice"] = own.pop("tool_choice")
    elif request.tool_choice is not None:
        body["tool_choice"] = encode_tool_choice(request.tool_choice, request.tools)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    max_tokens = _max_output_tokens(request.max_output_tokens, target, w)
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    body.update(_encode_sampling(request.sampling, w))
    reasoning = _encode_reasoning(request.reasoning, own.pop("reasoning", None))
    if reasoning:
        body["reasoning"] = reasoning
    text = _encode_text(request.output_format, own.pop("text", None))
    if text:
        body["text"] = text
    if request.stream:
        body["stream"] = True
    body.update(_encode_user(request.user, own.pop("user", None)))
    if request.metadata:
        body["metadata"] = dict(request.metadata)
    if request.cache_key is not None:
        body["prompt_cache_key"] = request.cache_key
    if request.previous_response_id is not None:
        body["previous_response_id"] = request.previous_response_id
    body.update(own)
    return body


def _max_output_tokens(requested: int | None, target: TargetOptions, w: Warnings) -> int | None:
    cap = target.max_output_tokens_cap
    if requested is not None and cap is not None and requested > cap:
        w.drop(
            "max_output_tokens", f"max_output_tokens {requested} clamped to the upstream cap {cap}", "max_output_tokens"
        )
        return cap
    return requested


def _encode_sampling(sampling: Sampling, w: Warnings) -> dict[str, Any]:
    if sampling.candidate_count is not None and sampling.candidate_count > 1:
        raise TranslationError("candidate_count", "OpenAI Responses returns one candidate per request", "n")
    out: dict[str, Any] = {}
    if sampling.temperature is not None:
        out["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        out["top_p"] = sampling.top_p
    unsupported = {
        "top_k": sampling.top_k,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "stop_sequences": sampling.stop_sequences or None,
    }
    for feature, value in unsupported.items():
        if value is not None:
            w.drop(feature, f"OpenAI Responses has no {feature} parameter", feature)
    return out


def _encode_reasoning(config: ReasoningConfig | None, kept: JSON) -> dict[str, Any]:
    out: dict[str, Any] = dict(kept) if isinstance(kept, Mapping) else {}
    if config is None:
        return out
    effort = config.effort
    if effort is None and config.mode is ThinkingMode.DISABLED:
        effort = Effort.NONE
    elif effort is None and config.budget_tokens is not None:
        effort = budget_to_effort(config.budget_tokens)
    if effort is not None:
        out = {"effort": effort.value, **out}
    if config.include_thoughts and "summary" not in out and "generate_summary" not in out:
        out["summary"] = "auto"
    elif config.include_thoughts is False:
        out.pop("summary", None)
    return out


def _encode_text(output_format: OutputFormat | None, kept: JSON) -> dict[str, Any]:
    out: dict[str, Any] = dict(kept) if isinstance(kept, Mapping) else {}
    if output_format is None:
        return out
    fmt: dict[str, Any] = {"type": output_format.kind.value}
    if output_format.kind is OutputKind.JSON_SCHEMA:
        fmt["name"] = output_format.name or "response"  # required by OpenAI
        if output_format.description is not None:
            fmt["description"] = output_format.description
        fmt["schema"] = output_format.schema or {}
        if output_format.strict is not None:
            fmt["strict"] = output_format.strict
    return {"format": fmt, **out}


def _encode_user(user: str | None, legacy: JSON) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if legacy is not None:
        out["user"] = legacy
    if user is not None and user != legacy:
        out["safety_identifier"] = user
    return out
