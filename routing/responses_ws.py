"""Responses over WebSocket (`GET /v1/responses` upgraded; Codex's `supports_websockets`), protocols.md §5b.

Each `{"type": "response.create", …}` text frame is answered with the same events the SSE transport sends,
one JSON object per text frame, whatever the upstream's API:

- a Responses upstream gets the request over HTTP with `stream: true` and its events are relayed as they
  come (only `model` is rewritten);
- any other upstream gets the request translated (`routing.translated`), and its stream comes back through
  the Responses stream encoder.

`generate: false` (Codex's warm-up) is answered at once with `response.created` … `response.completed` and an
empty output, without an upstream call. Later frames name the previous response in `previous_response_id`
and carry only the new input items, with `store: false`: the connection keeps every response's conversation
(`routing.conversations.ConnectionHistory`) and puts it in front of the new input, for every upstream —
a Responses upstream included, since with `store: false` it has nothing stored either. An id this
connection does not know goes to a Responses upstream unchanged (it may have stored it) and is refused
for others. The history is forgotten when the connection closes.

Responses on one connection run one after another, in the order their frames came. Errors (bad JSON,
unknown model, an upstream error) are `error` events in the WebSocket shape and the connection stays
open; a key that stops being valid closes it with 1008, an oversized frame with 1009, a proxy bug with
1011. An upgrade without a valid key is refused (HTTP 403), so Codex falls back to HTTP and reports the
401 it gets there. A client that goes away cancels the upstream request it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings

from routing.asgi_io import Message, Receive, Request, Scope, Send
from routing.codecs import codec_for
from routing.context import Exchange, ExchangeError
from routing.conversations import ConnectionHistory, not_found
from routing.endpoints import Action, Endpoint
from routing.exchange import authorize_route, presented_key
from routing.limits import admit
from routing.live import live_config
from routing.metering import Meter, StreamTap
from routing.relay import (
    broken_stream_error,
    build_upstream_request,
    is_event_stream,
    open_upstream,
    read_body,
    redacted_stream_chunk,
    upstream_error,
)
from routing.translated import (
    TranslatedStream,
    decode_whole,
    finished_response,
    prepare_translated,
    replayed_events,
)
from routing.upstream import Operation
from translation.codec import ClientContext, WireEvent
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, error_body, status_for
from translation.ir import Message as IRMessage
from translation.ir import Request as IRRequest
from translation.ir import Response, ResponseStart, ResponseStop, StopReason, Usage
from usage import ledger
from usage.live import WS_PATH as LIVE_WS_PATH
from usage.live import LiveConsumer

logger = logging.getLogger(__name__)

PATHS = frozenset({"/v1/responses", "/openai/v1/responses", "/openai/responses"})
# Fields of a `response.create` frame that are about the WebSocket, not the response.
WS_ONLY_FIELDS = ("type", "generate", "stream_id")
ENDPOINT = Endpoint(Dialect.OPENAI_RESPONSES, Action.GENERATE)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


class _ClientGone(Exception):
    """The client closed the connection while a response was being sent."""


class _Fatal(Exception):
    """Report `error` and close the connection with `code`."""

    def __init__(self, error: ApiError, code: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.code = code


async def _no_http_send(message: Message) -> None:
    raise RuntimeError("a WebSocket exchange sends frames, not HTTP messages")


async def _nothing_to_receive() -> Message:
    raise RuntimeError("a WebSocket exchange reads frames through its consumer")


def ws_error_event(error: ApiError) -> dict[str, Any]:
    """The WebSocket `error` event (protocols.md §3.4): the HTTP status and the OpenAI error object."""
    body = error_body(Dialect.OPENAI_RESPONSES, error)["error"]
    return {"type": "error", "status": status_for(Dialect.OPENAI_RESPONSES, error), "error": body}


def _ws_shaped(data: dict[str, Any]) -> dict[str, Any]:
    """An SSE-style `error` event (code/message/param at the top) in the WebSocket shape the SDK parses."""
    if data.get("type") != "error" or isinstance(data.get("error"), dict):
        return data
    code = data.get("code")
    error = {"type": "server_error", "code": code, "message": data.get("message") or "", "param": data.get("param")}
    shaped: dict[str, Any] = {"type": "error", "error": error}
    if "sequence_number" in data:
        shaped["sequence_number"] = data["sequence_number"]
    return shaped


class ResponsesConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """One client connection: authenticates the upgrade, then serves `response.create` frames in order."""

    async def connect(self) -> None:
        self.history = ConnectionHistory()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        scope = self.scope
        self.request = Request.from_scope({**scope, "method": "GET"}, _nothing_to_receive)
        # Forwarded to a Responses upstream over HTTP, the WebSocket beta would mean nothing.
        if "responses_websockets" in self.request.headers.get("openai-beta", ""):
            self.request.headers.pop("openai-beta")
        await live_config.ensure_started()
        snapshot = live_config.snapshot
        presented = presented_key(self.request)
        valid = presented is not None and snapshot.authenticate(presented, datetime.now(UTC)) is not None
        forwards = presented is not None and any(u.forward_client_key for u in snapshot.upstreams.values())
        if not (valid or forwards):
            # Refusing the upgrade (HTTP 403) is what Codex handles: it falls back to HTTP, where the 401
            # says what is wrong with the key.
            await self.close()
            return
        await self.accept()
        self._worker = asyncio.ensure_future(self._serve())

    async def disconnect(self, code: int) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        self.history.clear()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            text_data = (bytes_data or b"").decode("utf-8", "replace")
        self._queue.put_nowait(text_data)

    # -- one frame at a time ---------------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                if not await self._serve_frame(frame):
                    return
            except _ClientGone:  # while reporting an error: nobody is left to tell
                return

    async def _serve_frame(self, frame: str) -> bool:
        """One `response.create`, recorded in the ledger (the warm-up, which calls no upstream, is not).
        Returns False once the connection has been closed."""
        exchange = Exchange(self.request, ENDPOINT, _no_http_send)
        record = exchange.record
        record.endpoint = f"ws:{self.request.path}"
        record.stream = True
        stream_id: str | None = None
        metered = True
        try:
            payload = self._parse(frame)
            stream_id = payload.get("stream_id") if isinstance(payload.get("stream_id"), str) else None
            metered = payload.get("generate") is not False
            if metered:
                ledger.begin_exchange(record)
            await self._create(exchange, payload, stream_id)
        except ExchangeError as exc:
            record.failed(exc.error, ws_error_event(exc.error)["status"], from_upstream=exc.from_upstream)
            await self._send(ws_error_event(exc.error), stream_id)
        except _Fatal as exc:
            record.failed(exc.error, ws_error_event(exc.error)["status"], from_upstream=False)
            await self._send(ws_error_event(exc.error), stream_id)
            await self.close(code=exc.code)
            return False
        except asyncio.CancelledError:
            record.cancelled()
            raise
        except _ClientGone:
            record.cancelled()
            return False
        except Exception:
            logger.exception("unexpected failure on a Responses WebSocket")
            error = ApiError(ErrorKind.UPSTREAM_ERROR, "Internal proxy error", status=500)
            record.failed(error, 500, from_upstream=False)
            await self._send(ws_error_event(error), stream_id)
            await self.close(code=CLOSE_INTERNAL_ERROR)
            return False
        finally:
            if metered:
                ledger.record_exchange(record)
            if exchange.admission is not None:
                exchange.admission.finish(record.usage)
        return True

    def _parse(self, frame: str) -> dict[str, Any]:
        if len(frame) > settings.MAX_REQUEST_BYTES:
            limit = settings.MAX_REQUEST_BYTES
            raise _Fatal(ApiError(ErrorKind.REQUEST_TOO_LARGE, f"Message exceeds {limit} bytes"), CLOSE_TOO_BIG)
        try:
            payload = json.loads(frame)
        except ValueError as exc:
            raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, f"Message is not valid JSON: {exc}")) from exc
        if not isinstance(payload, dict):
            raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, "Message must be a JSON object"))
        kind = payload.get("type")
        if kind != "response.create":
            message = f"Unsupported message type {kind!r}: this proxy serves response.create"
            raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, message, param="type"))
        return payload

    async def _send(self, data: dict[str, Any] | str, stream_id: str | None) -> None:
        if isinstance(data, dict):
            data = _ws_shaped(data)
            if stream_id is not None:
                data = {**data, "stream_id": stream_id}
        try:
            await self.send(text_data=data if isinstance(data, str) else json.dumps(data))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # daphne raises its WebSocket library's own error for a closed connection
            raise _ClientGone from exc

    async def _send_events(self, events: list[WireEvent], stream_id: str | None) -> None:
        for wire in events:
            await self._send(wire.data, stream_id)

    # -- response.create -------------------------------------------------------------------------------------

    async def _create(self, exchange: Exchange, frame: dict[str, Any], stream_id: str | None) -> None:
        payload = {k: v for k, v in frame.items() if k not in WS_ONLY_FIELDS}
        payload["stream"] = True
        snapshot = live_config.snapshot
        try:
            route = authorize_route(exchange, snapshot, payload)
        except ExchangeError as exc:
            if exc.error.kind is ErrorKind.AUTHENTICATION:
                # The key was good at the upgrade and is not any more (revoked, expired): nothing else will work.
                raise _Fatal(exc.error, CLOSE_POLICY_VIOLATION) from exc
            raise
        responses_upstream = route.upstream.format is Dialect.OPENAI_RESPONSES

        history: tuple[IRMessage, ...] | None = None
        previous = payload.get("previous_response_id")
        if isinstance(previous, str) and previous:
            history = self.history.get(previous)
            if history is None and not responses_upstream:
                raise ExchangeError(not_found(previous))

        if frame.get("generate") is False:
            await self._warm_up(exchange, payload, history or (), stream_id)
            return
        await admit(exchange, stream=True)  # budgets and rate limits: every frame is a stream
        if responses_upstream and history is None and not route.shaping.rewrites_requests:
            client_request = self._decode(payload)
            conversation = client_request.messages
            upstream_ir = client_request
            body = {**payload, "model": route.upstream_model}
            upstream_request = build_upstream_request(exchange, Operation.GENERATE, body, True)
        else:
            prepared = prepare_translated(exchange, payload, history or ())
            client_request, conversation = prepared.client_request, prepared.conversation
            upstream_ir, upstream_request = prepared.upstream_ir, prepared.request
        client = ClientContext(request=client_request, created=int(time.time()))

        response = await open_upstream(exchange, upstream_request)
        meter = Meter(exchange)
        meter.response_headers(response)
        try:
            if response.status_code >= 400:
                content = await read_body(exchange, response)
                raise upstream_error(exchange, response.status_code, content, response.headers.get("retry-after"))
            if not is_event_stream(response):
                decoded = decode_whole(exchange, await read_body(exchange, response), upstream_ir)
                meter.whole(decoded)
                events = replayed_events(exchange, decoded, client)
                self._remember(events, conversation, lambda _body: decoded)
                await self._send_events(events, stream_id)
            elif responses_upstream:
                await self._relay_events(exchange, response, conversation, stream_id, StreamTap(exchange, meter))
            else:
                translated = TranslatedStream(exchange, upstream_ir, client)
                async for events in translated.batches(response):
                    self._remember(events, conversation, lambda _body: translated.response())
                    await self._send_events(events, stream_id)
        finally:
            await response.aclose()
        if exchange.warnings:
            logger.info("translation warnings: %s", ", ".join(dict.fromkeys(exchange.warnings)))

    @staticmethod
    def _decode(payload: dict[str, Any]) -> IRRequest:
        try:
            request: IRRequest = codec_for(Dialect.OPENAI_RESPONSES).request.decode_request(payload).value
        except Exception as exc:
            message = f"Request could not be read: {exc}"
            raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, message)) from exc
        return request

    def _remember(
        self,
        events: list[WireEvent],
        conversation: tuple[IRMessage, ...],
        answer: Any,
    ) -> None:
        """Keep the conversation for `previous_response_id` once a finished response goes by."""
        for wire in events:
            body = finished_response(wire.data)
            if body is not None and isinstance(body.get("id"), str):
                self.history.remember(body["id"], conversation, answer(body))

    async def _relay_events(
        self,
        exchange: Exchange,
        response: httpx.Response,
        conversation: tuple[IRMessage, ...],
        stream_id: str | None,
        tap: StreamTap,
    ) -> None:
        """A Responses upstream's events, one frame each, as they come (the tap reads them for the ledger)."""
        decode_response = codec_for(Dialect.OPENAI_RESPONSES).response.decode_response

        def answer(body: dict[str, Any]) -> Response:
            decoded: Response = decode_response(body).value
            return decoded

        try:
            async for chunk in response.aiter_bytes():
                for event in tap.parse(redacted_stream_chunk(exchange, chunk)):  # an echoed key in an error event
                    await self._relay_event(event.data, conversation, answer, stream_id)
                    tap.decode([event])  # once sent: a client that leaves after the last event got it all
            for event in tap.finish():
                await self._relay_event(event.data, conversation, answer, stream_id)
        except httpx.HTTPError as exc:
            error = broken_stream_error(exchange, exc)
            status = status_for(Dialect.OPENAI_RESPONSES, error)
            exchange.record.failed(error, status, from_upstream=True, partial=True)
            await self._send(ws_error_event(error), stream_id)

    async def _relay_event(
        self, data: str, conversation: tuple[IRMessage, ...], answer: Any, stream_id: str | None
    ) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return  # `[DONE]` or a keep-alive: nothing a WebSocket client expects
        if not isinstance(event, dict):
            return
        self._remember([WireEvent(event)], conversation, answer)
        await self._send(event, stream_id)

    async def _warm_up(
        self, exchange: Exchange, payload: dict[str, Any], history: tuple[IRMessage, ...], stream_id: str | None
    ) -> None:
        """`generate: false`: an empty completed response whose id can be continued; no upstream call."""
        client_request = self._decode(payload)
        created = int(time.time())
        client = ClientContext(request=client_request, created=created)
        encoder = codec_for(Dialect.OPENAI_RESPONSES).stream.StreamEncoder(client)
        response_id = f"resp_{uuid.uuid4().hex}"
        events: list[WireEvent] = encoder.feed(ResponseStart(response_id, client_request.model, None, created))
        events += encoder.feed(ResponseStop(StopReason.END_TURN, Usage(input_tokens=0, output_tokens=0)))
        self._remember(events, (*history, *client_request.messages), lambda _body: None)
        await self._send_events(events, stream_id)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """Any other WebSocket path: refuse the upgrade (HTTP 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})


_consumer = ResponsesConsumer.as_asgi()
# The staff live view (usage.live): a person's browser, so the Django session decides (staff only), and the
# Origin must be one of ALLOWED_HOSTS so another site's page cannot open it with a staff member's cookies.
_live_consumer = AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))


async def websocket_application(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application for the "websocket" protocol: Responses over WebSocket (key auth, no session),
    and the staff live view."""
    path = scope.get("path")
    if path in PATHS:
        await _consumer(scope, receive, send)
        return
    if path == LIVE_WS_PATH:
        await _live_consumer(scope, receive, send)
        return
    await _refuse(scope, receive, send)
