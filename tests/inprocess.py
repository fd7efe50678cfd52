"""The proxy in-process, for tests that need the pipeline but not a real server.

`InProcessProxy` stands where `tests.liveserver.ProxyServer` does (`url`, `sync()`, `drain()`), without a
process: the ASGI application (`llmproxy_site.asgi.application`) runs on an event loop in a background thread,
as daphne runs it on its own, and the official SDKs reach it through a synchronous httpx transport
(`InProcessTransport`) that streams each answer back message by message (httpx's own ASGITransport reads the
whole answer before returning it). Upstreams are the same provider fakes as in the real-server tests, reached
through `tests.fakes.transport.FakeTransport`, which this proxy's event loop uses as its pooled upstream client
(`routing.upstream.client._clients[loop]`, the seam the product keeps one client per loop behind).

What this cannot show, and the real-server tests keep: how daphne flushes SSE and sends headers before the
body, client disconnects over a socket, timing, several processes, and the CLIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import httpx2
import pytest
from django.contrib.auth.models import User

from routing.runtime.database import db_executor, run_db
from routing.runtime.live import live_config
from routing.runtime.worker import worker
from routing.upstream import client as upstream_client
from routing.upstream.transport import AiohttpTransport
from tests.fakes.base import ProviderFake
from tests.fakes.providers import make
from tests.fakes.transport import FakeTransport, InProcessUpstream
from tests.liveserver import ProxyServer
from usage import ledger

T = TypeVar("T")
Message = dict[str, Any]
App = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

# How long a test waits for the app before calling it stuck (a real client's read timeout, roughly).
ANSWER_TIMEOUT = 60.0
_DONE = object()


class _AsgiCall:
    """One HTTP request run through the ASGI app on `loop`; what the app sends is queued for the caller's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, body: bytes, timeout: float) -> None:
        self.loop = loop
        self.request_body = body
        self.timeout = timeout
        self.out: queue.Queue[Any] = queue.Queue()
        self.finished = threading.Event()
        self.ended = False
        self._disconnected: asyncio.Event | None = None
        self._body_sent = False

    async def run(self, app: App, scope: dict[str, Any]) -> None:
        self._disconnected = asyncio.Event()
        try:
            await app(scope, self._receive, self._send)
        except BaseException as exc:  # reported to the caller, who raises it
            self.out.put(exc)
        finally:
            self.out.put(_DONE)
            self.finished.set()

    async def _receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.request_body, "more_body": False}
        # Then, like a server: nothing more until the client goes away (or the answer is complete).
        assert self._disconnected is not None
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.out.put(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            assert self._disconnected is not None
            self._disconnected.set()

    def _next(self) -> Any:
        try:
            item = self.out.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"the in-process app sent nothing for {self.timeout} s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def start(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Status and headers, as soon as the app sends them."""
        while (message := self._next()) is not _DONE:
            if message["type"] == "http.response.start":
                return message["status"], list(message.get("headers", []))
        raise ConnectionError("the app returned without answering")

    def body(self) -> Iterator[bytes]:
        """Each body message's bytes, as the app sends them."""
        while not self.ended:
            message = self._next()
            if message is _DONE:
                raise ConnectionError("the app returned before the end of its answer")
            if message["type"] != "http.response.body":
                continue
            self.ended = not message.get("more_body", False)
            if message.get("body"):
                yield message["body"]

    def close(self) -> None:
        if not self.ended and self._disconnected is not None and not self.loop.is_closed():
            # The client closed the response before its end: a server would see the socket close.
            self.loop.call_soon_threadsafe(self._disconnected.set)
        # The exchange's end (ledger record, admission release, upstream closed) happens before the test goes
        # on, as it has on a server by the time its client saw the connection close.
        self.finished.wait(self.timeout)


def _scope(method: str, url: Any, raw_headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a request to `url` (an httpx or httpx2 URL)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": url.scheme,
        "path": unquote(url.path),
        "raw_path": url.raw_path.split(b"?", 1)[0],
        "query_string": url.query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in raw_headers],
        "client": ("127.0.0.1", 40000),
        "server": (url.host, url.port or 80),
    }


def _transport_for(lib: Any) -> Any:
    """A synchronous transport class of `lib` (httpx, or httpx2 that the official SDKs use) into an ASGI app on
    another thread's event loop: the answer comes back as the app sends it (status and headers first, then each
    body message), which httpx's own ASGITransport does not do (it reads the whole answer first)."""

    class Stream(lib.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, call: _AsgiCall, request: Any) -> None:
            self.call, self.request = call, request

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self.call.body()
            except TimeoutError as exc:
                raise lib.ReadTimeout(str(exc), request=self.request) from exc
            except ConnectionError as exc:
                raise lib.RemoteProtocolError(str(exc), request=self.request) from exc

        def close(self) -> None:
            self.call.close()

    class Transport(lib.BaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self, app: App, loop: asyncio.AbstractEventLoop) -> None:
            self.app, self.loop = app, loop

        def handle_request(self, request: Any) -> Any:
            timeout = request.extensions.get("timeout", {}).get("read") or ANSWER_TIMEOUT
            call = _AsgiCall(self.loop, request.read(), timeout)
            scope = _scope(request.method, request.url, list(request.headers.raw))
            asyncio.run_coroutine_threadsafe(call.run(self.app, scope), self.loop)
            try:
                status, headers = call.start()
            except TimeoutError as exc:
                raise lib.ReadTimeout(str(exc), request=request) from exc
            except ConnectionError as exc:
                raise lib.RemoteProtocolError(str(exc), request=request) from exc
            return lib.Response(
                status, headers=headers, stream=Stream(call, request), extensions={"http_version": b"HTTP/1.1"}
            )

    return Transport


InProcessTransport = _transport_for(httpx)  # for raw requests in tests
SdkTransport = _transport_for(httpx2)  # for the official SDKs, which are written against httpx2


class InProcessProxy:
    """The proxy's ASGI app on its own event loop thread, with in-process fake upstreams."""

    url = "http://testserver"  # a host Django's test settings allow (the pages answer it too)

    def __init__(self) -> None:
        from llmproxy_site.asgi import application

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="in-process-proxy", daemon=True)
        self._thread.start()
        # Unknown hosts go to the product's own transport: an unreachable upstream fails as in production.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)
        self.upstreams = FakeTransport(fallback=AiohttpTransport(limits))
        self.run(self._use_fake_upstreams())
        self._sdk_transport = SdkTransport(application, self.loop)
        self.http = httpx.Client(
            transport=InProcessTransport(application, self.loop), base_url=self.url, timeout=ANSWER_TIMEOUT
        )

    async def _use_fake_upstreams(self) -> None:
        loop = asyncio.get_running_loop()
        upstream_client._clients[loop] = httpx.AsyncClient(transport=self.upstreams, follow_redirects=False)

    def run(self, coroutine: Awaitable[T], timeout: float = ANSWER_TIMEOUT) -> T:
        """Run `coroutine` on the proxy's event loop and wait for its result."""

        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def client(self) -> httpx2.Client:
        """A client for an official SDK (`http_client=`, genai's `httpx_client=`) that reaches this proxy."""
        return httpx2.Client(transport=self._sdk_transport, timeout=ANSWER_TIMEOUT)

    @contextlib.contextmanager
    def upstream(self, provider: str, **options: Any) -> Iterator[InProcessUpstream[ProviderFake]]:
        """A fake upstream of `provider` (see tests.fakes.providers.make) that this proxy can reach at its `url`."""
        fake = InProcessUpstream(make(provider, **options))
        self.upstreams.add(fake)
        try:
            yield fake
        finally:
            self.upstreams.remove(fake)

    def sync(self) -> None:
        """Load the configuration the test database holds now (a server's refresher would, within its interval)."""
        self.run(live_config.reload())

    def drain(self) -> None:
        """Whatever the proxy does off the request path is done: the readiness probe writes the queued ledger
        rows on the database thread, behind the jobs already queued there (as `ProxyServer.drain`)."""
        self.http.get("/health/ready")

    def stop(self) -> None:
        self.drain()

        async def halt() -> None:
            worker.halt()
            client = upstream_client._clients.pop(asyncio.get_running_loop(), None)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # An exchange still running (a stream the test left unread) records itself as it is cancelled.
            await asyncio.gather(*tasks, return_exceptions=True)
            await write_ledger()
            if client is not None:
                await client.aclose()

        try:
            self.run(halt())
        finally:
            self.http.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()
            # Jobs the cancelled tasks left on the database thread end before the test database is emptied.
            db_executor.submit(lambda: None).result(timeout=30)


Proxy = ProxyServer | InProcessProxy

# How long a test's end waits for the exchanges still running in this process (see write_ledger).
EXCHANGE_GRACE = 5.0


async def write_ledger(grace: float = EXCHANGE_GRACE) -> None:
    """The ledger rows of every exchange this process served, written now: after the exchanges still running
    have ended (waited for up to `grace` seconds), on the database thread. A test that served exchanges in this
    process calls it before its database is emptied; a row left queued would be written by the next test that
    drains, into that test's database. A database that cannot take the rows fails the test here."""
    deadline = asyncio.get_running_loop().time() + grace
    while ledger.in_flight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await run_db(ledger.write_pending)


@pytest.fixture(name="alice")
def passwordless_alice(transactional_db: None) -> User:
    """conftest's `alice` without a password, for modules where nobody logs in: hashing one costs ~0.3 s a test
    (several times that on a busy machine). Import it into a module to override `alice` (and so `alice_key`)."""
    return User.objects.create(username="alice")


def sdk_http_client(proxy: Proxy) -> httpx2.Client | None:
    """What an SDK's `http_client` should be to reach `proxy` (None: the SDK's own, over the network)."""
    return proxy.client() if isinstance(proxy, InProcessProxy) else None


def http(proxy: Proxy) -> httpx.Client:
    """An httpx client for raw requests to `proxy` (`http(proxy).post(proxy.url + path, ...)`)."""
    return proxy.http if isinstance(proxy, InProcessProxy) else httpx.Client()
