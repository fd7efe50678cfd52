"""A small HTTP/1.1 server on asyncio streams for fake upstream providers.

It runs on its own event loop in a background thread (`with FakeUpstream(handler) as up:`), or as a process for the
benchmark (`python -m tests.fakes.server --provider openai-chat --port 8001`). It speaks just enough HTTP/1.1 for real
clients: keep-alive, Content-Length and chunked request bodies, `Expect: 100-continue`, and chunked streaming responses
where every frame is written and drained on its own so SSE reaches the client as it would from a real provider.

Handlers are plain functions `Request -> Response`; timing (latency, gaps between frames, stalls, hangs) is described
on the Response and carried out here, so the server can notice a client that goes away while it waits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from tests.fakes.script import Reply

MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024
REASONS = {529: "Site Overloaded"}  # Anthropic's overloaded status is not in http.HTTPStatus


class BadRequestError(Exception):
    """The bytes on the wire are not an HTTP/1.x request we understand; answered with 400 and a close."""


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively; repeated headers are joined with ", "."""

    def __init__(self, raw: Iterable[tuple[str, str]]) -> None:
        self.raw = list(raw)
        self._by_name: dict[str, str] = {}
        for name, value in self.raw:
            key = name.lower()
            self._by_name[key] = f"{self._by_name[key]}, {value}" if key in self._by_name else value

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query exactly as sent
    headers: Headers
    body: bytes
    json: Any  # the parsed body, None when it is empty or not JSON
    version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterable[bytes] | None = None  # when set: sent chunked, one HTTP chunk per item, drained each time
    latency: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds between stream items
    prefill: float = 0.0  # seconds between the headers and the first stream item (a slow prompt prefill)
    stall_after: int | None = None  # send this many stream items, then keep the connection open and send nothing
    hang: bool = False  # never answer; wait for the client to give up


Handler = Callable[[Request], Response]
H = TypeVar("H", bound=Handler)


@runtime_checkable
class Scripted(Protocol):
    def script(self, *replies: Reply) -> None: ...


class _Connection:
    """One client connection: our own read buffer, so bytes read while watching for a disconnect are not lost."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def _fill(self) -> bool:
        data = await self.reader.read(READ_SIZE)
        self.buffer += data
        return bool(data)

    async def read_until(self, separator: bytes, limit: int) -> bytes | None:
        """Bytes up to and including `separator`; None on a clean EOF before any byte."""
        while (end := self.buffer.find(separator)) < 0:
            if len(self.buffer) > limit:
                raise BadRequestError("header section too large")
            if not await self._fill():
                if self.buffer:
                    raise BadRequestError("connection closed mid-request")
                return None
        end += len(separator)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise BadRequestError("connection closed mid-body")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_request(self) -> Request | None:
        head = await self.read_until(b"\r\n\r\n", MAX_HEAD)
        if head is None:
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
            raw = [(name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines[1:])]
        except ValueError as exc:
            raise BadRequestError(f"malformed request head {lines[0]!r}") from exc
        if not version.startswith("HTTP/1."):
            raise BadRequestError(f"unsupported version {version}")
        headers = Headers(raw)
        if headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        else:
            try:
                body = await self.read_exactly(int(headers.get("content-length", "0")))
            except ValueError as exc:
                raise BadRequestError("bad content-length") from exc
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        return Request(method, target, headers, body, parsed, version)

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = await self.read_until(b"\r\n", MAX_HEAD)
            if size_line is None:
                raise BadRequestError("connection closed mid-body")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BadRequestError("bad chunk size") from exc
            if size == 0:
                # Trailer fields (usually none) end with an empty line.
                while await self.read_until(b"\r\n", MAX_HEAD) not in (b"\r\n", None):
                    pass
                return bytes(body)
            body += await self.read_exactly(size + 2)
            del body[-2:]

    def watch(self) -> None:
        """Notice the client closing while we answer. Clients do not pipeline: bytes read here are the next request."""

        async def watch() -> None:
            try:
                while await self._fill():
                    pass
            except ConnectionError:
                pass
            self.gone.set()

        self._watcher = asyncio.create_task(watch())

    async def unwatch(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def idle(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: forever); True if the client went away meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
        return self.gone.is_set()

    async def send(self, data: bytes) -> bool:
        """Write and drain; False if the client is gone."""
        if self.gone.is_set():
            return False
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return True


class FakeUpstream(Generic[H]):
    """An HTTP server for `handler` on 127.0.0.1 (a free port by default) that records what it receives."""

    def __init__(self, handler: H, *, host: str = "127.0.0.1", port: int = 0, record: bool = True) -> None:
        """`record=False` keeps only counts, so a long benchmark run does not hold every request body in memory."""
        self.handler = handler
        self.host = host
        self.port = port
        self.record = record
        self._request_count = 0
        self.errors: list[BaseException] = []  # exceptions raised by the handler (answered with 500)
        self._requests: list[Request] = []
        self._disconnects = 0
        self._connections = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Request]:
        """A snapshot of every request received so far, in arrival order."""
        with self._changed:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._changed:
            return self._request_count

    @property
    def disconnects(self) -> int:
        """How many responses the client abandoned before the last byte (mid-stream, during latency, or a hang)."""
        with self._changed:
            return self._disconnects

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive reuses one for many requests)."""
        with self._changed:
            return self._connections

    def script(self, *replies: Reply) -> None:
        handler: object = self.handler
        if not isinstance(handler, Scripted):
            raise TypeError(f"{type(handler).__name__} takes no script")
        handler.script(*replies)

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()
            self._request_count = 0
            self._disconnects = 0
            self.errors.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._request_count >= count, timeout)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._disconnects >= count, timeout)

    def start(self) -> FakeUpstream[H]:
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            # The loop is already closed if the server never started listening.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeUpstream[H]:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until `stop()` (or a signal in the standalone process); cancels hanging responses on the way out."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if on_ready is not None:
            on_ready()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _note(self, *, request: Request | None = None, disconnect: bool = False, connection: bool = False) -> None:
        with self._changed:
            if request is not None:
                self._request_count += 1
                if self.record:
                    self._requests.append(request)
            self._disconnects += disconnect
            self._connections += connection
            self._changed.notify_all()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._note(connection=True)
        conn = _Connection(reader, writer)
        try:
            while True:
                try:
                    request = await conn.read_request()
                except BadRequestError as exc:
                    text = str(exc).encode()
                    await conn.send(_head(400, {"content-type": "text/plain"}, len(text), False) + text)
                    break
                if request is None:
                    break
                self._note(request=request)
                if not await self._answer(conn, request, self._respond(request)):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _handler_failed(self, exc: Exception) -> None:
        self.errors.append(exc)
        traceback.print_exception(exc, file=sys.stderr)

    def _respond(self, request: Request) -> Response:
        try:
            return self.handler(request)
        except Exception as exc:
            self._handler_failed(exc)
            text = f"fake upstream handler failed: {exc!r}".encode()
            return Response(500, {"content-type": "text/plain"}, text)

    async def _answer(self, conn: _Connection, request: Request, response: Response) -> bool:
        """Send `response`; True if the connection can carry another request."""
        # HTTP/1.0 has no chunked coding: a streamed body there ends when we close the connection.
        keep_alive = _keep_alive(request) and (response.stream is None or request.version == "HTTP/1.1")
        conn.watch()
        try:
            completed = await self._send(conn, request, response, keep_alive)
        except Exception as exc:
            # A stream generator failed after the status line went out: all that is left is to close.
            self._handler_failed(exc)
            return False
        finally:
            await conn.unwatch()
        if not completed:
            self._note(disconnect=True)
        return completed and keep_alive and not conn.gone.is_set()

    async def _send(self, conn: _Connection, request: Request, response: Response, keep_alive: bool) -> bool:
        """True if the whole response went out; False if the client left first."""
        if response.hang:
            return not await conn.idle(None)
        if response.latency and await conn.idle(response.latency):
            return False
        if response.stream is None:
            head = _head(response.status, response.headers, len(response.body), keep_alive)
            return await conn.send(head + response.body)
        chunked = request.version == "HTTP/1.1"
        if not await conn.send(_head(response.status, response.headers, None, keep_alive)):
            return False
        if response.prefill and await conn.idle(response.prefill):
            return False
        for sent, frame in enumerate(response.stream):
            if sent == response.stall_after:
                break
            if sent and response.chunk_delay and await conn.idle(response.chunk_delay):
                return False
            data = b"%x\r\n%s\r\n" % (len(frame), frame) if chunked else frame
            if frame and not await conn.send(data):
                return False
        if response.stall_after is not None:
            return not await conn.idle(None)
        return await conn.send(b"0\r\n\r\n") if chunked else True


def _keep_alive(request: Request) -> bool:
    tokens = {token.strip().lower() for token in request.headers.get("connection", "").split(",")}
    return "keep-alive" in tokens if request.version == "HTTP/1.0" else "close" not in tokens


def _head(status: int, headers: Mapping[str, str], length: int | None, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    lines.append("connection: keep-alive" if keep_alive else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def main(argv: list[str] | None = None) -> None:
    """Standalone fake for the benchmark: unscripted, so every request gets the provider's echo reply."""
    # Imported here: the provider modules import this one.
    from tests.fakes.providers import PROVIDERS, make
    from tests.fakes.script import Reply

    parser = argparse.ArgumentParser(prog="python -m tests.fakes.server", description=main.__doc__)
    parser.add_argument("--provider", required=True, choices=sorted(PROVIDERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on startup)")
    parser.add_argument("--api-key", default=None, help="expected upstream key (default: accept any)")
    parser.add_argument("--text", default="", help="reply text (default: a greeting naming the model)")
    parser.add_argument("--chunks", type=int, default=3, help="stream frames per text")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the status line")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream frames")
    args = parser.parse_args(argv)

    default = Reply(text=args.text, chunks=args.chunks, latency=args.latency, chunk_delay=args.chunk_delay)
    fake = make(args.provider, api_key=args.api_key, default=default)
    upstream = FakeUpstream(fake, host=args.host, port=args.port, record=False)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, upstream.request_stop)
        await upstream.serve(on_ready=lambda: print(f"listening on {upstream.url}", flush=True))
        if upstream._startup_error is not None:
            raise SystemExit(f"cannot listen on {args.host}:{args.port}: {upstream._startup_error}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
