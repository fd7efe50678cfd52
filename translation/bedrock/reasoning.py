"""Reasoning settings, which Converse leaves to `additionalModelRequestFields` in each model family's own terms:

- Anthropic (Claude): `{"thinking": {"type": "enabled", "budget_tokens": N}}` or `{"thinking": {"type": "adaptive"}}`
  (and `top_k` beside it);
- Amazon Nova: `{"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low" | "medium" | "high"}}`;
- OpenAI open-weight models (gpt-oss): `{"reasoning_effort": "low" | "medium" | "high"}`.

The family is `TargetOptions.flags["bedrock_model_family"]` ("anthropic", "nova", "openai") when set (needed for
application inference profile ARNs, which do not name the model), else read from the model id
(`us.anthropic.claude-…`, `amazon.nova-…`, `openai.gpt-oss-…`). Other families get no reasoning setting (warned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.codec import TargetOptions
from translation.ir import Effort, ReasoningConfig, ThinkingMode, Warnings, budget_to_effort, effort_to_budget

FAMILY_FLAG = "bedrock_model_family"
_MODES = {"enabled": ThinkingMode.ENABLED, "adaptive": ThinkingMode.ADAPTIVE, "disabled": ThinkingMode.DISABLED}
_EFFORTS = {e.value: e for e in Effort}
_MIN_BUDGET = 1024  # Claude rejects smaller thinking budgets
_ROOM_FOR_ANSWER = 4096  # maxTokens added above the thinking budget when the request set none
_LEVELS = {  # IR effort -> the low/medium/high scale of Nova and gpt-oss
    Effort.MINIMAL: "low",
    Effort.LOW: "low",
    Effort.MEDIUM: "medium",
    Effort.HIGH: "high",
    Effort.XHIGH: "high",
    Effort.MAX: "high",
}


def model_family(target: TargetOptions) -> str | None:
    flag = target.flags.get(FAMILY_FLAG)
    if isinstance(flag, str) and flag:
        return flag
    model = target.model.lower()
    for marker, family in (("anthropic.", "anthropic"), ("amazon.nova", "nova"), ("openai.", "openai")):
        if marker in model:
            return family
    return None


def decode_reasoning(additional: dict[str, Any]) -> ReasoningConfig | None:
    """The reasoning settings in `additionalModelRequestFields`, taken out of `additional` when fully modelled
    (whatever else they hold stays there, in extras, for a Bedrock round trip)."""
    mode: ThinkingMode | None = None
    effort: Effort | None = None
    budget: int | None = None
    thinking = additional.get("thinking")
    if isinstance(thinking, Mapping) and set(thinking) <= {"type", "budget_tokens"} and thinking.get("type") in _MODES:
        mode, budget = _MODES[thinking["type"]], thinking.get("budget_tokens")
        del additional["thinking"]
    config = additional.get("reasoningConfig")
    if isinstance(config, Mapping) and set(config) <= {"type", "maxReasoningEffort"} and config.get("type") in _MODES:
        mode = _MODES[config["type"]]
        effort = _EFFORTS.get(str(config.get("maxReasoningEffort")))
        del additional["reasoningConfig"]
    if isinstance(additional.get("reasoning_effort"), str) and additional["reasoning_effort"] in _EFFORTS:
        effort = _EFFORTS[additional.pop("reasoning_effort")]
    result = ReasoningConfig(mode=mode, effort=effort, budget_tokens=budget)
    return None if result == ReasoningConfig() else result


def encode_reasoning(
    config: ReasoningConfig | None, target: TargetOptions, additional: dict[str, Any], w: Warnings
) -> int | None:
    """Write the reasoning settings into `additional`; return the thinking budget maxTokens must exceed."""
    if config is None or {"thinking", "reasoningConfig", "reasoning_effort"} & additional.keys():
        thinking = additional.get("thinking")
        budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
        return budget if isinstance(budget, int) else None
    mode = config.mode
    if mode is None and config.effort is not None:
        mode = ThinkingMode.DISABLED if config.effort is Effort.NONE else ThinkingMode.ENABLED
    if mode is None or mode is ThinkingMode.DISABLED:
        return None
    family = model_family(target)
    if family == "anthropic":
        if mode is ThinkingMode.ADAPTIVE:
            additional["thinking"] = {"type": "adaptive"}
            return None
        budget = max(config.budget_tokens or effort_to_budget(config.effort or Effort.MEDIUM), _MIN_BUDGET)
        additional["thinking"] = {"type": "enabled", "budget_tokens": budget}
        return budget
    effort = config.effort
    if effort is None:
        effort = budget_to_effort(config.budget_tokens) if config.budget_tokens else Effort.MEDIUM
    level = _LEVELS.get(effort)
    if level is None:  # Effort.NONE
        return None
    if family == "nova":
        additional["reasoningConfig"] = {"type": "enabled", "maxReasoningEffort": level}
    elif family == "openai":
        additional["reasoning_effort"] = level
    else:
        w.drop("reasoning", f"no known reasoning setting for Bedrock model {target.model!r}", "reasoning")
    return None


def fit_max_tokens(requested: int | None, budget: int | None, target: TargetOptions, w: Warnings) -> int | None:
    """`inferenceConfig.maxTokens`: the request's (or the upstream default), within the upstream cap, and above the
    thinking budget, which Claude counts inside maxTokens (the answer keeps the room the client asked for)."""
    max_tokens = requested if requested is not None else target.default_max_output_tokens
    cap = target.max_output_tokens_cap
    if max_tokens is not None and cap is not None and max_tokens > cap:
        w.drop("max_tokens", f"clamped to the upstream's limit of {cap}", "max_tokens")
        max_tokens = cap
    if budget is None or (max_tokens is not None and budget < max_tokens):
        return max_tokens
    max_tokens = budget + (max_tokens or _ROOM_FOR_ANSWER)
    return max_tokens if cap is None else min(max_tokens, cap)
