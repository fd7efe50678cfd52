"""Different dialects on the two sides: decode the client's request, encode it for the upstream, and turn
the upstream's answer (whole or streamed, event by event) back into the client's dialect.

The pieces are shared by the HTTP path (`forward_translated`) and Responses over WebSocket
(`routing.responses_ws`): `prepare_translated` builds the upstream request, `TranslatedStream` turns an
upstream stream into client events, `replayed_events` turns a whole upstream answer into them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from routing.asgi_io import SSE_CONTENT_TYPE, SSE_EXTRA_HEADERS, SSE_HEADERS, send_bytes, send_json
from routing.codecs import codec_for
from routing.context import Exchange, ExchangeError
from routing.metering import Meter
from routing.relay import (
    broken_stream_error,
    build_upstream_request,
    is_event_stream,
    open_upstream,
    read_body,
    redacted,
    relay_passthrough,
    relayed_headers,
    upstream_error,
)
from routing.shaping import merge_extra_body, shape
from routing.upstream import Operation
from translation.codec import ClientContext, TargetOptions, WireEvent
from translation.dialect import Dialect
from translation.ir import (
    Message,
    Request,
    Response,
    StreamError,
    TranslationError,
    TranslationWarning,
    extras_for,
)
from translation.sse import SSEParser
from translation.streaming import ResponseBuilder, response_events

# Anthropic requires max_tokens; when the client gave none, this is what an upstream of that dialect gets.
DEFAULT_MAX_OUTPUT_TOKENS = 8192

# The Responses events that end a response the client may continue with `previous_response_id`.
RESPONSES_FINISHED = ("response.completed", "response.incomplete")

# Told the finished answer of a Responses client: (the response id the client saw, the whole conversation
# that was sent upstream — earlier history and this request's input —, the answer). routing.conversations.
OnResponse = Callable[[str, tuple[Message, ...], Response], None]


def _note(exchange: Exchange, warnings: tuple[TranslationWarning, ...] | list[TranslationWarning]) -> None:
    exchange.warnings.extend(w.feature for w in warnings)


@dataclass(frozen=True, slots=True)
class Prepared:
    client_request: Request  # as the client sent it (its model and settings are echoed back)
    upstream_ir: Request  # what was encoded for the upstream
    conversation: tuple[Message, ...]  # history (previous_response_id expanded) + the client's messages
    request: httpx.Request


# Leftovers of objects the IR does model (Gemini's systemInstruction role, nested config fields the codec
# already accounted for): not features of their own.
_MODELLED_CONTAINERS = frozenset({"systemInstruction", "generationConfig", "toolConfig"})


def unmapped_fields(request: Request, dialect: Dialect, warned: Sequence[TranslationWarning]) -> list[str]:
    """Top-level fields of the client's API that no other API has (Claude Code's `context_management`,
    Codex's `store` and `include`): they cannot go upstream, so each is announced as `unmapped:<field>`."""
    already = {w.feature for w in warned}
    fields = extras_for(request.extras, dialect)
    return [f"unmapped:{name}" for name in fields if name not in already and name not in _MODELLED_CONTAINERS]


def _flags(configured: Mapping[str, Any], *, same_api: bool) -> Mapping[str, Any]:
    """A client re-encoded in its own API (a shaping alias) keeps its native freeform tools: its answer is
    relayed untouched, so nothing would turn wrapped calls back (translation/custom_tools.py)."""
    return {"custom_tools": True, **configured} if same_api else configured


def prepare_translated(exchange: Exchange, payload: dict[str, Any], history: Sequence[Message] = ()) -> Prepared:
    """Decode, shape and encode the request. `history` is the conversation `previous_response_id` names:
    it goes before the client's messages and the id is not sent (the upstream would not know it)."""
    endpoint = exchange.endpoint
    route = exchange.upstream_route
    upstream_format = route.upstream.format
    try:
        decoded = codec_for(endpoint.dialect).request.decode_request(payload, model=endpoint.model)
        client_request: Request = decoded.value
        if endpoint.stream is not None:
            client_request = dataclasses.replace(client_request, stream=endpoint.stream)
        conversation = (*history, *client_request.messages)
        outgoing = dataclasses.replace(client_request, model=route.upstream_model)
        if history:
            outgoing = dataclasses.replace(outgoing, messages=conversation, previous_response_id=None)
        shaped = shape(outgoing, route.shaping, upstream_format)
        target = TargetOptions(
            model=route.upstream_model,
            default_max_output_tokens=min(DEFAULT_MAX_OUTPUT_TOKENS, shaped.output_cap or DEFAULT_MAX_OUTPUT_TOKENS),
            max_output_tokens_cap=shaped.output_cap,
            flags=_flags(route.upstream.translation_flags, same_api=upstream_format is endpoint.dialect),
        )
        encoded = codec_for(upstream_format).request.encode_request(shaped.request, target)
    except TranslationError as exc:
        raise ExchangeError(exc.to_api_error()) from exc
    _note(exchange, decoded.warnings)
    if upstream_format is not endpoint.dialect:
        exchange.warnings.extend(unmapped_fields(client_request, endpoint.dialect, decoded.warnings))
    exchange.warnings.extend(shaped.warnings)
    _note(exchange, encoded.warnings)
    body = merge_extra_body(encoded.value, route.shaping.extra_body)
    upstream_request = build_upstream_request(exchange, Operation.GENERATE, body, client_request.stream)
    return Prepared(client_request, shaped.request, conversation, upstream_request)


async def forward_translated(
    exchange: Exchange,
    payload: dict[str, Any],
    history: Sequence[Message] = (),
    on_response: OnResponse | None = None,
) -> None:
    """Decode, shape and encode the request; relay the answer, translating it when the APIs differ.

    Also serves same-API requests whose alias rewrites them (see routing.shaping): they are re-encoded in
    their own dialect and the answer is relayed untouched.
    """
    prepared = prepare_translated(exchange, payload, history)
    client_request = prepared.client_request
    stream = client_request.stream
    exchange.record.stream = stream
    if exchange.upstream_route.upstream.format is exchange.endpoint.dialect:
        await relay_passthrough(exchange, prepared.request, stream)
        return
    client = ClientContext(request=client_request, created=int(time.time()))
    recorder = _Recorder(prepared.conversation, on_response)
    response = await open_upstream(exchange, prepared.request)
    Meter(exchange).response_headers(response)
    try:
        if response.status_code >= 400:
            content = await read_body(exchange, response)
            raise upstream_error(exchange, response.status_code, content, response.headers.get("retry-after"))
        if not is_event_stream(response):
            await _relay_translated_whole(exchange, response, prepared.upstream_ir, client, recorder)
        else:
            await _relay_translated_stream(exchange, response, prepared.upstream_ir, client, recorder)
    finally:
        await response.aclose()


@dataclass(slots=True)
class _Recorder:
    """Calls `on_response` once, when the client-side events hold a finished Responses answer."""

    conversation: tuple[Message, ...]
    on_response: OnResponse | None

    def wire(self, events: Sequence[WireEvent], response: Callable[[], Response]) -> None:
        if self.on_response is None:
            return
        for wire in events:
            finished = finished_response(wire.data)
            if finished is not None:
                self.body(finished, response())
                return

    def body(self, body: dict[str, Any], response: Response) -> None:
        if self.on_response is not None and isinstance(body.get("id"), str):
            self.on_response(body["id"], self.conversation, response)
            self.on_response = None


def finished_response(data: dict[str, Any] | str) -> dict[str, Any] | None:
    """The Response object a finished Responses stream event carries (None for every other event)."""
    if not isinstance(data, dict) or data.get("type") not in RESPONSES_FINISHED:
        return None
    response = data.get("response")
    return response if isinstance(response, dict) else None


def decode_whole(exchange: Exchange, content: bytes, upstream_ir: Request) -> Response:
    """A whole (non-streamed) upstream answer as an IR response."""
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise upstream_error(exchange, 502, content, None) from exc
    decoded = codec_for(exchange.upstream_route.upstream.format).response.decode_response(body, request=upstream_ir)
    _note(exchange, decoded.warnings)
    return decoded.value  # type: ignore[no-any-return]


def replayed_events(exchange: Exchange, response: Response, client: ClientContext) -> list[WireEvent]:
    """A whole answer as the stream of client events a streaming client expects."""
    encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(client)
    events: list[WireEvent] = [wire for event in response_events(response) for wire in encoder.feed(event)]
    events += encoder.finish()
    _note(exchange, encoder.warnings)
    return events


async def _relay_translated_whole(
    exchange: Exchange, response: httpx.Response, upstream_ir: Request, client: ClientContext, recorder: _Recorder
) -> None:
    content = await read_body(exchange, response)
    decoded = decode_whole(exchange, content, upstream_ir)
    Meter(exchange).whole(decoded)
    if client.request.stream:
        # The upstream answered a stream request in one piece: replay it as the stream the client expects.
        events = replayed_events(exchange, decoded, client)
        recorder.wire(events, lambda: decoded)
        exchange.response_started = True
        headers = SSE_EXTRA_HEADERS + relayed_headers(exchange, response)
        await send_bytes(exchange.send, 200, b"".join(wire.sse() for wire in events), SSE_CONTENT_TYPE, headers)
        return
    encoded = codec_for(exchange.endpoint.dialect).response.encode_response(decoded, client)
    _note(exchange, encoded.warnings)
    if encoded.value.get("status") in ("completed", "incomplete"):
        recorder.body(encoded.value, decoded)
    exchange.response_started = True
    await send_json(exchange.send, 200, encoded.value, relayed_headers(exchange, response))


class TranslatedStream:
    """An upstream event stream turned into the client's events, batch by batch as the upstream's bytes
    arrive; `response()` is the answer so far as an IR response."""

    def __init__(self, exchange: Exchange, upstream_ir: Request, client: ClientContext) -> None:
        self._exchange = exchange
        self._parser = SSEParser()
        self._decoder = codec_for(exchange.upstream_route.upstream.format).stream.StreamDecoder(upstream_ir)
        self._encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(client)
        self._builder = ResponseBuilder()
        self._meter = Meter(exchange)

    def response(self) -> Response:
        return self._builder.response()

    def _encode(self, ir_events: Sequence[Any]) -> list[WireEvent]:
        out: list[WireEvent] = []
        # An upstream's mid-stream error may echo its credential: redacted before the ledger or client sees it.
        ir_events = [
            StreamError(redacted(self._exchange, e.error)) if isinstance(e, StreamError) else e for e in ir_events
        ]
        self._meter.observe(ir_events)
        for ir_event in ir_events:
            self._builder.feed(ir_event)
            out += self._encoder.feed(ir_event)
        return out

    async def batches(self, response: httpx.Response) -> AsyncIterator[list[WireEvent]]:
        """One list of client events per chunk of upstream bytes (often empty), then the tail."""
        try:
            async for chunk in response.aiter_bytes():
                yield self._encode([ir for event in self._parser.feed(chunk) for ir in self._decoder.feed(event)])
            tail = [ir for event in self._parser.flush() for ir in self._decoder.feed(event)] + self._decoder.finish()
        except httpx.HTTPError as exc:
            tail = [StreamError(broken_stream_error(self._exchange, exc))]
        yield self._encode(tail) + self._encoder.finish()
        _note(self._exchange, self._decoder.warnings)
        _note(self._exchange, self._encoder.warnings)


async def _relay_translated_stream(
    exchange: Exchange, response: httpx.Response, upstream_ir: Request, client: ClientContext, recorder: _Recorder
) -> None:
    send = exchange.send
    translated = TranslatedStream(exchange, upstream_ir, client)
    headers = SSE_HEADERS + relayed_headers(exchange, response)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    exchange.response_started = True
    async for events in translated.batches(response):
        if events:
            recorder.wire(events, translated.response)
            await send({"type": "http.response.body", "body": b"".join(w.sse() for w in events), "more_body": True})
    await send({"type": "http.response.body", "body": b""})
