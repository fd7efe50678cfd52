"""The one relay: call the upstream a `Plan` describes and deliver its answer through the exchange's sink.

Same API on both sides: status, body and stream go back as the upstream sent them (a sink that carries only
events, the WebSocket, gets them parsed). Different APIs: the upstream's codec decodes, the client's encodes,
a stream one upstream event at a time. The ledger learns usage from the upstream's own report either way
(routing.dataplane.metering), always after the bytes went to the client.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from routing.dataplane.codecs import codec_for
from routing.dataplane.conversations import Recorder
from routing.dataplane.exchange import Exchange
from routing.dataplane.metering import Meter, StreamTap, whole_body_usage
from routing.dataplane.plan import Plan, note
from routing.dataplane.upstream_call import (
    broken_stream_error,
    is_event_stream,
    open_upstream,
    read_body,
    redacted,
    redacted_stream_chunk,
    relayed_headers,
    upstream_error,
    upstream_secrets,
)
from translation.codec import ClientContext, WireEvent
from translation.errors import status_for
from translation.ir import Request, Response, StreamError
from translation.openai_chat.wire import is_usage_only_chunk
from translation.operation import Operation
from translation.redaction import redact_json_body
from translation.sse import SSEEvent, SSEParser, encode_event
from translation.streaming import ResponseBuilder, response_events

logger = logging.getLogger(__name__)


async def relay(exchange: Exchange, plan: Plan, recorder: Recorder | None = None) -> None:
    exchange.record.stream = plan.stream
    if recorder is not None:
        recorder.conversation = plan.conversation
    response = await open_upstream(exchange, plan.request)
    meter = Meter(exchange)
    meter.response_headers(response)
    try:
        if response.status_code >= 400:
            await _relay_error(exchange, plan, response)
        elif not plan.stream or not is_event_stream(response):
            await _relay_whole(exchange, plan, response, meter, recorder)
        elif plan.translate_answer:
            await _relay_translated_stream(exchange, plan, response, recorder)
        else:
            await _relay_same_api_stream(exchange, plan, response, meter, recorder)
    finally:
        await response.aclose()


async def _relay_error(exchange: Exchange, plan: Plan, response: httpx.Response) -> None:
    content = await read_body(exchange, response)
    status = response.status_code
    error = upstream_error(exchange, status, content, response.headers.get("retry-after"))
    sink = exchange.sink
    if plan.translate_answer or sink.events_only or "json" not in response.headers.get("content-type", ""):
        # Another API's error, or one that is not JSON (an HTML page from a load balancer): wrapped into
        # the client's error envelope, with the same kind and status.
        raise error
    # Same API: relayed as the upstream wrote it, except for credentials it echoed (the JSON stays valid).
    content = redact_json_body(content, upstream_secrets(exchange))
    content_type = response.headers.get("content-type", "application/json").encode()
    await sink.whole(status, content, content_type, relayed_headers(exchange, response))
    exchange.record.failed(error.error, status, from_upstream=True)


async def _relay_whole(
    exchange: Exchange, plan: Plan, response: httpx.Response, meter: Meter, recorder: Recorder | None
) -> None:
    content = await read_body(exchange, response)
    sink = exchange.sink
    if not plan.translate_answer and not (plan.stream and sink.events_only):
        content_type = response.headers.get("content-type", "application/json").encode()
        await sink.whole(response.status_code, content, content_type, relayed_headers(exchange, response))
        if recorder is not None:
            with_body = _json_object(content)
            if with_body is not None:
                recorder.body(with_body, _decoded_or_none(exchange, with_body))
        if exchange.endpoint.operation is Operation.GENERATE:
            whole_body_usage(exchange, meter, content)
        return
    decoded = _decode_whole(exchange, content, plan.upstream_ir)
    meter.whole(decoded)
    client = _client_context(exchange, plan)
    if plan.stream:
        # The upstream answered a stream request in one piece: replayed as the stream the client expects.
        encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(client)
        events: list[WireEvent] = [wire for event in response_events(decoded) for wire in encoder.feed(event)]
        events += encoder.finish()
        note(exchange, encoder.warnings)
        if recorder is not None:
            recorder.events(events, lambda _body: decoded)
        await sink.open_stream(relayed_headers(exchange, response))  # after translating: its warnings included
        await sink.events(events)
        await sink.close_stream()
        return
    encoded = codec_for(exchange.endpoint.dialect).response.encode_response(decoded, client)
    note(exchange, encoded.warnings)
    if recorder is not None:
        recorder.body(encoded.value, decoded)
    await sink.json(200, encoded.value, relayed_headers(exchange, response))


def _client_context(exchange: Exchange, plan: Plan) -> ClientContext:
    assert plan.client_request is not None, "a translated answer comes from a decoded request"
    return ClientContext(request=plan.client_request, created=int(time.time()))


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _decode_whole(exchange: Exchange, content: bytes, upstream_ir: Request | None) -> Response:
    """A whole (non-streamed) upstream answer as an IR response."""
    body = _json_object(content)
    if body is None:
        raise upstream_error(exchange, 502, content, None)
    decoded = codec_for(exchange.upstream_route.upstream.format).response.decode_response(body, request=upstream_ir)
    note(exchange, decoded.warnings)
    return decoded.value


def _decoded_or_none(exchange: Exchange, body: dict[str, Any]) -> Response | None:
    """An upstream answer in the client's own API, as IR for a conversation store (None if unreadable)."""
    try:
        decoded: Response = codec_for(exchange.endpoint.dialect).response.decode_response(body).value
    except Exception:
        logger.warning("an answer could not be read for previous_response_id; not remembered", exc_info=True)
        return None
    return decoded


async def _relay_same_api_stream(
    exchange: Exchange, plan: Plan, response: httpx.Response, meter: Meter, recorder: Recorder | None
) -> None:
    sink = exchange.sink
    tap = StreamTap(exchange, meter)
    await sink.open_stream(relayed_headers(exchange, response))
    # Raw bytes go on untouched unless something must read the events first: a sink that carries only
    # events, a usage chunk to hide, or a conversation to remember.
    parse_first = sink.events_only or plan.hide_usage_chunk or recorder is not None
    try:
        async for chunk in response.aiter_bytes():
            chunk = redacted_stream_chunk(exchange, chunk)  # an echoed key in an error event
            if not parse_first:
                await sink.chunk(chunk)
                tap.feed(chunk)  # after the send: the client never waits for the ledger
                continue
            events = tap.parse(chunk)
            await _send_parsed(exchange, plan, events, recorder)
            tap.decode(events)  # once sent: a client that leaves after the last event got it all
    except httpx.HTTPError as exc:
        error = broken_stream_error(exchange, exc)
        exchange.record.failed(error, status_for(exchange.endpoint.dialect, error), from_upstream=True, partial=True)
        await sink.fail(error)
        return
    last = tap.finish()
    if parse_first:
        await _send_parsed(exchange, plan, last, recorder)
    elif last:
        await sink.chunk(_reencoded(last))
    await sink.close_stream()


async def _send_parsed(exchange: Exchange, plan: Plan, events: Sequence[SSEEvent], recorder: Recorder | None) -> None:
    sink = exchange.sink
    if plan.hide_usage_chunk:
        events = [e for e in events if not is_usage_only_chunk(e.data)]
    if not sink.events_only:
        if events:
            await sink.chunk(_reencoded(events))
        if recorder is not None:
            recorder.events([WireEvent(d) for d in map(_event_json, events) if d is not None], _answer(exchange))
        return
    wires = [WireEvent(data) for data in map(_event_json, events) if data is not None]
    if recorder is not None:
        recorder.events(wires, _answer(exchange))
    await sink.events(wires)


def _reencoded(events: Sequence[SSEEvent]) -> bytes:
    return b"".join(encode_event(e.data, e.event) for e in events)


def _event_json(event: SSEEvent) -> dict[str, Any] | None:
    """An SSE event's JSON object; None for `[DONE]` or a keep-alive, which a WebSocket client never expects."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _answer(exchange: Exchange) -> Any:
    return lambda body: _decoded_or_none(exchange, body)


class TranslatedStream:
    """An upstream event stream turned into the client's events, batch by batch as the upstream's bytes
    arrive; `response()` is the answer so far as an IR response."""

    def __init__(self, exchange: Exchange, plan: Plan) -> None:
        assert plan.upstream_ir is not None, "a translated answer comes from a request encoded for the upstream"
        self._exchange = exchange
        self._parser = SSEParser()
        self._decoder = codec_for(exchange.upstream_route.upstream.format).stream.StreamDecoder(plan.upstream_ir)
        self._encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(_client_context(exchange, plan))
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
        note(self._exchange, self._decoder.warnings)
        note(self._exchange, self._encoder.warnings)


async def _relay_translated_stream(
    exchange: Exchange, plan: Plan, response: httpx.Response, recorder: Recorder | None
) -> None:
    sink = exchange.sink
    translated = TranslatedStream(exchange, plan)
    await sink.open_stream(relayed_headers(exchange, response))
    async for events in translated.batches(response):
        if events:
            if recorder is not None:
                recorder.events(events, lambda _body: translated.response())
            await sink.events(events)
    await sink.close_stream()
