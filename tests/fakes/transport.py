"""The provider fakes without a socket: an httpx transport that hands each request to a fake's handler in-process.

`FakeUpstream` (tests/fakes/server.py) serves a handler `Request -> Response` over real TCP; `InProcessUpstream`
keeps the same handler and the same bookkeeping (requests, disconnects, scripts) and is reached through
`FakeTransport`, an `httpx.AsyncBaseTransport` that routes by host. The answer is the same `Response`: its
frames come out one httpx chunk each, and its timing (latency, prefill, gaps, stalls, hangs) is waited out
on the caller's event loop, bounded by the request's read timeout as a socket read would be. So one fake, one
wire format, serves both the real-server tests and the in-process ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, Generic

import httpx

from tests.fakes.server import FakeUpstream, H, Headers, Request, Response

_hosts = itertools.count(1)


class InProcessUpstream(FakeUpstream[H], Generic[H]):
    """A `FakeUpstream` on a made-up host that `FakeTransport` serves; it opens no socket."""

    def __init__(self, handler: H, *, record: bool = True) -> None:
        super().__init__(handler, host=f"fake-upstream-{next(_hosts)}.invalid", port=80, record=record)

    def start(self) -> InProcessUpstream[H]:
        return self

    def stop(self) -> None:
        pass

    async def serve_request(self, request: httpx.Request) -> httpx.Response:
        """What the fake server would send for `request`, as an httpx response whose body arrives frame by frame."""
        body = await request.aread()
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        raw = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        fake_request = Request(request.method, request.url.raw_path.decode("ascii"), Headers(raw), body, parsed)
        self._note(request=fake_request)
        response = self._respond(fake_request)
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            if response.hang:
                await _wait(None, read_timeout, request)
            if response.latency:
                await _wait(response.latency, read_timeout, request)
        except BaseException:
            # The caller gave up (a timeout or a cancelled request) before the status line: a disconnect.
            self._note(disconnect=True)
            raise
        headers = list(response.headers.items())
        if response.stream is None:
            headers += [("content-length", str(len(response.body))), ("connection", "keep-alive")]
            return httpx.Response(response.status, headers=headers, stream=httpx.ByteStream(response.body))
        headers += [("transfer-encoding", "chunked"), ("connection", "keep-alive")]
        return httpx.Response(response.status, headers=headers, stream=_Frames(self, response, request, read_timeout))


async def _wait(seconds: float | None, read_timeout: float | None, request: httpx.Request) -> None:
    """Wait `seconds` (None: forever) as a client reading the socket would: past its read timeout it gives up."""
    if read_timeout is not None and (seconds is None or seconds > read_timeout):
        await asyncio.sleep(read_timeout)
        raise httpx.ReadTimeout("timed out waiting for the fake upstream", request=request)
    if seconds is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(seconds)


class _Frames(httpx.AsyncByteStream):
    """A streamed body: one chunk per frame of the fake's `Response`, with its prefill, gaps and stall."""

    def __init__(
        self, upstream: InProcessUpstream[Any], response: Response, request: httpx.Request, read_timeout: float | None
    ) -> None:
        self.upstream, self.response, self.request, self.read_timeout = upstream, response, request, read_timeout
        self.completed = False
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        response = self.response
        assert response.stream is not None
        if response.prefill:
            await _wait(response.prefill, self.read_timeout, self.request)
        try:
            for sent, frame in enumerate(response.stream):
                if sent == response.stall_after:
                    break
                if sent and response.chunk_delay:
                    await _wait(response.chunk_delay, self.read_timeout, self.request)
                if frame:
                    yield frame
        except httpx.HTTPError:
            raise
        except Exception as exc:
            # The fake server logs a generator that failed after the status line and closes the connection;
            # the proxy's transport reports a chunked body cut short as a ReadError (routing/upstream/transport.py).
            self.upstream._handler_failed(exc)
            self.completed = True  # the server counts this as its own failure, not a client disconnect
            raise httpx.ReadError("Response payload is not completed", request=self.request) from exc
        if response.stall_after is not None:
            await _wait(None, self.read_timeout, self.request)
        self.completed = True

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.completed:
                self.upstream._note(disconnect=True)


class FakeTransport(httpx.AsyncBaseTransport):
    """Routes each request to the `InProcessUpstream` of its host; other hosts go to `fallback` (a real
    transport, so an unreachable address fails as it would in production), or fail to connect."""

    def __init__(self, fallback: httpx.AsyncBaseTransport | None = None) -> None:
        self.fallback = fallback
        self.upstreams: dict[tuple[str, int], InProcessUpstream[Any]] = {}

    def add(self, upstream: InProcessUpstream[Any]) -> None:
        self.upstreams[(upstream.host, upstream.port)] = upstream

    def remove(self, upstream: InProcessUpstream[Any]) -> None:
        self.upstreams.pop((upstream.host, upstream.port), None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        upstream = self.upstreams.get((request.url.host, request.url.port or 80))
        if upstream is not None:
            return await upstream.serve_request(request)
        if self.fallback is not None:
            return await self.fallback.handle_async_request(request)
        raise httpx.ConnectError(f"no fake upstream at {request.url.host}", request=request)

    async def aclose(self) -> None:
        if self.fallback is not None:
            await self.fallback.aclose()
