"""Gemini `generationConfig` <-> IR max tokens, sampling, reasoning and structured output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.codec import TargetOptions
from translation.gemini.tools import SCHEMA_SUBSET_FLAG, decode_schema, reduce_schema
from translation.gemini.wire import leftovers
from translation.ir import (
    Effort,
    OutputFormat,
    OutputKind,
    ReasoningConfig,
    Request,
    Sampling,
    ThinkingMode,
    TranslationError,
    Warnings,
)

JSON_MIME = "application/json"

_SAMPLING_KEYS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "candidateCount": "candidate_count",
}
_MODELLED = frozenset(
    {
        *_SAMPLING_KEYS,
        "maxOutputTokens",
        "stopSequences",
        "thinkingConfig",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
    }
)
_LEVELS = {
    "MINIMAL": Effort.MINIMAL,
    "LOW": Effort.LOW,
    "MEDIUM": Effort.MEDIUM,
    "HIGH": Effort.HIGH,
    "XHIGH": Effort.XHIGH,
}
_MAX_STOP_SEQUENCES = 5  # generateContent refuses more (UNVERIFIED limit, widely reported)


@dataclass
class GenerationSettings:
    """What `generationConfig` decodes to; `extras` holds its unmodelled fields (and rewritten schema originals)."""

    max_output_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning: ReasoningConfig | None = None
    output_format: OutputFormat | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def decode_generation_config(config: Mapping[str, Any]) -> GenerationSettings:
    settings = GenerationSettings(extras=leftovers(config, _MODELLED))
    settings.max_output_tokens = config.get("maxOutputTokens")
    stops = config.get("stopSequences") or ()
    settings.sampling = Sampling(
        stop_sequences=tuple(stops),
        **{ir: config[wire] for wire, ir in _SAMPLING_KEYS.items() if config.get(wire) is not None},
    )
    thinking = config.get("thinkingConfig")
    if isinstance(thinking, Mapping):
        settings.reasoning = _decode_thinking(thinking)
        known = {"includeThoughts", "thinkingBudget", "thinkingLevel", "include_thoughts", "thinking_budget"}
        if rest := leftovers(thinking, known | {"thinking_level"}):
            settings.extras["thinkingConfig"] = rest
    settings.output_format = _decode_output(config, settings.extras)
    return settings


def _decode_thinking(thinking: Mapping[str, Any]) -> ReasoningConfig:
    # Google's JSON mapping accepts snake_case too (google-genai sends thinking_budget / include_thoughts).
    budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
    mode, budget_tokens = None, None
    if budget == 0:
        mode = ThinkingMode.DISABLED
    elif budget == -1:
        mode = ThinkingMode.ADAPTIVE
    elif isinstance(budget, int):
        mode, budget_tokens = ThinkingMode.ENABLED, budget
    level = thinking.get("thinkingLevel", thinking.get("thinking_level"))
    effort = _LEVELS.get(str(level).upper()) if level is not None else None
    include = thinking.get("includeThoughts", thinking.get("include_thoughts"))
    return ReasoningConfig(mode, effort, budget_tokens, include)


def _decode_output(config: Mapping[str, Any], extras: dict[str, Any]) -> OutputFormat | None:
    mime = config.get("responseMimeType")
    if "responseJsonSchema" in config:
        schema = decode_schema(config["responseJsonSchema"], "responseJsonSchema", extras)
    else:
        schema = decode_schema(config.get("responseSchema"), "responseSchema", extras)
        if schema is not None:
            extras.setdefault("responseSchema", config["responseSchema"])
    if schema is not None:
        if mime != JSON_MIME:
            extras["responseMimeType"] = mime  # e.g. text/x.enum: kept for Gemini, a schema elsewhere
        return OutputFormat(OutputKind.JSON_SCHEMA, schema)
    if mime == JSON_MIME:
        return OutputFormat(OutputKind.JSON_OBJECT)
    if mime == "text/plain":
        return OutputFormat(OutputKind.TEXT)
    if mime is not None:
        extras["responseMimeType"] = mime
    return None


# -- encoding ------------------------------------------------------------------------------------------------


def encode_generation_config(
    request: Request, target: TargetOptions, own: Mapping[str, Any], w: Warnings
) -> dict[str, Any]:
    """`generationConfig` for `request`; `own` is the Gemini client's unmodelled generationConfig fields."""
    config: dict[str, Any] = {}
    sampling = request.sampling
    if sampling.candidate_count is not None and sampling.candidate_count > 1:
        raise TranslationError("candidate_count", "only one candidate can be translated", "candidateCount")
    for wire, ir in _SAMPLING_KEYS.items():
        if (value := getattr(sampling, ir)) is not None:
            config[wire] = value
    if sampling.stop_sequences:
        stops = list(sampling.stop_sequences)
        if len(stops) > _MAX_STOP_SEQUENCES:
            w.drop("stop_sequences", f"Gemini takes at most {_MAX_STOP_SEQUENCES} stop sequences", "stop_sequences")
        config["stopSequences"] = stops[:_MAX_STOP_SEQUENCES]
    if (limit := _max_tokens(request.max_output_tokens, target, w)) is not None:
        config["maxOutputTokens"] = limit
    if request.reasoning is not None and (thinking := _encode_thinking(request.reasoning, w)):
        config["thinkingConfig"] = {**thinking, **own.get("thinkingConfig", {})}
    if request.output_format is not None:
        config.update(_encode_output(request.output_format, target, own, w))
    restored = _MODELLED | ({"responseMimeType"} if request.output_format is not None else set())
    config.update({k: v for k, v in own.items() if k not in restored})
    return config


def _max_tokens(requested: int | None, target: TargetOptions, w: Warnings) -> int | None:
    cap = target.max_output_tokens_cap
    if requested is not None and cap is not None and requested > cap:
        w.drop("max_output_tokens", f"{requested} output tokens clamped to the upstream's {cap}", "max_output_tokens")
        return cap
    return requested


def _encode_thinking(reasoning: ReasoningConfig, w: Warnings) -> dict[str, Any]:
    """thinkingBudget (0 off, -1 dynamic, N tokens) or thinkingLevel; never both (a budget is more precise)."""
    thinking: dict[str, Any] = {}
    if reasoning.include_thoughts is not None:
        thinking["includeThoughts"] = reasoning.include_thoughts
    effort = reasoning.effort
    if reasoning.mode is ThinkingMode.DISABLED or effort is Effort.NONE:
        thinking["thinkingBudget"] = 0
    elif reasoning.budget_tokens is not None:
        thinking["thinkingBudget"] = reasoning.budget_tokens
    elif effort is not None:
        if effort is Effort.MAX:
            w.drop("reasoning_effort", "Gemini's highest thinking level is XHIGH", "reasoning.effort")
        thinking["thinkingLevel"] = "XHIGH" if effort is Effort.MAX else effort.value.upper()
    elif reasoning.mode is ThinkingMode.ADAPTIVE:
        thinking["thinkingBudget"] = -1
    return thinking


def _encode_output(output: OutputFormat, target: TargetOptions, own: Mapping[str, Any], w: Warnings) -> dict[str, Any]:
    if output.kind is OutputKind.TEXT:
        return {"responseMimeType": "text/plain"}
    config: dict[str, Any] = {"responseMimeType": own.get("responseMimeType", JSON_MIME)}
    if output.kind is OutputKind.JSON_SCHEMA and output.schema is not None:
        if "responseSchema" in own or "responseJsonSchema" in own:
            config.update({k: own[k] for k in ("responseSchema", "responseJsonSchema") if k in own})
        elif target.flags.get(SCHEMA_SUBSET_FLAG):
            config["responseSchema"] = reduce_schema(output.schema, w, "output_format.schema")
        else:
            config["responseJsonSchema"] = output.schema
    return config
