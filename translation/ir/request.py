"""A generation request, independent of the dialect it arrived in or will leave in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from translation.dialect import Dialect
from translation.ir.common import JSON, CacheHint, Extras
from translation.ir.content import Part, TextPart, ToolKind


class Role(StrEnum):
    USER = "user"  # also carries ToolResultParts (Chat `role: tool` messages decode to USER)
    ASSISTANT = "assistant"  # Gemini "model"
    SYSTEM = "system"  # instructions given inside the conversation
    DEVELOPER = "developer"  # OpenAI's name for SYSTEM; dialects without it encode it as SYSTEM


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. Decoders keep the wire's order and grouping; encoders merge or split as their dialect needs
    (e.g. one Chat `role: tool` message per ToolResultPart, results before text in an Anthropic user turn)."""

    role: Role
    parts: tuple[Part, ...]
    extras: Extras = field(default_factory=dict)


# -- tools ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grammar:
    """The input grammar of a CUSTOM tool (Codex `apply_patch` uses lark)."""

    syntax: str  # "lark" | "regex"
    definition: str


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A tool the client executes. FUNCTION tools take a JSON object described by `parameters` (a JSON Schema,
    kept verbatim: encoders sanitise it for their upstream); CUSTOM tools take a freeform string, optionally
    constrained by `grammar`. Encoders for dialects without CUSTOM tools expose them as a function with one
    string parameter `input` (grammar appended to the description) and map calls back (see README)."""

    TAG: ClassVar[str] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, JSON] | None = None
    kind: ToolKind = ToolKind.FUNCTION
    grammar: Grammar | None = None
    strict: bool | None = None
    cache: CacheHint | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostedTool:
    """A tool the provider runs itself (web search, code execution, …), declared by the client.

    `name` is a neutral capability name encoders can map across providers: "web_search", "web_fetch",
    "code_execution", "file_search", "computer", "mcp", or the wire type itself when there is no neutral
    name. `config` is the declaration verbatim as `dialect` spells it; the same dialect re-emits it, another
    dialect maps `name` if it can (web_search -> Gemini googleSearch) or drops with a warning / refuses.
    """

    TAG: ClassVar[str] = "hosted"
    name: str
    dialect: Dialect
    config: dict[str, JSON]


Tool = FunctionTool | HostedTool


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"  # must call some tool (Anthropic "any", Gemini ANY)
    NAMED = "named"  # must call the tool `ToolChoice.name`


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`allowed` restricts the callable tools to a subset (Chat/Responses `allowed_tools`, Gemini
    `allowedFunctionNames`) under AUTO or REQUIRED; None means all declared tools."""

    mode: ToolChoiceMode
    name: str | None = None
    allowed: tuple[str, ...] | None = None


# -- generation settings -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters; None means "not sent", so the provider default applies. Encoders drop the ones
    their dialect lacks with a warning (never a refusal: clients send defaults routinely)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    candidate_count: int | None = None  # Chat `n`, Gemini `candidateCount`; >1 is refused by most encoders


class Effort(StrEnum):
    """Reasoning effort, the union of every dialect's levels, in increasing order."""

    NONE = "none"
    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"
    MAX = "max"


class ThinkingMode(StrEnum):
    DISABLED = "disabled"  # Anthropic disabled, Gemini budget 0, effort "none"
    ENABLED = "enabled"  # with a fixed `budget_tokens`
    ADAPTIVE = "adaptive"  # the model decides (Anthropic adaptive, Gemini budget -1)


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """How much the model should think and whether the thoughts are shown. Any field may be None (unset).

    Effort and budget are independent: a dialect that has only one derives it from the other with
    `effort_to_budget` / `budget_to_effort`, so every codec bridges them the same way.
    `include_thoughts`: return reasoning text (Gemini includeThoughts, Anthropic display, Responses summary).
    """

    mode: ThinkingMode | None = None
    effort: Effort | None = None
    budget_tokens: int | None = None
    include_thoughts: bool | None = None


# Heuristic bridge between effort levels and thinking budgets (protocols.md §1.5).
_EFFORT_BUDGET: dict[Effort, int] = {
    Effort.NONE: 0,
    Effort.MINIMAL: 1024,
    Effort.LOW: 2048,
    Effort.MEDIUM: 8192,
    Effort.HIGH: 24576,
    Effort.XHIGH: 32768,
    Effort.MAX: 65536,
}


def effort_to_budget(effort: Effort) -> int:
    return _EFFORT_BUDGET[effort]


def budget_to_effort(budget: int) -> Effort:
    """The smallest effort whose budget covers `budget` (MAX beyond the table)."""
    for effort, limit in _EFFORT_BUDGET.items():
        if budget <= limit:
            return effort
    return Effort.MAX


class OutputKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object, no schema
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True, slots=True)
class OutputFormat:
    kind: OutputKind
    schema: dict[str, JSON] | None = None
    name: str | None = None  # OpenAI requires one for json_schema; encoders default it to "response"
    description: str | None = None
    strict: bool | None = None


# -- the request ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """Everything a client asked for.

    `system` holds the dialect's dedicated top-level instructions (Anthropic `system`, Responses
    `instructions`, Gemini `systemInstruction`); SYSTEM/DEVELOPER messages stay where they were in `messages`
    (Chat and Codex send their instructions that way). Encoders call `leading_instructions()` to get the
    instructions that precede the conversation, whichever way they arrived.
    `model` is the name the client asked for (the Gemini decoder takes it from the URL path); routing
    replaces it with the upstream model before encoding. `cache` is a request-wide cache hint (Anthropic
    top-level `cache_control`). `previous_response_id` is Responses server-side state: routing must resolve
    it (or refuse) before encoding for another dialect.
    """

    model: str
    messages: tuple[Message, ...]
    system: tuple[TextPart, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning: ReasoningConfig | None = None
    output_format: OutputFormat | None = None
    stream: bool = False
    user: str | None = None  # end-user id: Anthropic metadata.user_id, OpenAI safety_identifier/user
    metadata: dict[str, str] = field(default_factory=dict)  # OpenAI `metadata`
    cache: CacheHint | None = None
    cache_key: str | None = None  # OpenAI prompt_cache_key
    previous_response_id: str | None = None
    extras: Extras = field(default_factory=dict)

    def leading_instructions(self) -> tuple[tuple[TextPart, ...], tuple[Message, ...]]:
        """(`system` plus the text of the SYSTEM/DEVELOPER messages before the first other message, the rest).

        What a dialect with one top-level system field should put there; later SYSTEM messages are
        mid-conversation instructions the encoder places (or folds into user text) itself.
        """
        instructions = list(self.system)
        rest = list(self.messages)
        while rest and rest[0].role in (Role.SYSTEM, Role.DEVELOPER):
            instructions.extend(p for p in rest.pop(0).parts if isinstance(p, TextPart))
        return tuple(instructions), tuple(rest)
