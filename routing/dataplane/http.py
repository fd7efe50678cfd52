"""HTTP for the data plane: a Channels `AsyncHttpConsumer` per request, mounted by `llmproxy_site.asgi`'s
`URLRouter`, plus the probes and `/metrics` as plain ASGI callables.

The consumer keeps what a bare ASGI function had and Channels' generic one does not:
- no channel layer (the data plane never joins a group; a configured layer would cost a channel per request),
  and so no task per received message (`__call__`);
- no thread hop per message: `AsyncConsumer.dispatch` closes stale ORM connections through `sync_to_async`
  before every message, and the data plane uses no ORM connection on the event loop (database work runs on
  the database thread, routing.runtime.database.run_db);
- the request handled from its first message: a request refused from its head (a `Content-Length` over the
  limit, no key that could let it through) is answered before any of its body is read, and a body stops being
  read once it is over the limit (llmproxy_site.server delivers the body as it arrives);
- the client's disconnect noticed while the answer streams (routing.dataplane.asgi_io.cancel_on_disconnect),
  which the generic consumer only sees after `handle` returns.
"""

from __future__ import annotations

import hmac

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from routing.dataplane import cors, health, pipeline
from routing.dataplane.asgi_io import Message, Receive, Request, Scope, Send, read_body, send_bytes
from usage import metrics

# Not a configured CHANNEL_LAYERS alias: Channels then gives the consumer no channel layer.
NO_CHANNEL_LAYER = "data plane: none"
_TEXT = b"text/plain; charset=utf-8"


class DataPlaneConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    channel_layer_alias = NO_CHANNEL_LAYER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`AsyncConsumer.__call__` less what a consumer without a channel layer never uses: that one looks the
        layer up for every request (a settings lookup ending in KeyError for this alias) and receives through
        `await_many_dispatch`, a new task per message raced in `asyncio.wait`, and so more event-loop turns per
        request: about 40 µs of CPU of the 50 µs per request the consumer cost over a bare ASGI function
        (bench/consumer_cost.py, docs/benchmarks.md). Here each message is received and dispatched in turn,
        which is all the handlers need: the first one reads the rest of the request itself."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self._receive = receive  # the body reader and the disconnect watcher read it while the handler runs
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: Message) -> None:
        """`AsyncConsumer.dispatch` without `aclose_old_connections` (a thread hop per message)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message: Message) -> None:
        """The first `http.request` message: under llmproxy_site.server it comes as soon as the head is complete
        (the body follows), so the pipeline can refuse the request before reading any of the body."""
        request = Request.from_scope(self.scope, self._receive)
        if cors.is_preflight(request):
            await cors.answer_preflight(request, self.send)
        else:

            async def body() -> bytes | None:
                return await read_body(message, self._receive, settings.MAX_REQUEST_BYTES)

            await pipeline.handle_http(request, body, cors.with_cors(request, self.send))
        raise StopConsumer

    async def http_disconnect(self, message: Message) -> None:
        raise StopConsumer  # gone before its request arrived: there is nobody to answer


async def liveness(scope: Scope, receive: Receive, send: Send) -> None:
    await health.liveness(send)


async def readiness(scope: Scope, receive: Receive, send: Send) -> None:
    await health.readiness(send, detailed=_is_operator(scope, Request.from_scope(scope, receive)) is True)


async def serve_metrics(scope: Scope, receive: Receive, send: Send) -> None:
    """Prometheus scrape of this process (usage.metrics): with the METRICS_TOKEN bearer token when it is set,
    else from loopback only (the counters name users, models and upstreams)."""
    request = Request.from_scope(scope, receive)
    if request.method != "GET":
        await send_bytes(send, 405, b"Method not allowed\n", _TEXT, [(b"allow", b"GET")])
        return
    allowed = _is_operator(scope, request)
    if allowed is None:
        await send_bytes(send, 401, b"Unauthorized\n", _TEXT, [(b"www-authenticate", b'Bearer realm="metrics"')])
        return
    if not allowed:
        await send_bytes(send, 403, b"Set METRICS_TOKEN to scrape /metrics from another host\n", _TEXT)
        return
    await send_bytes(send, 200, metrics.render().encode(), metrics.CONTENT_TYPE.encode())


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _is_operator(scope: Scope, request: Request) -> bool | None:
    """Whether a probe or scrape may see the process's details: the METRICS_TOKEN bearer token when one is set
    (None: it is set and missing or wrong), else a client on loopback."""
    token: str = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
        return True if valid else None
    client = scope.get("client") or ("", 0)
    return client[0] in LOOPBACK
