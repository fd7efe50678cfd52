"""The contract every dialect folder implements (translation/README.md explains it in prose).

The Protocols below are for the type checker and for routing, which picks a codec by `Dialect`; the codec
modules themselves are plain functions and classes that satisfy them structurally. Each dialect package
exports one `Codec` built from its `request`, `response` and `stream` modules
(`from translation.anthropic import CODEC`), so mypy checks every module against the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from translation.dialect import Dialect
from translation.ir.diagnostics import Translated, TranslationWarning
from translation.ir.request import Request
from translation.ir.response import Response
from translation.ir.stream import StreamEvent
from translation.sse import SSEEvent, encode_event


@dataclass(frozen=True, slots=True)
class TargetOptions:
    """What an upstream-side encoder needs to know about the upstream beyond its dialect.

    `model`: the upstream model name to write (Gemini puts it in the URL, so its encoder ignores it).
    `default_max_output_tokens`: used when the request has none and the dialect requires one (Anthropic).
    `max_output_tokens_cap`: clamp to it (and warn) when the request asks for more.
    `flags`: per-upstream switches a codec documents in its module docstring, e.g.
    `{"anthropic_version": "2023-06-01"}`, `{"gemini_dummy_thought_signature": True}`,
    `{"reasoning_content": True}` (send DeepSeek-style reasoning_content to a Chat upstream),
    `{"bedrock_model_family": "anthropic"}` (how to ask a Bedrock model whose id does not say for reasoning).
    """

    model: str
    default_max_output_tokens: int | None = None
    max_output_tokens_cap: int | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientContext:
    """What a client-side encoder needs besides the response: the decoded client request (Responses echoes
    tools/tool_choice/instructions; `model` is the alias the client asked for and must see back) and the
    time, since the translation package never reads a clock."""

    request: Request
    created: int


@dataclass(frozen=True, slots=True)
class WireEvent:
    """One client-bound stream event: an SSE frame, or (Responses WebSocket) one text frame of `data`.

    `data` is a JSON-ready dict, or a string sent as is (Chat's `[DONE]`). Routing may still inspect or amend
    the dict (e.g. add a WebSocket `stream_id`) before writing it.
    """

    data: dict[str, Any] | str
    event: str | None = None

    def sse(self) -> bytes:
        return encode_event(self.data, self.event)


class StreamDecoder(Protocol):
    """Upstream SSE events (or WebSocket frames wrapped in SSEEvent) in, IR stream events out.

    Constructed as `StreamDecoder(request)` with the IR request that was encoded for this upstream, so the
    decoder can undo what its own encoder did (e.g. unwrap CUSTOM tools exposed as `{"input": string}`).
    """

    warnings: list[TranslationWarning]

    def feed(self, event: SSEEvent) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]:
        """The upstream body ended: emit whatever is still owed (a final ResponseStop if the dialect has no
        end marker, as with Gemini; a StreamError if the stream was cut short)."""
        ...


class StreamEncoder(Protocol):
    """IR stream events in, the client dialect's events out, one call per upstream event, no buffering
    beyond what the dialect's ordering rules force. Constructed as `StreamEncoder(client: ClientContext)`."""

    warnings: list[TranslationWarning]

    def feed(self, event: StreamEvent) -> list[WireEvent]: ...

    def finish(self) -> list[WireEvent]:
        """No more IR events. If none was terminal (ResponseStop/StreamError) the encoder emits its dialect's
        in-stream error: it never invents a successful end."""
        ...


class RequestCodec(Protocol):
    def decode_request(self, body: Mapping[str, Any], *, model: str | None = None) -> Translated[Request]: ...

    def encode_request(self, request: Request, target: TargetOptions) -> Translated[dict[str, Any]]: ...


class ResponseCodec(Protocol):
    def decode_response(self, body: Mapping[str, Any], *, request: Request | None = None) -> Translated[Response]: ...

    def encode_response(self, response: Response, client: ClientContext) -> Translated[dict[str, Any]]: ...


# Module-level names, so the StreamCodec members below can be called StreamDecoder/StreamEncoder (the class
# names in every stream.py) without shadowing the Protocols in their own annotations.
StreamDecoderFactory = Callable[[Request], StreamDecoder]
StreamEncoderFactory = Callable[[ClientContext], StreamEncoder]


class StreamCodec(Protocol):
    """A dialect's stream module: `StreamDecoder(request)` for the upstream side, `StreamEncoder(client)` for
    the client side."""

    @property
    def StreamDecoder(self) -> StreamDecoderFactory: ...

    @property
    def StreamEncoder(self) -> StreamEncoderFactory: ...


@dataclass(frozen=True, slots=True)
class Codec:
    """One dialect's whole codec, as its package exports it (`CODEC`):
    `codec.request.decode_request / encode_request`, `codec.response.decode_response / encode_response`,
    `codec.stream.StreamDecoder(request) / StreamEncoder(client)`."""

    dialect: Dialect
    request: RequestCodec
    response: ResponseCodec
    stream: StreamCodec
