"""Responses over WebSocket (`GET /v1/responses` upgraded; Codex's `supports_websockets`), protocols.md §5b.

Each `{"type": "response.create", …}` text frame is answered with the same events the SSE transport sends,
one JSON object per text frame, whatever the upstream's API:

- a Responses upstream gets the request over HTTP with `stream: true` and its events are relayed as they
  come (only `model` is rewritten);
- any other upstream gets the request translated, and its stream comes back through the Responses stream
  encoder.

Each frame is an exchange of the one pipeline (routing.dataplane.pipeline) with a `WebSocketSink`: the same
resolve, admission, plan, relay and ledger row as over HTTP.

`generate: false` (Codex's warm-up) is answered at once with `response.created` … `response.completed` and an
empty output, without an upstream call. Later frames name the previous response in `previous_response_id`
and carry only the new input items, with `store: false`: the connection keeps every response's conversation
(`routing.dataplane.conversations.ConnectionHistory`) and puts it in front of the new input, for every
upstream — a Responses upstream included, since with `store: false` it has nothing stored either. An id
this connection does not know is looked up in the key's store (responses created over HTTP, or over
another connection, without `store: false`), else goes to a Responses upstream unchanged (it may have
stored it) and is refused for others. The history is forgotten when the connection closes.

Frames with the same `stream_id` (or none) are served one after another, in the order they came; frames
of different `stream_id` lanes run concurrently, each event tagged with its lane's `stream_id`. Errors (bad JSON,
unknown model, an upstream error) are `error` events in the WebSocket shape and the connection stays
open; after the `error` event, a key that stops being valid closes it with 4008, an oversized frame with
4009, a proxy bug with 4011 (the application range of RFC 6455 mirroring 1008/1009/1011, which servers may
not send: daphne's WebSocket library refuses them). An upgrade without a valid key is refused (HTTP 403), so
Codex falls back to HTTP and reports the 401 it gets there. A client that goes away cancels the upstream
request it was waiting for.

Memory per connection is bounded: frames waiting in the lanes (WEBSOCKET_MAX_QUEUED_BYTES: a frame beyond it
is answered with an `error` event instead of being queued) and the conversation history
(WEBSOCKET_HISTORY_MAX_BYTES: the oldest responses are forgotten first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from routing.dataplane import pipeline
from routing.dataplane.asgi_io import ClientDisconnected, Message, Receive, Request, Scope, Send
from routing.dataplane.codecs import codec_for
from routing.dataplane.conversations import ConnectionHistory, continuation
from routing.dataplane.endpoints import Endpoint
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.http import NO_CHANNEL_LAYER
from routing.dataplane.plan import decode_client_request
from routing.dataplane.sinks import WebSocketSink
from routing.runtime.live import live_config
from translation.codec import ClientContext, WireEvent
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.ir import ResponseStart, ResponseStop, StopReason, Usage
from translation.operation import Operation

logger = logging.getLogger(__name__)

# URLRouter matches paths without their leading slash.
PATHS = r"^(?:v1/responses|openai/v1/responses|openai/responses)$"
# The same under an operator-defined prefix (routing.dataplane.prefixes checks that it is one).
PREFIXED_PATHS = r"^.+?/(?:v1/responses|openai/v1/responses|openai/responses)$"
# Fields of a `response.create` frame that are about the WebSocket, not the response.
WS_ONLY_FIELDS = ("type", "generate", "stream_id")
ENDPOINT = Endpoint(Dialect.OPENAI_RESPONSES, Operation.GENERATE)

# Close codes: RFC 6455's 1008/1009/1011 moved into the application range (4000-4999), which servers may send.
CLOSE_POLICY_VIOLATION = 4008
CLOSE_TOO_BIG = 4009
CLOSE_INTERNAL_ERROR = 4011


async def _nothing_to_receive() -> Message:
    raise RuntimeError("a WebSocket exchange reads frames through its consumer")


@dataclass(frozen=True, slots=True)
class _Frame:
    payload: dict[str, Any] | None
    error: ExchangeError | None  # why the frame cannot be served (answered as an error event)
    stream_id: str | None
    size: int = 0  # bytes of the text frame, counted against WEBSOCKET_MAX_QUEUED_BYTES while it waits


def _queue_full() -> ExchangeError:
    limit = settings.WEBSOCKET_MAX_QUEUED_BYTES
    message = f"Too many messages waiting on this connection (over {limit} bytes): wait for the running responses"
    return ExchangeError(ApiError(ErrorKind.RATE_LIMITED, message))


def _read_frame(text: str) -> _Frame:
    if len(text) > settings.MAX_REQUEST_BYTES:
        limit = settings.MAX_REQUEST_BYTES
        return _Frame(
            None, ExchangeError(ApiError(ErrorKind.REQUEST_TOO_LARGE, f"Message exceeds {limit} bytes")), None
        )
    try:
        payload = pipeline.parse_body(text, "Message")
    except ExchangeError as exc:
        return _Frame(None, exc, None)
    stream_id = payload.get("stream_id") if isinstance(payload.get("stream_id"), str) else None
    kind = payload.get("type")
    if kind != "response.create":
        message = f"Unsupported message type {kind!r}: this proxy serves response.create"
        return _Frame(None, ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, message, param="type")), stream_id)
    return _Frame(payload, None, stream_id, len(text))


def _close_code(failure: ApiError | None, frame: _Frame, exchange: Exchange) -> int | None:
    """Failures after which the connection cannot go on."""
    if failure is None:
        return None
    if failure is pipeline.INTERNAL_ERROR:
        return CLOSE_INTERNAL_ERROR
    if failure.kind is ErrorKind.AUTHENTICATION and exchange.route is None:
        return CLOSE_POLICY_VIOLATION  # the key was good at the upgrade and is not any more: nothing will work
    if frame.error is not None and failure is frame.error.error and failure.kind is ErrorKind.REQUEST_TOO_LARGE:
        return CLOSE_TOO_BIG
    return None


class ResponsesConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """One client connection: authenticates the upgrade, then serves `response.create` frames, one lane per
    `stream_id`."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def dispatch(self, message: Message) -> None:
        """`AsyncConsumer.dispatch` without `aclose_old_connections` (a thread hop per frame)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.history = ConnectionHistory(max_bytes=settings.WEBSOCKET_HISTORY_MAX_BYTES)
        self._queued_bytes = 0
        self._lanes: dict[str | None, asyncio.Queue[_Frame]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self.request = Request.from_scope({**self.scope, "method": "GET"}, _nothing_to_receive)
        # Forwarded to a Responses upstream over HTTP, the WebSocket beta would mean nothing.
        if "responses_websockets" in self.request.headers.get("openai-beta", ""):
            self.request.headers.pop("openai-beta")
        await live_config.ensure_started()
        snapshot = live_config.snapshot
        presented = pipeline.presented_key(self.request)
        valid = presented is not None and snapshot.authenticate(presented, datetime.now(UTC)) is not None
        forwards = presented is not None and any(u.forward_client_key for u in snapshot.upstreams.values())
        if not (valid or forwards):
            # Refusing the upgrade (HTTP 403) is what Codex handles: it falls back to HTTP, where the 401
            # says what is wrong with the key.
            await self.close()
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        workers = list(getattr(self, "_workers", ()))
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        if hasattr(self, "history"):
            self.history.clear()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            text_data = (bytes_data or b"").decode("utf-8", "replace")
        frame = _read_frame(text_data)
        if frame.size and self._queued_bytes + frame.size > settings.WEBSOCKET_MAX_QUEUED_BYTES:
            # Answered at once, not after the frames it would have waited behind.
            self._start(self._serve_frame(_Frame(None, _queue_full(), frame.stream_id)))
            return
        self._queued_bytes += frame.size
        lane = self._lanes.get(frame.stream_id)
        if lane is None:
            lane = self._lanes[frame.stream_id] = asyncio.Queue()
            self._start(self._serve_lane(lane))
        lane.put_nowait(frame)

    def _start(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` alongside the connection; cancelled when it closes."""
        task = asyncio.ensure_future(work)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _send_text(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # daphne raises its WebSocket library's own error for a closed connection
            raise ClientDisconnected from exc

    # -- one lane: its frames one at a time ------------------------------------------------------------------

    async def _serve_lane(self, lane: asyncio.Queue[_Frame]) -> None:
        while True:
            frame = await lane.get()
            try:
                close_code = await self._serve_frame(frame)
            finally:
                self._queued_bytes -= frame.size
            if close_code is not None:
                with contextlib.suppress(Exception):
                    await self.close(code=close_code)
                return

    async def _serve_frame(self, frame: _Frame) -> int | None:
        """One `response.create` as an exchange of the pipeline; returns a close code when the connection
        must end. The warm-up (`generate: false`, no upstream call) is not a ledger row."""
        exchange = Exchange(self.request, ENDPOINT, WebSocketSink(self._send_text, frame.stream_id))
        exchange.client_body = frame.payload
        exchange.record.endpoint = f"ws:{self.request.full_path}"
        exchange.record.stream = True
        warm_up = frame.payload is not None and frame.payload.get("generate") is False
        exchange.metered = not warm_up

        async def work() -> None:
            if frame.error is not None:
                raise frame.error
            assert frame.payload is not None
            payload = {k: v for k, v in frame.payload.items() if k not in WS_ONLY_FIELDS}
            payload["stream"] = True
            snapshot = live_config.snapshot
            if warm_up:
                await self._warm_up(exchange, snapshot, payload)
            else:
                await pipeline.forward(exchange, snapshot, payload, connection=self.history)

        failure = await pipeline.serve(exchange, work)
        if exchange.warnings:
            logger.info("translation warnings: %s", ", ".join(dict.fromkeys(exchange.warnings)))
        return _close_code(failure, frame, exchange)

    async def _warm_up(self, exchange: Exchange, snapshot: Any, payload: dict[str, Any]) -> None:
        """`generate: false`: an empty completed response whose id can be continued; no upstream call."""
        pipeline.authorize_route(exchange, snapshot, payload)
        history, recorder = await continuation(exchange, payload, self.history)
        client_request = decode_client_request(exchange, payload)
        created = int(time.time())
        encoder = codec_for(Dialect.OPENAI_RESPONSES).stream.StreamEncoder(ClientContext(client_request, created))
        response_id = f"resp_{uuid.uuid4().hex}"
        events: list[WireEvent] = encoder.feed(ResponseStart(response_id, client_request.model, None, created))
        events += encoder.feed(ResponseStop(StopReason.END_TURN, Usage(input_tokens=0, output_tokens=0)))
        if recorder is not None:
            recorder.conversation = (*(history or ()), *client_request.messages)
            recorder.events(events, lambda _body: None)
        await exchange.sink.events(events)


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """Any other WebSocket path: refuse the upgrade (HTTP 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
