"""CORS for the data plane: browsers on the origins in CORS_ALLOWED_ORIGINS may call it, no other origin may.

The data plane carries no cookies (it never goes through Django's session middleware) and authenticates by a
key in a header, so CORS here decides only which web pages may read its answers. With no origin configured
(the default) nothing CORS-related is sent at all and the data plane pays nothing for it.
"""

from __future__ import annotations

import functools

from django.conf import settings

from routing.dataplane.asgi_io import Message, Request, Send, send_bytes

ALLOWED_METHODS = b"GET, POST, OPTIONS"
# What the official SDKs send from a browser: credentials, versions and betas, and the Stainless SDKs'
# x-stainless-* telemetry headers (matched by prefix: their set grows with each SDK release).
ALLOWED_HEADERS = frozenset(
    {
        "accept",
        "authorization",
        "content-type",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-goog-api-client",
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "openai-beta",
        "openai-organization",
        "openai-project",
    }
)
ALLOWED_HEADER_PREFIXES = ("x-stainless-",)
# Response headers a page's script may read: request ids for support, retry hints, the proxy's own notes.
EXPOSED_HEADERS = b"request-id, x-request-id, retry-after, x-llmproxy-upstream, x-llmproxy-warnings"
MAX_AGE = b"7200"  # seconds a browser may cache a preflight (Chromium's ceiling)


def _normalise(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@functools.cache
def allowed_origins() -> frozenset[str]:
    configured: list[str] = settings.CORS_ALLOWED_ORIGINS
    return frozenset(_normalise(origin) for origin in configured if origin.strip())


def _allowed(origin: str | None) -> bool:
    return origin is not None and _normalise(origin) in allowed_origins()


def is_preflight(request: Request) -> bool:
    headers = request.headers
    return request.method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


async def answer_preflight(request: Request, send: Send) -> None:
    """204 with what the page may send, for an allowed origin; 403 and no CORS headers for any other."""
    origin = request.headers["origin"]
    if not _allowed(origin):
        await send_bytes(send, 403, b"Origin not allowed\n", b"text/plain; charset=utf-8", [(b"vary", b"origin")])
        return
    requested = request.headers.get("access-control-request-headers", "")
    names = [name.strip().lower() for name in requested.split(",") if name.strip()]
    granted = [n for n in names if n in ALLOWED_HEADERS or n.startswith(ALLOWED_HEADER_PREFIXES)]
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOWED_METHODS),
        (b"access-control-allow-headers", ", ".join(granted).encode("latin-1")),
        (b"access-control-max-age", MAX_AGE),
        (b"vary", b"origin, access-control-request-method, access-control-request-headers"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def with_cors(request: Request, send: Send) -> Send:
    """`send` adding CORS headers to the response start: the origin for an allowed one, `Vary: Origin` always
    (a cache must not hand one origin's answer to another). Unchanged when no origin is configured."""
    if not allowed_origins():
        return send
    origin = request.headers.get("origin")
    extra = [(b"vary", b"origin")]
    if origin is not None and _allowed(origin):
        extra += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_cors
