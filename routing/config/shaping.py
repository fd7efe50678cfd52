"""Per-alias request shaping, applied to the decoded request so that it works for every client API.

An operator sets it on a model alias in the admin: system prompt replacements and an appended text, a summary
of the conversation's tool calls for models that lose track after a client compacts its history, default and
overriding parameters, extra upstream body fields, and limits on output and context (the upstream's default
output cap and context window apply where its alias sets none, and to direct NAME/MODEL routes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.dialect import Dialect
from translation.estimate import estimate_input_tokens
from translation.ir import (
    Effort,
    Message,
    Part,
    ReasoningConfig,
    Request,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
)

# Claude Code starts its system prompt with a billing line that changes on every request: harmless to
# Anthropic, but it defeats every other provider's prompt-prefix cache (pitfall 21).
BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
SAMPLING_PARAMS = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty")
PARAMS = (*SAMPLING_PARAMS, "max_output_tokens", "reasoning_effort", "reasoning_budget_tokens")
SUMMARY_MAX_CALLS = 20
SUMMARY_MAX_CHARS = 160


@dataclass(frozen=True, slots=True)
class Shaping:
    max_output_tokens: int | None = None
    default_max_tokens: int | None = None  # sent when the client asked for no output cap
    context_window: int | None = None  # a larger (estimated) prompt is refused before it is sent
    system_replacements: tuple[tuple[str, str], ...] = ()
    system_append: str = ""
    summarize_tool_history: bool = False
    default_params: Mapping[str, Any] = field(default_factory=dict)
    override_params: Mapping[str, Any] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rewrites_requests(self) -> bool:
        """Whether a request through this alias must be decoded even when the upstream speaks its API."""
        return self != NO_SHAPING


NO_SHAPING = Shaping()


def with_upstream_limits(shaping: Shaping, upstream: Shaping) -> Shaping:
    """An alias's shaping with its upstream's default output cap and context window where it sets none
    (merged once per snapshot: the request path reads one `Shaping`)."""
    default = shaping.default_max_tokens or upstream.default_max_tokens
    window = shaping.context_window or upstream.context_window
    if (default, window) == (shaping.default_max_tokens, shaping.context_window):
        return shaping
    return dataclasses.replace(shaping, default_max_tokens=default, context_window=window)


@dataclass(frozen=True, slots=True)
class Shaped:
    request: Request
    output_cap: int | None  # for TargetOptions.max_output_tokens_cap: the codec clamps and warns
    warnings: tuple[str, ...] = ()


def shape(request: Request, shaping: Shaping, target: Dialect) -> Shaped:
    warnings: list[str] = []
    if target is not Dialect.ANTHROPIC:
        request = _drop_billing_header(request)
    if shaping.system_replacements:
        request = _map_instructions(request, lambda text: _replace_all(text, shaping.system_replacements))
    extra_system = [shaping.system_append] if shaping.system_append else []
    if shaping.summarize_tool_history:
        summary = tool_history_summary(request.messages)
        if summary:
            extra_system.append(summary)
    if extra_system:
        request = dataclasses.replace(request, system=(*request.system, *(TextPart(t) for t in extra_system)))
    request = _apply_params(request, shaping.default_params, override=False)
    request = _apply_params(request, shaping.override_params, override=True)
    if request.max_output_tokens is None and shaping.default_max_tokens:
        request = dataclasses.replace(request, max_output_tokens=shaping.default_max_tokens)
    cap = shaping.max_output_tokens
    if shaping.context_window:
        prompt = estimate_input_tokens(request)
        room = shaping.context_window - prompt
        if room <= 0:
            # Refused here, in the client's own dialect, rather than sent to a model that would fail on it
            # (or, on a local server, silently cut the prompt's start).
            raise TranslationError(
                "context_length_exceeded",
                f"This model's context window is {shaping.context_window} tokens, and the prompt alone is about "
                f"{prompt} tokens (estimated). Shorten the conversation or pick a model with a larger context.",
                param="messages",
            )
        cap = min(cap, room) if cap else room
    return Shaped(request, cap, tuple(warnings))


def _replace_all(text: str, replacements: tuple[tuple[str, str], ...]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _map_instructions(request: Request, change: Any) -> Request:
    """Apply `change` to the text of the system prompt and of SYSTEM/DEVELOPER messages."""
    system = tuple(dataclasses.replace(p, text=change(p.text)) for p in request.system)
    messages = tuple(
        dataclasses.replace(m, parts=tuple(_map_text(p, change) for p in m.parts))
        if m.role in (Role.SYSTEM, Role.DEVELOPER)
        else m
        for m in request.messages
    )
    return dataclasses.replace(request, system=system, messages=messages)


def _map_text(part: Part, change: Any) -> Part:
    return dataclasses.replace(part, text=change(part.text)) if isinstance(part, TextPart) else part


def _drop_billing_header(request: Request) -> Request:
    def keep(part: Part) -> bool:
        return not (isinstance(part, TextPart) and part.text.startswith(BILLING_HEADER_PREFIX))

    if not any(not keep(p) for p in request.system) and not any(
        not keep(p) for m in request.messages if m.role is Role.SYSTEM for p in m.parts
    ):
        return request
    system = tuple(p for p in request.system if keep(p))
    messages = tuple(
        dataclasses.replace(m, parts=tuple(p for p in m.parts if keep(p))) if m.role is Role.SYSTEM else m
        for m in request.messages
    )
    return dataclasses.replace(request, system=system, messages=tuple(m for m in messages if m.parts))


def tool_history_summary(messages: tuple[Message, ...]) -> str:
    """One line per tool call so far (name, arguments, first words of its result), newest last."""
    results = {part.call_id: part for message in messages for part in message.parts if isinstance(part, ToolResultPart)}
    lines = []
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                result = results.get(part.id)
                outcome = _short(_result_text(result)) if result else "(no result yet)"
                marker = "error: " if result is not None and result.is_error else ""
                lines.append(f"- {part.name}({_short(part.raw_arguments)}) → {marker}{outcome}")
    if not lines:
        return ""
    shown = lines[-SUMMARY_MAX_CALLS:]
    header = f"Tool calls so far in this conversation ({len(lines)} in all, the last {len(shown)} shown):"
    return "\n".join([header, *shown])


def _result_text(result: ToolResultPart) -> str:
    text = " ".join(p.text for p in result.parts if isinstance(p, TextPart))
    return text or "(no text)"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SUMMARY_MAX_CHARS else flat[: SUMMARY_MAX_CHARS - 1] + "…"


def _apply_params(request: Request, params: Mapping[str, Any], *, override: bool) -> Request:
    if not params:
        return request
    sampling = request.sampling
    for name in SAMPLING_PARAMS:
        if name in params and (override or getattr(sampling, name) is None):
            sampling = dataclasses.replace(sampling, **{name: params[name]})
    request = dataclasses.replace(request, sampling=sampling)
    if "max_output_tokens" in params and (override or request.max_output_tokens is None):
        request = dataclasses.replace(request, max_output_tokens=int(params["max_output_tokens"]))
    reasoning = request.reasoning or ReasoningConfig()
    if "reasoning_effort" in params and (override or reasoning.effort is None):
        reasoning = dataclasses.replace(reasoning, effort=Effort(params["reasoning_effort"]))
    if "reasoning_budget_tokens" in params and (override or reasoning.budget_tokens is None):
        reasoning = dataclasses.replace(reasoning, budget_tokens=int(params["reasoning_budget_tokens"]))
    if reasoning != (request.reasoning or ReasoningConfig()):
        request = dataclasses.replace(request, reasoning=reasoning)
    return request


def merge_extra_body(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` merged into the upstream body, nested objects merged key by key."""
    for key, value in extra.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = merge_extra_body(dict(current), value)
        else:
            body[key] = value
    return body
