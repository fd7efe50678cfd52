"""`thinking` + `output_config.effort` <-> `ReasoningConfig`, and fitting `max_tokens` around the budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.ir import Effort, ReasoningConfig, ThinkingMode, TranslationError, Warnings, effort_to_budget

_MODES = {"enabled": ThinkingMode.ENABLED, "adaptive": ThinkingMode.ADAPTIVE, "disabled": ThinkingMode.DISABLED}
_EFFORTS = {e.value: e for e in Effort}
_DISPLAY = {"summarized": True, "omitted": False}
_MIN_BUDGET = 1024  # Anthropic rejects smaller thinking budgets
# output_config.effort takes low..max; the IR's lower levels round up to Anthropic's lowest.
_WIRE_EFFORTS = ("low", "medium", "high", "xhigh", "max")


def decode_reasoning(thinking: Any, effort: Any) -> ReasoningConfig | None:
    thinking = thinking if isinstance(thinking, Mapping) else {}
    config = ReasoningConfig(
        mode=_MODES.get(str(thinking.get("type"))),
        effort=_EFFORTS.get(str(effort)),
        budget_tokens=thinking.get("budget_tokens"),
        include_thoughts=_DISPLAY.get(str(thinking.get("display"))),
    )
    return None if config == ReasoningConfig() else config


def encode_reasoning(
    config: ReasoningConfig | None, messages: list[dict[str, Any]], w: Warnings
) -> tuple[dict[str, Any] | None, str | None]:
    """(`thinking`, `output_config.effort`). An effort without a mode (OpenAI clients) becomes a budget, which
    every thinking-capable model takes; an explicit mode keeps the effort next to it, as Claude Code sends it."""
    if config is None:
        return None, None
    mode = config.mode
    if mode is None and config.effort is not None:
        mode = ThinkingMode.DISABLED if config.effort is Effort.NONE else ThinkingMode.ENABLED
    if mode is None:
        return None, None
    if mode is ThinkingMode.ENABLED and _tool_turn_lacks_thinking(messages):
        w.drop("thinking", "the last tool-use turn has no Anthropic thinking block, so thinking is off", "reasoning")
        mode = ThinkingMode.DISABLED
    thinking: dict[str, Any] = {"type": mode.value}
    if mode is ThinkingMode.ENABLED:
        budget = config.budget_tokens or effort_to_budget(config.effort or Effort.MEDIUM)
        thinking["budget_tokens"] = max(budget, _MIN_BUDGET)
    if mode is not ThinkingMode.DISABLED and config.include_thoughts is not None:
        thinking["display"] = "summarized" if config.include_thoughts else "omitted"
    effort = None
    if config.mode is not None and config.effort not in (None, Effort.NONE):
        effort = config.effort.value if config.effort.value in _WIRE_EFFORTS else "low"
    return thinking, effort


def fit_max_tokens(
    requested: int | None, thinking: dict[str, Any] | None, target: TargetOptions, w: Warnings
) -> tuple[int, dict[str, Any] | None]:
    """(`max_tokens`, `thinking`): required by Anthropic, within the upstream cap, above the thinking budget
    (which Anthropic counts inside max_tokens: the answer keeps the room the client asked for)."""
    max_tokens = requested if requested is not None else target.default_max_output_tokens
    if max_tokens is None:
        raise TranslationError("max_tokens", "Anthropic requires max_tokens and no default is configured")
    cap = target.max_output_tokens_cap
    if cap is not None and max_tokens > cap:
        w.drop("max_tokens", f"clamped to the upstream's limit of {cap}", "max_tokens")
        max_tokens = cap
    budget = thinking.get("budget_tokens") if thinking else None
    if thinking is None or not isinstance(budget, int) or budget < max_tokens:
        return max_tokens, thinking
    max_tokens = budget + max_tokens if cap is None else min(budget + max_tokens, cap)
    if budget < max_tokens:
        return max_tokens, thinking
    budget = max_tokens // 2
    if budget < _MIN_BUDGET:
        w.drop("thinking_budget", "max_tokens leaves no room for thinking; thinking is off", "reasoning")
        return max_tokens, {"type": "disabled"}
    w.drop("thinking_budget", f"thinking budget lowered to {budget} to fit max_tokens", "reasoning")
    return max_tokens, {**thinking, "budget_tokens": budget}


def _tool_turn_lacks_thinking(messages: list[dict[str, Any]]) -> bool:
    """With thinking enabled, Anthropic rejects a last assistant turn that used tools without opening with a
    thinking block (pitfall 34): that happens when the history came from another provider. Adaptive thinking
    may skip thinking, so it accepts such turns."""
    for message in reversed(messages):
        if message["role"] != "assistant":
            continue
        content = message["content"]
        if isinstance(content, str) or not any(b.get("type") == "tool_use" for b in content):
            return False
        return content[0].get("type") not in ("thinking", "redacted_thinking")
    return False
