"""Minimal ASGI request/response plumbing for the data plane (no Django request machinery)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CONTENT_TYPE = b"application/json"
SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
SSE_EXTRA_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx-style reverse proxies not to buffer the stream
]
SSE_HEADERS = [(b"content-type", SSE_CONTENT_TYPE), *SSE_EXTRA_HEADERS]
# The operator-defined path prefix a request came under (routing.dataplane.prefixes), its path without it.
PREFIX_SCOPE_KEY = "llmproxy.prefix"


class ClientDisconnected(Exception):
    pass


@dataclass
class Request:
    scope: Scope
    receive: Receive
    path: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    prefix: str = ""  # the path prefix it came under ("" for none); `path` is the rest

    @property
    def full_path(self) -> str:
        return self.prefix + self.path

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive) -> Request:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        return cls(scope, receive, scope["path"], scope["method"], headers, query, scope.get(PREFIX_SCOPE_KEY, ""))

    async def wait_for_disconnect(self) -> None:
        """Returns when the client goes away (the body has been read, so nothing else can arrive)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass


async def read_body(first: Message, receive: Receive, limit: int) -> bytes | None:
    """A request's body, from its first `http.request` message on: None as soon as it is over `limit` bytes
    (nothing more is read; llmproxy_site.server throws the rest away). Raises ClientDisconnected when the
    client leaves before the end."""
    body: bytes = first.get("body", b"")
    if not first.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if size <= limit else None
    return None


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        all_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), JSON_CONTENT_TYPE, headers)


async def cancel_on_disconnect(request: Request, work: Awaitable[None]) -> bool:
    """Run `work` until it finishes or the client disconnects, whichever is first.

    Returns False when the client went away; `work` is then cancelled, which closes the upstream request
    it holds (httpx closes the connection when its stream context is cancelled).
    """
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(request.wait_for_disconnect())
    try:
        done, _ = await asyncio.wait((work_task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work_task.cancel()
        watcher.cancel()
        raise
    if work_task in done:
        watcher.cancel()
        work_task.result()
        return True
    work_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work_task
    return False
