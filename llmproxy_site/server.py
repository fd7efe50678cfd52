"""The proxy's HTTP server: daphne, with the request limits stock daphne does not have.

Run it as `python -m llmproxy_site.server` with daphne's own arguments (`make run` does). Stock daphne 4.2 hands a
request to the application only once Twisted has read all of its body (into memory, or a temporary file above
100 KB, then queued whole as 8 KiB messages), and bounds neither the body's size nor the time it takes to
arrive (Twisted's 60 s idle timeout starts again with every byte). No application-level check can help there:
a 300 MB body is read before the application sees its headers. This server changes three things:

- A request with a body goes to the application as soon as its head is complete, and its body follows as it
  arrives (`http.request` messages with `more_body`, as the ASGI spec allows). The data plane so refuses a
  request from its head alone (a missing or invalid key, a `Content-Length` over MAX_REQUEST_BYTES), in the
  client's own dialect, before any of the body is read. When the application has answered before the body
  ended, the connection closes after the answer (`Connection: close`); the rest of the body is read and thrown
  away until it ends, the byte limit or the read deadline (closing with unread data would reset the connection
  and could lose the answer the client is waiting for).
- A body over MAX_REQUEST_BYTES (plus `BODY_SLACK`, so that the data plane's own 413 in the client's dialect
  comes first) is refused with 413 on every path, the pages included, and no more of it is read.
- A request must arrive whole, head and body, within REQUEST_READ_TIMEOUT seconds of the moment the connection
  waits for it (opened, or done with the previous answer): else 408 and the connection closes. That also bounds
  an idle keep-alive connection.

Besides: WebSocket messages get the same size limit as bodies, the access log leaves query strings out, and
X-Forwarded-* headers are read only from the reverse proxies in TRUSTED_PROXIES (daphne's --proxy-headers would
believe anyone's), and a stop drains: on SIGTERM the readiness probe answers 503 at once while new connections are
still accepted for DRAIN_DELAY_SECONDS (so that a load balancer takes the server out first), then the server stops
accepting and lets running requests finish for SHUTDOWN_GRACE_SECONDS before cancelling them (SIGINT skips the
delay). Answers given while draining say `Connection: close`, so that kept-alive connections move elsewhere.
`make run` runs several of these servers on one socket (llmproxy_site.serve, `--fd 0`).

Requests without a body (GETs, WebSocket upgrades) go through daphne unchanged. HTTP/1.1 only (daphne speaks
HTTP/2 only over TLS with extras this project does not install; TLS ends at the reverse proxy:
docs/deployment.md).
"""

from __future__ import annotations

# daphne.cli imports daphne.server, which installs the asyncio reactor: it must come before anything Twisted.
from daphne.cli import CommandLineInterface  # isort:skip
from daphne.access import AccessLogGenerator  # isort:skip
from daphne.http_protocol import HTTPFactory, WebRequest  # isort:skip
from daphne.server import Server  # isort:skip

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from twisted.web import http

from routing.runtime import drain

logger = logging.getLogger("llmproxy_site.server")  # also when run as __main__ (python -m)

# How far past MAX_REQUEST_BYTES the server itself cuts a body off. The data plane counts the same bytes a few
# event-loop turns later and answers 413 in the client's dialect; the server's plain 413 is the backstop for
# paths that do not count (the Django pages).
BODY_SLACK = 1024 * 1024

FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-port", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")

# Twisted's HTTP channel is only partly typed (its methods are not): handled as untyped, like daphne's classes.
_HTTPChannel: Any = http.HTTPChannel

_TIMEOUT_BODY = b"Request timeout: the request did not arrive whole in time\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class _Streamed:
    """The `content` of a request whose body goes to the application as it arrives: it holds nothing. It reads
    as closed, which makes daphne's `WebRequest.process` start the application without a body message (the
    check daphne makes for a request abandoned while the application was being created)."""

    closed = True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class ProxyRequest(WebRequest):  # type: ignore[misc]
    streaming = False
    body_done = False
    _declared: int | None = None
    _received = 0
    _messages = 0  # `http.request` messages delivered
    _complete = False  # the last one delivered said `more_body: False`

    def process(self) -> None:
        # Forwarded headers count only from a reverse proxy named in TRUSTED_PROXIES: anyone else could set
        # their own client address, or make Django believe the page was served over https.
        if self.client is None or getattr(self.client, "host", None) not in self.server.trusted_proxies:
            for name in FORWARDED_HEADERS:
                self.requestHeaders.removeHeader(name)
        super().process()

    def gotLength(self, length: int | None) -> None:
        """The head is complete (`length`: the declared Content-Length, None when chunked)."""
        if length == 0:
            super().gotLength(length)  # no body: daphne starts the application as usual, right after this
            return
        self.streaming = True
        self.content = _Streamed()
        self._connection = self.channel  # Twisted drops `channel` once the answer is done; the body may go on
        # Twisted sets these in `requestReceived`, after the body; the channel holds them from the request line.
        self.method, self.uri, self.clientproto = self.channel._command, self.channel._path, self.channel._version
        self.path = self.uri.split(b"?", 1)[0]
        self._declared = length
        self.process()
        # The application hears of the request even if no body byte ever comes: an empty first message, unless
        # body bytes that came with the head (the usual small request) have been delivered by then.
        self.server.call_soon(self._announce)

    def _announce(self) -> None:
        if self._messages == 0 and self.application_queue is not None and not (self.finished or self._disconnected):
            self._deliver(b"", more_body=True)

    def _deliver(self, body: bytes, *, more_body: bool) -> None:
        self._messages += 1
        self.application_queue.put_nowait({"type": "http.request", "body": body, "more_body": more_body})

    def handleContentChunk(self, data: bytes) -> None:
        if not self.streaming:
            super().handleContentChunk(data)
            return
        self._received += len(data)
        if self._received > self.server.body_limit:
            self._too_large()
        elif self.application_queue is not None and not self.finished:
            # The last bytes of a Content-Length body end it at once, with no empty message after them.
            self._complete = self._declared is not None and self._received >= self._declared
            self._deliver(data, more_body=not self._complete)
        # else: answered already; the rest of the body is read to nowhere

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole body has arrived."""
        if not self.streaming:
            super().requestReceived(command, path, version)
            return
        self.body_done = True
        if self.application_queue is not None and not self.finished and not self._complete:
            self._deliver(b"", more_body=False)

    def handle_reply(self, message: dict[str, Any]) -> None:
        answered_early = self.streaming and not self.body_done and not self.finished and self.channel is not None
        draining = drain.draining() and self.channel is not None
        if message["type"] == "http.response.start" and (answered_early or draining):
            # Answered before the body ended: this connection cannot carry another request. Draining: the client's
            # next request should open a connection the balancer gives to another server.
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
            self.channel.persistent = False
        super().handle_reply(message)

    def _too_large(self) -> None:
        if not self._response_started and not self.finished:
            self.basic_error(413, b"Payload Too Large", "The request body is larger than this server accepts.")
        self._connection.loseConnection()  # read no more of it


class ProxyChannel(_HTTPChannel):  # type: ignore[misc]
    """An HTTP/1.1 connection with a read deadline per request, and the draining of a body answered early."""

    _deadline: Any = None  # the pending IDelayedCall
    _draining = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def allContentReceived(self) -> None:
        self._disarm()
        if self._draining:  # the rest of a body answered early has been read: the answer said we close
            self.loseConnection()
            return
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if isinstance(request, ProxyRequest) and request.streaming and not request.body_done:
            # Answered before its body ended: drain the body (ProxyRequest drops it), then close.
            del self.requests[0]
            self._draining = True
            return
        super().requestDone(request)
        if self.persistent and self.transport is not None and self.transport.connected:
            self._arm()  # the next request's clock starts now

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._disarm()
        timeout = self.factory.server.request_read_timeout
        if timeout:
            self._deadline = self.callLater(timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.requests and not self.requests[-1].startedWriting:
            # Written here rather than through the request: its application may not have started (head incomplete).
            self.transport.write(_TIMEOUT_ANSWER)
        # Twisted's own idle-timeout path: close, and abort the connection if the client does not read the answer.
        self.timeoutConnection()


class ProxyHTTPFactory(HTTPFactory):  # type: ignore[misc]
    protocol = ProxyChannel

    def buildProtocol(self, addr: Any) -> ProxyChannel:
        channel: ProxyChannel = super().buildProtocol(addr)
        channel.requestFactory = ProxyRequest
        return channel

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]


class PathOnlyAccessLog(AccessLogGenerator):  # type: ignore[misc]
    """daphne's access log without query strings: a Gemini client may send its key as `?key=`."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        path = details.get("path")
        if isinstance(path, str):
            details = {**details, "path": path.split("?", 1)[0]}
        super().__call__(protocol, action, details)


class ProxyServer(Server):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from django.conf import settings  # configured by now: daphne's command line imported the application

        self.body_limit: int = settings.MAX_REQUEST_BYTES + BODY_SLACK
        self.request_read_timeout: float = settings.REQUEST_READ_TIMEOUT
        # A WebSocket message (a Responses `response.create`) has the same limit as a request body: past
        # MAX_REQUEST_BYTES the consumer answers 413 and closes with 4009; daphne's 1 MiB default would drop
        # the connection with no answer. Read by `Server.run` when it sets up the WebSocket factory.
        self.websocket_max_message_size = self.body_limit
        self.websocket_max_frame_size = self.body_limit
        # Forwarded headers from the reverse proxies in TRUSTED_PROXIES only (see ProxyRequest.process); without
        # any, none are read, whatever the command line says.
        self.trusted_proxies: frozenset[str] = frozenset(settings.TRUSTED_PROXIES)
        forwarded = bool(self.trusted_proxies)
        self.proxy_forwarded_address_header = "X-Forwarded-For" if forwarded else None
        self.proxy_forwarded_port_header = "X-Forwarded-Port" if forwarded else None
        self.proxy_forwarded_proto_header = "X-Forwarded-Proto" if forwarded else None
        access_log: Any = getattr(self, "action_logger", None)  # set by daphne's Server.__init__
        if isinstance(access_log, AccessLogGenerator):
            self.action_logger = PathOnlyAccessLog(access_log.stream)

    def listen_success(self, port: Any) -> None:
        self._ports = [*getattr(self, "_ports", []), port]
        super().listen_success(port)

    def run(self) -> None:
        from twisted.internet import reactor

        if self.signal_handlers:
            # Twisted's own SIGTERM handler stops the reactor at once; it is installed as the reactor starts,
            # this one after it.
            reactor.callWhenRunning(signal.signal, signal.SIGTERM, self._sigterm)
        super().run()

    def _sigterm(self, signum: int, frame: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self.begin_drain)  # a signal handler: the work happens on the reactor's loop

    def begin_drain(self) -> None:
        """SIGTERM: readiness answers 503 from now on (routing.runtime.drain); new connections are accepted and
        served as before for DRAIN_DELAY_SECONDS, the time a load balancer needs to see the probe fail and take
        this server out; then the stop proper (below). A second SIGTERM stops at once."""
        from django.conf import settings
        from twisted.internet import reactor

        if drain.draining():
            self._stop_reactor()
            return
        drain.begin()
        delay: float = max(settings.DRAIN_DELAY_SECONDS, 0.0)
        logger.info("SIGTERM: draining (readiness answers 503), accepting new connections for %g s more", delay)
        _reactor(reactor).callLater(delay, self._stop_reactor)

    @staticmethod
    def _stop_reactor() -> None:
        from twisted.internet import error, reactor

        with contextlib.suppress(error.ReactorNotRunning):  # stopping already (a SIGINT, or a second SIGTERM)
            _reactor(reactor).stop()

    def kill_all_applications(self) -> Any:
        """The stop proper (daphne's "before shutdown" trigger: after the drain delay of a SIGTERM, at once on
        SIGINT): accept no new connection (the socket's other workers do), let running requests, streams above
        all, end by themselves for up to the ledger's grace, then cancel what is left, as daphne does at once.
        The ledger waits the same grace before recording what is still running as interrupted
        (usage.ledger.write_at_stop)."""
        from django.conf import settings
        from twisted.internet.defer import Deferred

        drain.begin()
        for port in getattr(self, "_ports", []):
            port.stopListening()
        running = [c["application_instance"] for c in self.connections.values() if c.get("application_instance")]
        running = [task for task in running if not task.done()]
        if not running:
            return super().kill_all_applications()
        grace: float = settings.SHUTDOWN_GRACE_SECONDS
        drained = Deferred.fromFuture(asyncio.ensure_future(asyncio.wait(running, timeout=grace)))
        return drained.addCallback(lambda _: super(ProxyServer, self).kill_all_applications())

    def call_soon(self, callback: Callable[[], None]) -> None:
        """After what is already scheduled: the application task's first step, and the rest of the data that
        Twisted is handing over now."""
        asyncio.get_event_loop().call_soon(callback)

    # daphne's `Server.run` builds its HTTP factory inline (`self.http_factory = HTTPFactory(self)`) and listens
    # with it at once: that assignment is the one place a subclass can put its own factory in.
    @property
    def http_factory(self) -> ProxyHTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, ProxyHTTPFactory) else ProxyHTTPFactory(self)


def _reactor(reactor: object) -> Any:
    """The reactor, untyped: the zope interface stubs declare its methods without `self`, which confuses the
    type checker (as in routing.runtime.worker)."""
    return reactor


class ProxyCommandLine(CommandLineInterface):  # type: ignore[misc]
    description = "llmproxy's HTTP/WebSocket server (daphne with request limits)"
    server_class = ProxyServer


if __name__ == "__main__":
    ProxyCommandLine.entrypoint()
