"""The one relay: call the upstream a `Plan` describes and deliver its answer through the exchange's sink.

Same API on both sides: status, body and stream go back as the upstream sent them (a sink that carries only
events, the WebSocket, gets them parsed). Different APIs: the upstream's codec decodes, the client's encodes,
a stream one upstream event at a time. The ledger learns usage from the upstream's own report either way
(routing.dataplane.metering), always after the bytes went to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from routing.dataplane.codecs import codec_for
from routing.dataplane.conversations import Recorder
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.metering import Meter, StreamTap, whole_body_usage
from routing.dataplane.plan import Plan, note
from routing.dataplane.upstream_call import (
    broken_stream_error,
    event_parser,
    is_event_stream,
    open_upstream,
    read_body,
    redacted,
    redacted_stream_chunk,
    reframed,
    relayed_headers,
    too_large_error,
    unreadable_error,
    upstream_chunks,
    upstream_error,
    upstream_secrets,
)
from translation.bedrock.eventstream import EventStreamError
from translation.codec import ClientContext, WireEvent
from translation.errors import ApiError, status_for
from translation.ir import Request, Response, ResponseStop, StreamError
from translation.openai_chat.wire import is_usage_only_chunk
from translation.operation import Operation
from translation.redaction import redact_json_body
from translation.sse import EventTooLarge, SSEEvent, encode_event
from translation.streaming import GuardedDecoder, ResponseBuilder, response_events

logger = logging.getLogger(__name__)

# How long a translated stream's upstream may take to end its body once the answer is complete (seconds). The
# client already has its answer, so waiting costs only the ledger row's timing; a second proved too short on a
# loaded machine, where the connection was then closed instead of going back to the pool.
UPSTREAM_DRAIN_SECONDS = 5.0


async def relay(
    exchange: Exchange, plan: Plan, recorder: Recorder | None = None, response: httpx.Response | None = None
) -> None:
    """`response`: the upstream's answer, when the caller already sent the request (routing.dataplane.failover
    looks at the status before anything goes to the client)."""
    exchange.record.stream = plan.stream
    if recorder is not None:
        recorder.conversation = plan.conversation
    if response is None:
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
    error = upstream_error(exchange, status, content, response.headers)
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
        raise upstream_error(exchange, 502, content)
    try:
        decoded = codec_for(exchange.upstream_route.wire).response.decode_response(body, request=upstream_ir)
    except Exception as exc:
        # Valid JSON of the wrong shape ({"choices": "notalist"}): the upstream's fault, a 502, not a proxy bug.
        logger.warning("an upstream answer could not be decoded", exc_info=True)
        raise ExchangeError(unreadable_error(exchange, exc), from_upstream=True) from exc
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
    tap: StreamTap | None = StreamTap(exchange, meter)
    await sink.open_stream(relayed_headers(exchange, response))
    # Raw bytes go on untouched unless something must read the events first: a sink that carries only
    # events, a usage chunk to hide, or a conversation to remember.
    parse_first = sink.events_only or plan.hide_usage_chunk or recorder is not None or reframed(exchange)
    try:
        async for chunk in upstream_chunks(exchange, response):
            chunk = redacted_stream_chunk(exchange, chunk)  # an echoed key in an error event
            if not parse_first:
                await sink.chunk(chunk)
                if tap is not None:
                    tap = _tapped(exchange, tap, chunk)  # after the send: the client never waits for the ledger
                continue
            assert tap is not None
            try:
                events = tap.parse(chunk)
            except EventTooLarge as exc:
                # The events are re-encoded one by one here, so the client's stream ends cleanly after the
                # complete ones, with the dialect's error event.
                await _send_parsed(exchange, plan, exc.events, recorder)
                tap.decode(exc.events)
                await _fail_stream(exchange, _event_too_large(exchange, exc))
                return
            except EventStreamError as exc:  # damaged framing: what came before it is delivered, then the error
                await _send_parsed(exchange, plan, exc.events, recorder)
                tap.decode(exc.events)
                await _fail_stream(exchange, unreadable_error(exchange, exc))
                return
            await _send_parsed(exchange, plan, events, recorder)
            tap.decode(events)  # once sent: a client that leaves after the last event got it all
    except httpx.HTTPError as exc:
        await _fail_stream(exchange, broken_stream_error(exchange, exc))
        return
    last = tap.finish() if tap is not None else []
    if parse_first:
        await _send_parsed(exchange, plan, last, recorder)
    elif last:
        await sink.chunk(_reencoded(last))
    await sink.close_stream()


def _tapped(exchange: Exchange, tap: StreamTap, chunk: bytes) -> StreamTap | None:
    """Feed the ledger's copy of a raw relayed stream. An event over UPSTREAM_MAX_EVENT_BYTES is not the
    proxy's to refuse here: its bytes went on as they came (the client would get the same from the upstream
    directly) and the proxy holds none of it, so only the ledger's copy stops, its usage marked partial."""
    try:
        tap.feed(chunk)
    except EventTooLarge as exc:
        tap.decode(exc.events)
        exchange.record.usage_partial = True
        logger.warning("%s; the stream is relayed without reading its usage", _event_too_large(exchange, exc).message)
        return None
    return tap


def _event_too_large(exchange: Exchange, exc: EventTooLarge) -> ApiError:
    return too_large_error(exchange, "a stream event", exc.limit, "UPSTREAM_MAX_EVENT_BYTES")


async def _fail_stream(exchange: Exchange, error: ApiError) -> None:
    """A same-API stream the upstream broke: the ledger says so (with the usage seen so far), the client gets
    its dialect's stream error event and the end of the stream."""
    exchange.record.failed(error, status_for(exchange.endpoint.dialect, error), from_upstream=True, partial=True)
    await exchange.sink.fail(error)


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
    # The event names go along: Bedrock's event-stream framing carries each event's type beside its JSON.
    wires = [WireEvent(data, event.event) for event in events if (data := _event_json(event)) is not None]
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
    arrive; `response()` is the answer so far as an IR response.

    Whatever the upstream sends that cannot be read — an event the decoder chokes on, an event over
    UPSTREAM_MAX_EVENT_BYTES, a broken connection — ends the stream with a StreamError: the client gets its
    dialect's stream error event after the events decoded before it, the ledger a failure with the partial
    usage, and the upstream is not waited for any longer."""

    def __init__(self, exchange: Exchange, plan: Plan) -> None:
        assert plan.upstream_ir is not None, "a translated answer comes from a request encoded for the upstream"
        self._exchange = exchange
        self._parser = event_parser(exchange)
        upstream = exchange.upstream_route.upstream
        decoder = codec_for(exchange.upstream_route.wire).stream.StreamDecoder(plan.upstream_ir)
        self._decoder = GuardedDecoder(decoder, source=f"Upstream {upstream.name}")
        self._encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(_client_context(exchange, plan))
        self._builder = ResponseBuilder()
        self._meter = Meter(exchange)
        self._complete = False  # the answer's stop event was decoded
        self._chunks: AsyncIterator[bytes] | None = None

    def response(self) -> Response:
        return self._builder.response()

    def _encode(self, ir_events: Sequence[Any]) -> list[WireEvent]:
        out: list[WireEvent] = []
        # An upstream's mid-stream error may echo its credential: redacted before the ledger or client sees it.
        ir_events = [
            StreamError(redacted(self._exchange, e.error)) if isinstance(e, StreamError) else e for e in ir_events
        ]
        self._meter.observe(ir_events)
        self._complete = self._complete or any(isinstance(e, ResponseStop) for e in ir_events)
        for ir_event in ir_events:
            self._builder.feed(ir_event)
            out += self._encoder.feed(ir_event)
        return out

    def _read(self, chunk: bytes | None) -> list[Any]:
        """The IR events of a chunk of upstream bytes (None: the end of the upstream's body)."""
        try:
            events = self._parser.feed(chunk) if chunk is not None else self._parser.flush()
        except EventTooLarge as exc:
            ir = [ir for event in exc.events for ir in self._decoder.feed(event)]
            return ir + self._decoder.end_with(_event_too_large(self._exchange, exc))
        except EventStreamError as exc:  # damaged framing: the stream cannot be read past it
            ir = [ir for event in exc.events for ir in self._decoder.feed(event)]
            return ir + self._decoder.end_with(unreadable_error(self._exchange, exc))
        ir = [ir for event in events for ir in self._decoder.feed(event)]
        return ir + self._decoder.finish() if chunk is None else ir

    async def batches(self, response: httpx.Response) -> AsyncIterator[list[WireEvent]]:
        """One list of client events per chunk of upstream bytes (often empty), then the tail. Ends as soon as
        the client's stream is complete (a stop or an error decoded): an upstream that then neither closes
        nor sends is not waited for (`drain` reads what follows, briefly)."""
        tail: list[Any] = []
        self._chunks = upstream_chunks(self._exchange, response)
        try:
            async for chunk in self._chunks:
                yield self._encode(self._read(chunk))
                if self._decoder.ended or self._complete:
                    break
            else:
                tail = self._read(None)
        except httpx.HTTPError as exc:
            tail = self._decoder.end_with(broken_stream_error(self._exchange, exc))
        yield self._encode(tail) + self._encoder.finish()
        if self._decoder.failure is not None:
            logger.warning("an upstream stream could not be read", exc_info=self._decoder.failure)
        note(self._exchange, self._decoder.warnings)
        note(self._exchange, self._encoder.warnings)

    async def drain(self) -> None:
        """After a complete answer, read and drop what the upstream still sends (Chat's `[DONE]`, the end of
        its chunked body), so its connection can serve another request; an upstream that neither ends nor
        sends within UPSTREAM_DRAIN_SECONDS is left, and the relay closes its connection."""
        if not self._complete or self._chunks is None:
            return
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(UPSTREAM_DRAIN_SECONDS):
                async for _ in self._chunks:
                    pass


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
    await translated.drain()  # the client already has its whole answer
