"""HTTP for the data plane: a Channels `AsyncHttpConsumer` per request, mounted by `llmproxy_site.asgi`'s
`URLRouter`, plus the probes and `/metrics` as plain ASGI callables.

The consumer keeps what a bare ASGI function had and Channels' generic one does not:
- no channel layer (the data plane never joins a group; a configured layer would cost a channel per request);
- no thread hop per message: `AsyncConsumer.dispatch` closes stale ORM connections through `sync_to_async`
  before every message, and the data plane uses no ORM connection on the event loop (database work runs on
  the database thread, routing.runtime.database.run_db);
- a body limit applied as the body arrives (a `Content-Length` over it is refused before any of it is read);
- the client's disconnect noticed while the answer streams (routing.dataplane.asgi_io.cancel_on_disconnect),
  which the generic consumer only sees after `handle` returns.
"""

from __future__ import annotations

import hmac
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from routing.dataplane import cors, health, pipeline
from routing.dataplane.asgi_io import Message, Receive, Request, Scope, Send, send_bytes
from usage import metrics

# Not a configured CHANNEL_LAYERS alias: Channels then gives the consumer no channel layer.
NO_CHANNEL_LAYER = "data plane: none"
_TEXT = b"text/plain; charset=utf-8"


class DataPlaneConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    channel_layer_alias = NO_CHANNEL_LAYER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request: Request | None = None
        self._size = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive  # the disconnect watcher reads it while `handle` runs
        await super().__call__(scope, receive, send)

    async def dispatch(self, message: Message) -> None:
        """`AsyncConsumer.dispatch` without `aclose_old_connections` (a thread hop per message)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message: Message) -> None:
        if self._request is None:
            self._request = Request.from_scope(self.scope, self._receive)
            if _declared_length(self._request) > settings.MAX_REQUEST_BYTES:
                await self._serve(None)
        chunk: bytes = message.get("body", b"")
        self._size += len(chunk)
        if self._size > settings.MAX_REQUEST_BYTES:
            await self._serve(None)
        self.body.append(chunk)
        if not message.get("more_body", False):
            await self._serve(b"".join(self.body))

    async def http_disconnect(self, message: Message) -> None:
        raise StopConsumer  # gone before its whole request arrived: there is nobody to answer

    async def _serve(self, body: bytes | None) -> None:
        """Answer the request (`body` None: it is over MAX_REQUEST_BYTES), then end the consumer."""
        request = self._request
        assert request is not None
        if cors.is_preflight(request):
            await cors.answer_preflight(request, self.send)
        else:
            await pipeline.handle_http(request, body, cors.with_cors(request, self.send))
        raise StopConsumer


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0


async def liveness(scope: Scope, receive: Receive, send: Send) -> None:
    await health.liveness(send)


async def readiness(scope: Scope, receive: Receive, send: Send) -> None:
    await health.readiness(send)


async def serve_metrics(scope: Scope, receive: Receive, send: Send) -> None:
    """Prometheus scrape of this process (usage.metrics); a bearer token when METRICS_TOKEN is set."""
    request = Request.from_scope(scope, receive)
    if request.method != "GET":
        await send_bytes(send, 405, b"Method not allowed\n", _TEXT, [(b"allow", b"GET")])
        return
    token: str = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
        if not valid:
            await send_bytes(send, 401, b"Unauthorized\n", _TEXT, [(b"www-authenticate", b'Bearer realm="metrics"')])
            return
    await send_bytes(send, 200, metrics.render().encode(), metrics.CONTENT_TYPE.encode())
