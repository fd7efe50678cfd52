"""Scenario routing: an alias may send some kinds of request to another target, as claude-code-router's router
does. Which scenario a request is, is decided here, once, from the decoded request (translation IR), so the same
rule holds for every client API and transport; `detect` is pure (no I/O) and the request path calls it only for
an alias that has scenario targets.

Scenarios are tried in `ORDER` and the first that matches and has a target wins. What the request needs comes
first (a prompt that fits, a model that sees images, one that can search the web), then what it prefers (a
cheap model for background work, a reasoning model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from translation.estimate import estimate_input_tokens
from translation.ir import (
    Effort,
    HostedTool,
    ImagePart,
    Part,
    Request,
    ThinkingMode,
    ToolResultPart,
)


class Scenario(StrEnum):
    LONG_CONTEXT = "long_context"  # estimated prompt tokens above the target's `above_tokens`
    IMAGE = "image"  # an image anywhere in the conversation (tool results included)
    WEB_SEARCH = "web_search"  # a hosted web-search tool is offered
    BACKGROUND = "background"  # a small, haiku-class model was asked for (Claude Code's titles and summaries)
    THINK = "think"  # extended thinking or a reasoning effort was asked for


ORDER: tuple[Scenario, ...] = (
    Scenario.LONG_CONTEXT,
    Scenario.IMAGE,
    Scenario.WEB_SEARCH,
    Scenario.BACKGROUND,
    Scenario.THINK,
)
# Requested model names that mark background work: Claude Code asks its small fast model (a Haiku) for titles,
# topic detection and summaries.
BACKGROUND_MARKERS = ("haiku",)
# Efforts that ask for no real thinking.
_NO_THINKING = frozenset({Effort.NONE, Effort.MINIMAL})


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: an upstream (by name) and the model it is asked for. A value of its own so that a
    scenario (like an alias) can later have several targets."""

    upstream: str
    model: str


@dataclass(frozen=True, slots=True)
class ScenarioTarget:
    scenario: Scenario
    target: Target
    above_tokens: int | None = None  # long_context only: the threshold


def detect(request: Request, requested_model: str, targets: Sequence[ScenarioTarget]) -> ScenarioTarget | None:
    """The first scenario of `ORDER` that `request` (asked for as `requested_model`) matches among `targets`."""
    by_scenario = {t.scenario: t for t in targets}
    for scenario in ORDER:
        candidate = by_scenario.get(scenario)
        if candidate is not None and _matches(scenario, request, requested_model, candidate):
            return candidate
    return None


def _matches(scenario: Scenario, request: Request, requested_model: str, candidate: ScenarioTarget) -> bool:
    match scenario:
        case Scenario.LONG_CONTEXT:
            threshold = candidate.above_tokens
            return threshold is not None and estimate_input_tokens(request) > threshold
        case Scenario.IMAGE:
            return has_image(request)
        case Scenario.WEB_SEARCH:
            return offers_web_search(request)
        case Scenario.BACKGROUND:
            return is_background(requested_model)
        case Scenario.THINK:
            return wants_thinking(request)


def has_image(request: Request) -> bool:
    return any(_part_has_image(part) for message in request.messages for part in message.parts)


def _part_has_image(part: Part) -> bool:
    if isinstance(part, ImagePart):
        return True
    if isinstance(part, ToolResultPart):
        return any(_part_has_image(inner) for inner in part.parts)
    return False


def offers_web_search(request: Request) -> bool:
    """Anthropic `web_search_*`, Responses `web_search(_preview)`, Chat `web_search_options`, Gemini
    `googleSearch`: each codec names the hosted tool `web_search`."""
    return any(isinstance(tool, HostedTool) and tool.name == "web_search" for tool in request.tools)


def is_background(requested_model: str) -> bool:
    name = requested_model.lower()
    return any(marker in name for marker in BACKGROUND_MARKERS)


def wants_thinking(request: Request) -> bool:
    """Anthropic `thinking` (enabled or adaptive), an OpenAI reasoning effort above minimal, a Gemini thinking
    budget above 0 (or -1, dynamic)."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.mode is ThinkingMode.DISABLED:
        return False
    if reasoning.mode in (ThinkingMode.ENABLED, ThinkingMode.ADAPTIVE):
        return True
    if reasoning.effort is not None:
        return reasoning.effort not in _NO_THINKING
    return bool(reasoning.budget_tokens)


# --- configuration: the `scenarios` mapping of an alias ------------------------------------------------------


def parse_scenarios(value: Any) -> dict[str, dict[str, Any]]:
    """Validate an alias's `scenarios` ({name: {upstream, model[, above_tokens]}}) and return it normalised;
    raises ValueError saying what is wrong."""
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise ValueError('give a mapping such as {"think": {"upstream": "a", "model": "reasoner"}}')
    names = ", ".join(ORDER)
    cleaned: dict[str, dict[str, Any]] = {}
    for name, entry in value.items():
        if name not in set(ORDER):
            raise ValueError(f"unknown scenario {name!r} (known: {names})")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{name}: give a mapping with upstream and model")
        allowed = {"upstream", "model"} | ({"above_tokens"} if name == Scenario.LONG_CONTEXT else set())
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{name}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        upstream, model = entry.get("upstream"), entry.get("model")
        if not isinstance(upstream, str) or not upstream.strip():
            raise ValueError(f"{name}: upstream (a name) is required")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"{name}: model is required")
        item: dict[str, Any] = {"upstream": upstream.strip(), "model": model.strip()}
        if name == Scenario.LONG_CONTEXT:
            above = entry.get("above_tokens")
            if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
                raise ValueError(f"{name}: above_tokens (a positive number of tokens) is required")
            item["above_tokens"] = above
        cleaned[str(name)] = item
    return {name.value: cleaned[name] for name in ORDER if name in cleaned}


def scenario_targets(value: Mapping[str, Mapping[str, Any]]) -> tuple[ScenarioTarget, ...]:
    """The stored mapping (already validated) as targets, in `ORDER`."""
    return tuple(
        ScenarioTarget(
            Scenario(name),
            Target(str(value[name]["upstream"]), str(value[name]["model"])),
            value[name].get("above_tokens"),
        )
        for name in ORDER
        if name in value
    )
