"""Chat Completions request body <-> IR request. Upstream flags: see the package docstring."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.ir import (
    Effort,
    OutputFormat,
    OutputKind,
    ReasoningConfig,
    Request,
    Sampling,
    ThinkingMode,
    Translated,
    TranslationError,
    Warnings,
    budget_to_effort,
    extras_for,
    own_extras,
)
from translation.ir.shape import BOOL, INT, NUM, OBJ, STR, Either, ListOf, Obj, validated
from translation.openai_chat.content import PartEncoder
from translation.openai_chat.messages import MessageEncoder, decode_messages
from translation.openai_chat.tools import (
    CUSTOM_TOOLS_FLAG,
    decode_tool_choice,
    decode_tools,
    encode_tool_choice,
    encode_tools,
)
from translation.openai_chat.wire import DIALECT, unknown_fields, with_usage_requested

_MODELLED = frozenset(
    {
        "model", "messages", "tools", "functions", "tool_choice", "function_call", "parallel_tool_calls",
        "max_completion_tokens", "max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
        "frequency_penalty", "n", "reasoning_effort", "response_format", "stream", "safety_identifier", "user",
        "metadata", "prompt_cache_key", "web_search_options",
    }
)  # fmt: skip
# Kept in extras for a Chat round trip, but no other dialect can express them: say so when decoding.
_CHAT_ONLY = ("logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "prediction")
# OpenAI reasoning models: max_completion_tokens only, no sampling knobs (pitfall 25). A "vendor/" prefix is ignored.
_REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5)", re.IGNORECASE)
# OpenAI models that reject `reasoning_effort`.
_NO_EFFORT_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:gpt-3\.5|gpt-4|chatgpt-)", re.IGNORECASE)
# OpenAI's own models know the `developer` role; many OpenAI-compatible servers only know `system`.
_OPENAI_MODEL = re.compile(r"^(?:openai/)?(?:gpt-|o\d|chatgpt-)", re.IGNORECASE)
_REASONING_MODEL_DROPS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_MAX_STOP_SEQUENCES = 4

# The JSON types of what decoding reads (translation/ir/shape.py): a wrong one is a 400 naming the field.
_NAMED = Obj({"name": STR})
_GRAMMAR_FIELDS = ("syntax", "definition")
_FUNCTION = Obj({"name": STR, "description": STR, "parameters": OBJ, "strict": BOOL}, required=("name",))
_PART = Obj(
    {"type": STR, "prompt_cache_breakpoint": OBJ},
    variants={
        "text": Obj({"text": STR}),
        "image_url": Obj({"image_url": Obj({"url": STR, "detail": STR}, required=("url",))}, required=("image_url",)),
        "input_audio": Obj(
            {"input_audio": Obj({"data": STR, "format": STR}, required=("data",))}, required=("input_audio",)
        ),
        "file": Obj({"file": Obj({"file_id": STR, "file_data": STR, "filename": STR})}, required=("file",)),
        "refusal": Obj({"refusal": STR}),
    },
)
_CONTENT = Either(STR, ListOf(_PART))
_TOOL_CALL = Obj(
    {"id": STR, "type": STR},
    variants={"custom": Obj({"custom": Obj({"name": STR, "input": STR}, required=("name",))}, required=("custom",))},
    otherwise=Obj({"function": Obj({"name": STR, "arguments": STR}, required=("name",))}, required=("function",)),
)
_MESSAGE = Obj(
    {"role": STR, "content": _CONTENT},
    tag="role",
    variants={
        "assistant": Obj(
            {
                "tool_calls": ListOf(_TOOL_CALL),
                "function_call": Obj({"name": STR, "arguments": STR}, required=("name",)),
                "refusal": STR,
            }
        ),
        "tool": Obj({"tool_call_id": STR}, required=("tool_call_id",)),
        "function": Obj({"name": STR}, required=("name",)),
    },
)
_TOOL = Obj(
    {"type": STR},
    variants={
        "function": Obj({"function": _FUNCTION}, required=("function",)),
        "custom": Obj(
            {
                "custom": Obj(
                    {
                        "name": STR,
                        "description": STR,
                        "format": Obj(
                            {"type": STR},
                            variants={
                                "grammar": Obj(
                                    {
                                        "grammar": Obj(
                                            {"syntax": STR, "definition": STR}, required=("syntax", "definition")
                                        )
                                    },
                                    required=("grammar",),
                                )
                            },
                        ),
                    },
                    required=("name",),
                )
            },
            required=("custom",),
        ),
    },
)
_TOOL_REF = Obj({"type": STR, "name": STR, "function": _NAMED, "custom": _NAMED})
REQUEST_SHAPE = Obj(
    {
        "model": STR,
        "messages": ListOf(_MESSAGE),
        "tools": ListOf(_TOOL),
        "functions": ListOf(_FUNCTION),
        "tool_choice": Either(
            STR,
            Obj(
                {"type": STR, "name": STR, "function": _NAMED, "custom": _NAMED},
                variants={
                    "allowed_tools": Obj(
                        {"allowed_tools": Obj({"mode": STR, "tools": ListOf(_TOOL_REF)})}, required=("allowed_tools",)
                    )
                },
            ),
        ),
        "function_call": Either(STR, _NAMED),
        "parallel_tool_calls": BOOL,
        "max_completion_tokens": INT,
        "max_tokens": INT,
        "temperature": NUM,
        "top_p": NUM,
        "stop": Either(STR, ListOf(STR)),
        "seed": INT,
        "presence_penalty": NUM,
        "frequency_penalty": NUM,
        "n": INT,
        "reasoning_effort": STR,
        "response_format": Obj(
            {"type": STR},
            required=("type",),
            variants={
                "json_schema": Obj(
                    {"json_schema": Obj({"name": STR, "schema": OBJ, "description": STR, "strict": BOOL})},
                    required=("json_schema",),
                )
            },
        ),
        "stream": BOOL,
        "stream_options": OBJ,
        "safety_identifier": STR,
        "user": STR,
        "metadata": OBJ,
        "prompt_cache_key": STR,
        "web_search_options": OBJ,
    }
)
_MAX_SAFETY_IDENTIFIER = 128
_EFFORTS = frozenset(effort.value for effort in Effort)
_OUTPUT_KINDS = frozenset(kind.value for kind in OutputKind)


# -- decode --------------------------------------------------------------------------------------------------


@validated(REQUEST_SHAPE)
def decode_request(body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]:
    w = Warnings()
    n = body.get("n")
    if n is not None and n > 1:
        raise TranslationError("n", "n > 1 (several choices) cannot be translated; send one request per choice", "n")
    for key in _CHAT_ONLY:
        if body.get(key) not in (None, False):
            w.drop(key, f"{key} has no equivalent outside OpenAI Chat Completions", key)
    user = body.get("safety_identifier") or body.get("user")
    extras = unknown_fields(body, _MODELLED)
    if body.get("safety_identifier") and body.get("user"):
        extras["user"] = body["user"]
    stop = body.get("stop")
    effort = body.get("reasoning_effort")
    request = Request(
        model=model or body.get("model", ""),
        messages=decode_messages(body.get("messages") or ()),
        tools=decode_tools(body),
        tool_choice=decode_tool_choice(body),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_output_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
        sampling=Sampling(
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            stop_sequences=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            seed=body.get("seed"),
            presence_penalty=body.get("presence_penalty"),
            frequency_penalty=body.get("frequency_penalty"),
            candidate_count=n,
        ),
        reasoning=_decode_reasoning(effort) if effort is not None else None,
        output_format=_decode_output_format(body.get("response_format")),
        stream=bool(body.get("stream")),
        user=user,
        metadata=dict(body.get("metadata") or {}),
        cache_key=body.get("prompt_cache_key"),
        extras=own_extras(DIALECT, extras),
    )
    return w.result(request)


def _decode_reasoning(effort: str) -> ReasoningConfig:
    if effort not in _EFFORTS:
        raise TranslationError("reasoning_effort", f"unknown reasoning_effort {effort!r}", "reasoning_effort")
    level = Effort(effort)
    return ReasoningConfig(mode=ThinkingMode.DISABLED if level is Effort.NONE else None, effort=level)


def _decode_output_format(raw: Mapping[str, Any] | None) -> OutputFormat | None:
    if raw is None:
        return None
    if raw["type"] not in _OUTPUT_KINDS:
        message = f"response_format.type: unknown type {raw['type']!r}"
        raise TranslationError("response_format", message, "response_format.type")
    kind = OutputKind(raw["type"])
    if kind is not OutputKind.JSON_SCHEMA:
        return OutputFormat(kind)
    spec = raw["json_schema"]
    return OutputFormat(kind, spec.get("schema"), spec.get("name"), spec.get("description"), spec.get("strict"))


# -- encode --------------------------------------------------------------------------------------------------


def encode_request(request: Request, target: TargetOptions) -> Translated[dict[str, Any]]:
    if request.previous_response_id is not None:
        raise TranslationError(
            "previous_response_id", "previous_response_id needs stored state Chat does not have", "previous_response_id"
        )
    w = Warnings()
    flags = target.flags
    reasoning_model = bool(flags.get("reasoning_model", _REASONING_MODEL.match(target.model)))
    echo = bool(flags.get("echo_reasoning_content", flags.get("reasoning_content", False)))
    parts = PartEncoder(w, breakpoints=bool(flags.get("prompt_cache_breakpoints", True)))
    developer = bool(flags.get("developer_role", _OPENAI_MODEL.match(target.model)))
    custom = bool(flags.get(CUSTOM_TOOLS_FLAG, False))
    messages = MessageEncoder(parts, echo_reasoning=echo, developer_role=developer, custom_tools=custom)
    body: dict[str, Any] = {"model": target.model, "messages": messages.encode(request.system, request.messages)}
    web_search = bool(flags.get("web_search_options"))
    tools, tool_fields = encode_tools(request.tools, w, web_search=web_search, custom_tools=custom)
    body.update(tool_fields)
    if tools:
        # OpenAI rejects tool_choice and parallel_tool_calls when no tools are declared.
        body["tools"] = tools
        if request.tool_choice is not None:
            body["tool_choice"] = encode_tool_choice(request.tool_choice, request, custom_tools=custom)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    _encode_max_tokens(body, request, target, reasoning_model, w)
    body.update(_encode_sampling(request.sampling, reasoning_model, w))
    if request.reasoning is not None:
        _encode_reasoning(body, request.reasoning, target, w)
    if request.output_format is not None:
        body["response_format"] = _encode_output_format(request.output_format)
    _encode_identity(body, request, w)
    extras = dict(extras_for(request.extras, DIALECT))
    # OpenAI rejects stream_options on a non-streaming request (routing may have turned streaming off).
    stream_options = extras.pop("stream_options", None) or {}
    if request.stream:
        # Without include_usage an OpenAI-compatible stream reports no usage at all (pitfall 29).
        body["stream"] = True
        body["stream_options"] = stream_options
        with_usage_requested(body)
    for key, value in extras.items():
        body.setdefault(key, value)
    return w.result(body)


def _encode_max_tokens(
    body: dict[str, Any], request: Request, target: TargetOptions, reasoning_model: bool, w: Warnings
) -> None:
    limit = request.max_output_tokens
    if limit is None:
        return
    cap = target.max_output_tokens_cap
    if cap is not None and limit > cap:
        w.drop("max_output_tokens", f"max output tokens {limit} clamped to the upstream cap {cap}", "max_tokens")
        limit = cap
    default_field = "max_completion_tokens" if reasoning_model else "max_tokens"
    body[str(target.flags.get("max_tokens_field", default_field))] = limit


def _encode_sampling(sampling: Sampling, reasoning_model: bool, w: Warnings) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: value
        for key, value in (
            ("temperature", sampling.temperature),
            ("top_p", sampling.top_p),
            ("presence_penalty", sampling.presence_penalty),
            ("frequency_penalty", sampling.frequency_penalty),
            ("seed", sampling.seed),
        )
        if value is not None
    }
    if reasoning_model:
        for key in _REASONING_MODEL_DROPS:
            if out.pop(key, None) is not None:
                w.drop(key, f"OpenAI reasoning models reject {key}", key)
    if sampling.top_k is not None:
        w.drop("top_k", "Chat Completions has no top_k", "top_k")
    if sampling.candidate_count is not None and sampling.candidate_count > 1:
        raise TranslationError("n", "several candidates cannot be translated; send one request per candidate", "n")
    stops = sampling.stop_sequences
    if len(stops) > _MAX_STOP_SEQUENCES:
        w.drop("stop_sequences", f"Chat takes at most {_MAX_STOP_SEQUENCES} stop sequences", "stop_sequences")
        stops = stops[:_MAX_STOP_SEQUENCES]
    if stops:
        out["stop"] = list(stops)
    return out


def _encode_reasoning(body: dict[str, Any], config: ReasoningConfig, target: TargetOptions, w: Warnings) -> None:
    """Chat has effort only: a budget is bridged with budget_to_effort, "disabled" is effort "none".
    ADAPTIVE without an effort leaves the provider default."""
    effort = config.effort
    if effort is None and config.mode is ThinkingMode.DISABLED:
        effort = Effort.NONE
    if effort is None and config.budget_tokens is not None:
        effort = budget_to_effort(config.budget_tokens)
    if effort is None:
        return
    if not target.flags.get("reasoning_effort", not _NO_EFFORT_MODEL.match(target.model)):
        w.drop("reasoning_effort", f"{target.model} does not take reasoning_effort", "reasoning")
        return
    body["reasoning_effort"] = effort.value


def _encode_output_format(fmt: OutputFormat) -> dict[str, Any]:
    if fmt.kind is not OutputKind.JSON_SCHEMA:
        return {"type": fmt.kind.value}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.description is not None:
        spec["description"] = fmt.description
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def _encode_identity(body: dict[str, Any], request: Request, w: Warnings) -> None:
    if request.user is not None:
        if len(request.user) <= _MAX_SAFETY_IDENTIFIER:
            body["safety_identifier"] = request.user
        else:
            w.drop("user", f"end-user id longer than {_MAX_SAFETY_IDENTIFIER} characters", "user")
    if request.metadata:
        body["metadata"] = dict(request.metadata)
    if request.cache_key is not None:
        body["prompt_cache_key"] = request.cache_key
