"""The neutral script a fake upstream plays back, whatever wire format it speaks.

A test queues `Reply` objects; each fake turns the next one into its provider's exact response (JSON or SSE). The
numbers and reasons here are canonical (see docs: usage semantics): each fake converts them the way the real provider
reports them, so a proxy that copies fields across dialects instead of converting shows up in tests.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# Canonical stop reasons; each fake maps them to its own enum (end_turn / stop / STOP / status "completed" ...).
Stop = Literal["end", "max_tokens", "tool_calls", "stop_sequence", "content_filter"]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    # None: the fake makes a provider-style id (toolu_…, call_…); Gemini sends no id unless the fake is told to.
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    """Canonical token counts: `input` includes cached tokens, `output` includes reasoning tokens."""

    input: int = 12
    output: int = 8
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


@dataclass(frozen=True)
class Failure:
    """An error in the provider's own envelope. `type` overrides the provider's error type / status name for the
    HTTP status (e.g. Anthropic "overloaded_error", Gemini "RESOURCE_EXHAUSTED"); `code` is OpenAI's error code."""

    status: int
    message: str = ""
    type: str | None = None
    code: str | None = None
    retry_after: float | None = None  # sent as a `retry-after` header (seconds)
    # OpenAI Responses only: report a mid-stream failure as a bare `error` event instead of `response.failed`.
    error_event: bool = False


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    reasoning: str = ""  # thinking text (Anthropic thinking block, Responses summary, Gemini thought part)
    stop: Stop | None = None  # None: "tool_calls" when there are tool calls, else "end"
    stop_sequence: str | None = None  # Anthropic reports which one matched
    usage: Usage = field(default_factory=Usage)
    # Sent as the provider's usage object instead of the one made from `usage`: a malformed report ("7", -5, 1e20).
    wire_usage: dict[str, Any] | None = None
    chunks: int = 3  # streamed text, reasoning and tool arguments are each split into this many pieces
    error: Failure | None = None  # answer with this HTTP error instead of a reply
    stream_error: Failure | None = None  # stream the content, then the provider's in-stream error instead of a finish
    hang: bool = False  # read the request and never answer (until the client goes away)
    stall_after: int | None = None  # send this many stream frames, then go silent with the connection open
    latency: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds between stream frames
    prefill: float = 0.0  # seconds between the stream's headers and its first frame

    @property
    def stop_reason(self) -> Stop:
        if self.stop is not None:
            return self.stop
        return "tool_calls" if self.tool_calls else "end"


def split(text: str, pieces: int) -> list[str]:
    """`text` cut into at most `pieces` non-empty parts that join back to it."""
    if not text:
        return []
    size = -(-len(text) // max(1, pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class ReplyQueue:
    """Scripted replies, consumed in order; shared between the test thread and the server's loop thread."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def take(self) -> Reply | None:
        """The next scripted reply, else the default given to the constructor (None: the fake's echo reply)."""
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)
