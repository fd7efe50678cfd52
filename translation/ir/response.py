"""A complete (non-streamed) model response."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from translation.ir.common import Extras
from translation.ir.content import Part
from translation.usage import Usage


class StopReason(StrEnum):
    """Why generation ended. Mapping table per dialect: protocols.md §2.2 and translation/README.md."""

    END_TURN = "end_turn"  # natural end (Chat stop, Gemini STOP without calls, Responses completed)
    MAX_TOKENS = "max_tokens"  # output limit hit: a normal response, never an error
    STOP_SEQUENCE = "stop_sequence"  # `Response.stop_sequence` says which when the upstream told us
    TOOL_USE = "tool_use"  # the response ends with tool calls for the client to run
    REFUSAL = "refusal"  # refused / content filter / safety block (prompt-level blocks included)
    CONTEXT_OVERFLOW = "context_overflow"  # Anthropic model_context_window_exceeded
    PAUSE = "pause"  # Anthropic pause_turn: a server-tool loop paused, the client may continue
    ERROR = "error"  # the model produced something unusable (Gemini MALFORMED_FUNCTION_CALL, …)
    OTHER = "other"  # anything else; keep the wire value in `Response.stop_detail`


@dataclass(frozen=True, slots=True)
class Response:
    """`parts` are in output order. `stop_detail` is the upstream's own reason string when it says more
    than `stop` does (e.g. "RECITATION", "content_filter") — for logs and same-dialect round trips.
    `created` is the upstream's Unix timestamp when it sent one (the IR never reads a clock)."""

    id: str
    model: str
    parts: tuple[Part, ...]
    stop: StopReason
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    stop_detail: str | None = None
    created: int | None = None
    extras: Extras = field(default_factory=dict)
