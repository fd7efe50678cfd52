"""The neutral stream vocabulary every StreamDecoder emits and every StreamEncoder consumes.

A valid IR stream is:

    ResponseStart
    ( BlockStart(i) | *Delta(i) | SignatureDelta(i) | BlockStop(i) | UsageUpdate )*
    ( ResponseStop | StreamError )

Rules that let encoders flush each client event as soon as its upstream event arrives:
- `index` identifies one block for the whole response and equals its position in the final
  `Response.parts`: 0, 1, 2… in BlockStart order. Parallel tool calls are distinct blocks, never one index.
- Each block gets exactly one BlockStart and one BlockStop, and its deltas come in between.
- Blocks MAY interleave (Chat upstreams stream parallel calls side by side): a decoder never buffers to avoid
  it. Encoders whose dialect needs strictly sequential blocks (Anthropic) use `streaming.BlockSequencer`.
- ToolArgsDelta fragments are forwarded verbatim; their concatenation is the complete `raw_arguments`.
  A decoder whose upstream sends arguments whole (Gemini, Ollama, Responses `.done` without deltas) emits
  one fragment holding all of them before the BlockStop.
- Usage is cumulative: each UsageUpdate (and the usage on ResponseStart / ResponseStop) is a snapshot to
  overlay with `Usage.updated`, never a increment to add.
- ResponseStop is the last event. A decoder emits it only once it knows both the stop reason and the final
  usage (Chat: the usage chunk after `finish_reason`, or `[DONE]`, or `finish()`).
- StreamError replaces ResponseStop when the upstream failed mid-stream: encoders emit their dialect's
  in-stream error and never invent a successful end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from translation.errors import ApiError
from translation.ir.common import Extras, OpaqueSignature
from translation.ir.content import ToolKind
from translation.ir.response import StopReason
from translation.usage import Usage


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """`usage` carries what is known up front (Anthropic reports input tokens in message_start)."""

    TAG: ClassVar[str] = "response_start"
    id: str
    model: str
    usage: Usage | None = None
    created: int | None = None
    extras: Extras = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextStart:
    TAG: ClassVar[str] = "text_start"
    index: int


@dataclass(frozen=True, slots=True)
class ReasoningStart:
    """`summary`: the text that follows is a summary of the reasoning (Responses summary_text)."""

    TAG: ClassVar[str] = "reasoning_start"
    index: int
    summary: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """`id` and `name` are always known here: decoders synthesise an id when the upstream omits it."""

    TAG: ClassVar[str] = "tool_call_start"
    index: int
    id: str
    name: str
    kind: ToolKind = ToolKind.FUNCTION


@dataclass(frozen=True, slots=True)
class RefusalStart:
    TAG: ClassVar[str] = "refusal_start"
    index: int


BlockStart = TextStart | ReasoningStart | ToolCallStart | RefusalStart


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text for a text block, or refusal text for a refusal block."""

    TAG: ClassVar[str] = "text_delta"
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    TAG: ClassVar[str] = "reasoning_delta"
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolArgsDelta:
    """A fragment of the tool call's argument text (partial JSON, or freeform input for CUSTOM calls)."""

    TAG: ClassVar[str] = "tool_args_delta"
    index: int
    fragment: str


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    """The complete opaque signature of block `index` (never a fragment; a second one replaces the first).

    Usually on a reasoning block; on a tool-call or text block for Gemini thoughtSignatures.
    """

    TAG: ClassVar[str] = "signature_delta"
    index: int
    signature: OpaqueSignature


@dataclass(frozen=True, slots=True)
class BlockStop:
    TAG: ClassVar[str] = "block_stop"
    index: int


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    TAG: ClassVar[str] = "usage_update"
    usage: Usage


@dataclass(frozen=True, slots=True)
class ResponseStop:
    TAG: ClassVar[str] = "response_stop"
    stop: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None
    stop_detail: str | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    TAG: ClassVar[str] = "stream_error"
    error: ApiError


StreamEvent = (
    ResponseStart
    | TextStart
    | ReasoningStart
    | ToolCallStart
    | RefusalStart
    | TextDelta
    | ReasoningDelta
    | ToolArgsDelta
    | SignatureDelta
    | BlockStop
    | UsageUpdate
    | ResponseStop
    | StreamError
)
