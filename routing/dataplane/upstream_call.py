"""The upstream call of one exchange: the HTTP request, its failures in the client's terms, and credentials
kept out of whatever comes back (error bodies, stream error events, the ledger, logs)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Protocol

import httpx
from django.conf import settings

from routing.dataplane.asgi_io import encode_headers
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.upstream import bedrock
from routing.upstream.client import (
    CloudCredentialsError,
    authorize_cloud,
    cloud_body,
    endpoint_url,
    http_client,
    network_extension,
    timeout_for,
    upstream_headers,
)
from translation.bedrock.eventstream import CONTENT_TYPE as EVENT_STREAM_CONTENT_TYPE
from translation.bedrock.eventstream import EventStreamParser
from translation.dialect import Dialect
from translation.errors import BEDROCK_ERROR_TYPE_HEADER, ApiError, ErrorKind, parse_upstream_error
from translation.operation import Operation
from translation.redaction import SECRET_NAME, carries_error_event, redact_bytes, redact_text
from translation.sse import SSEEvent, SSEParser

logger = logging.getLogger(__name__)

# Client headers that carry meaning for an upstream of the same format; everything else stays here.
FORWARDED_REQUEST_HEADERS = {
    Dialect.ANTHROPIC: ("anthropic-version", "anthropic-beta"),
    Dialect.OPENAI_CHAT: ("openai-beta",),
    Dialect.OPENAI_RESPONSES: ("openai-beta",),
    Dialect.GEMINI: (),
}
# A decompressed piece of a body larger than this gives the event loop a turn before the next (read_body).
_LARGE_PIECE = 1024 * 1024
# Upstream response headers a client may use: ids for support requests, rate-limit state, retry hints.
RELAYED_RESPONSE_HEADER_PREFIXES = ("retry-after", "request-id", "x-request-id", "anthropic-ratelimit-", "x-ratelimit-")


def build_upstream_request(
    exchange: Exchange, operation: Operation, payload: dict[str, Any], stream: bool
) -> httpx.Request:
    route = exchange.upstream_route
    beta = exchange.request.headers.get("anthropic-beta") if exchange.endpoint.dialect is Dialect.ANTHROPIC else None
    payload = cloud_body(route.upstream, route.wire, operation, payload, beta)
    return http_client().build_request(
        "POST",
        endpoint_url(route.upstream, operation, route.upstream_model, stream),
        content=json.dumps(payload).encode(),
        headers=_upstream_headers(exchange, stream),
        params=dict(route.upstream.query_params) or None,
        timeout=timeout_for(route.upstream),
        extensions=network_extension(route.upstream),
    )


def _upstream_headers(exchange: Exchange, stream: bool) -> list[tuple[str, str]]:
    upstream = exchange.upstream_route.upstream
    wire = exchange.upstream_route.wire
    client_headers = exchange.request.headers
    headers = [("content-type", "application/json"), ("user-agent", "llmproxy/0.1")]
    if wire is exchange.endpoint.dialect:
        # Betas and versions mean something only to an upstream of the client's own API.
        headers.extend(
            (name, client_headers[name]) for name in FORWARDED_REQUEST_HEADERS[wire] if name in client_headers
        )
    return upstream_headers(upstream, exchange.credential, headers, wire=wire, stream=stream)


def upstream_secrets(exchange: Exchange) -> tuple[str, ...]:
    """What this exchange sent upstream that must never come back out: the credential (the configured one,
    or the client's own with forward_client_key) and the values of secret-looking extra headers."""
    secrets = [exchange.credential] if exchange.credential else []
    if exchange.route is not None:
        upstream = exchange.route.upstream
        if upstream.credential:
            secrets.append(upstream.credential)
        if upstream.network.proxy_auth:  # an egress proxy's USER:PASSWORD, and the password alone
            secrets.extend((upstream.network.proxy_auth, upstream.network.proxy_auth.partition(":")[2]))
        secrets.extend(value for name, value in upstream.headers if SECRET_NAME.search(name))
    return tuple(secrets)


def redacted(exchange: Exchange, error: ApiError) -> ApiError:
    """`error` with credentials taken out of its message, before a client, the ledger or a log reads it."""
    message = redact_text(error.message, upstream_secrets(exchange))
    return error if message == error.message else replace(error, message=message)


def redacted_stream_chunk(exchange: Exchange, chunk: bytes) -> bytes:
    """A relayed stream chunk that carries an error event, redacted; every other chunk goes untouched, so
    generated output is never rewritten and costs one substring search."""
    return redact_bytes(chunk, upstream_secrets(exchange)) if carries_error_event(chunk) else chunk


def timeout_error(exchange: Exchange) -> ApiError:
    upstream = exchange.upstream_route.upstream
    return ApiError(ErrorKind.TIMEOUT, f"Upstream {upstream.name} did not answer within {upstream.timeout:g} s")


def broken_stream_error(exchange: Exchange, exc: httpx.HTTPError) -> ApiError:
    if isinstance(exc, httpx.TimeoutException):
        return timeout_error(exchange)
    name = exchange.upstream_route.upstream.name
    return redacted(
        exchange, ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {name} broke off the answer: {exc}", status=502)
    )


def upstream_error(
    exchange: Exchange, status: int, content: bytes, headers: httpx.Headers | None = None
) -> ExchangeError:
    """An upstream's error answer, kept as the same kind and status, in whatever dialect the client speaks
    (`headers`: its Retry-After, and Bedrock's exception name in x-amzn-ErrorType)."""
    retry_after = headers.get("retry-after") if headers is not None else None
    name = exchange.upstream_route.upstream.name
    if status == 407:
        # The upstream's egress proxy (routing.upstream.network), not the upstream: a gateway failure to the
        # client, whose own proxy settings a 407 would wrongly blame.
        message = f"{name}: the egress proxy refused the proxy's credentials for this upstream (407)"
        return ExchangeError(ApiError(ErrorKind.UPSTREAM_ERROR, message, status=502), from_upstream=True)
    error_type = headers.get(BEDROCK_ERROR_TYPE_HEADER) if headers is not None else None
    error = parse_upstream_error(status, content, error_type=error_type)
    # An overload keeps its kind, not its number: Anthropic clients expect 529, the others 503.
    kept_status = None if error.kind is ErrorKind.OVERLOADED else status
    message = redact_text(f"{name}: {error.message}", upstream_secrets(exchange))
    return ExchangeError(
        ApiError(error.kind, message, status=kept_status, retry_after=retry_after or error.retry_after),
        from_upstream=True,
    )


async def open_upstream(exchange: Exchange, request: httpx.Request) -> httpx.Response:
    """Send the request and return the response with its body still unread. A cloud upstream's access token is
    put on here, just before sending (it may have been refreshed since the request was built)."""
    upstream = exchange.upstream_route.upstream
    if upstream.provider:
        try:
            exchange.credential = await authorize_cloud(request, upstream)
        except CloudCredentialsError as exc:
            logger.warning("upstream %s: %s", upstream.name, exc)
            error = ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {upstream.name}: {exc}", status=502)
            raise ExchangeError(redacted(exchange, error)) from exc
    capture = exchange.capture
    if capture is not None:
        capture.sent_upstream(str(request.url), request.content, request.headers.items())
    try:
        response = await http_client().send(request, stream=True)
        if capture is not None:
            capture.upstream_answered(response.status_code, response.headers.items())
        return response
    except httpx.TimeoutException as exc:
        raise ExchangeError(timeout_error(exchange)) from exc
    except httpx.HTTPError as exc:
        name = exchange.upstream_route.upstream.name
        error = ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {name} is unreachable: {exc}", status=502)
        raise ExchangeError(redacted(exchange, error)) from exc


async def read_body(exchange: Exchange, response: httpx.Response) -> bytes:
    """The whole body, up to UPSTREAM_MAX_BODY_BYTES counted after decompression as it arrives (httpx decodes
    gzip chunk by chunk): past it the upstream is dropped with a 502, whatever its Content-Length or content
    type claimed, so neither a huge answer nor a gzip bomb is ever held whole."""
    limit = settings.UPSTREAM_MAX_BODY_BYTES
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in upstream_chunks(exchange, response):
            size += len(chunk)
            if size > limit:
                error = too_large_error(exchange, "an answer", limit, "UPSTREAM_MAX_BODY_BYTES")
                raise ExchangeError(error, from_upstream=True)
            parts.append(chunk)
            if len(chunk) > _LARGE_PIECE:
                # A piece this large was inflated from a few KiB (gzip): let other requests run between them.
                await asyncio.sleep(0)
    except httpx.HTTPError as exc:
        raise ExchangeError(broken_stream_error(exchange, exc)) from exc
    return b"".join(parts)


def upstream_chunks(exchange: Exchange, response: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream's body as it arrives (decompressed); an exchange that captures its bodies keeps a reference
    to each chunk as it passes (usage.captures), one that does not reads httpx's own iterator."""
    chunks = response.aiter_bytes()
    return chunks if exchange.capture is None else exchange.capture.copy(chunks)


class StreamParser(Protocol):
    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def flush(self) -> list[SSEEvent]: ...


def event_parser(exchange: Exchange) -> StreamParser:
    """The parser for an upstream's event stream, holding at most UPSTREAM_MAX_EVENT_BYTES of one event: SSE, or
    Bedrock's event-stream framing (InvokeModel's unwrapped into the Anthropic events it carries). Either turns
    the bytes into `SSEEvent`s, so what reads them is the same."""
    limit = settings.UPSTREAM_MAX_EVENT_BYTES
    route = exchange.upstream_route
    if route.upstream.provider != bedrock.KIND:
        return SSEParser(limit)
    frames = EventStreamParser(limit)
    return bedrock.InvokeStreamParser(frames) if route.wire is Dialect.ANTHROPIC else frames


def reframed(exchange: Exchange) -> bool:
    """The upstream's stream has another framing than the client's (Bedrock's event stream to an SSE client):
    a stream of the same API must be parsed and written out again, not relayed byte for byte."""
    return (
        exchange.upstream_route.upstream.provider == bedrock.KIND and exchange.endpoint.dialect is not Dialect.BEDROCK
    )


def too_large_error(exchange: Exchange, what: str, limit: int, setting: str) -> ApiError:
    name = exchange.upstream_route.upstream.name
    message = f"Upstream {name} sent {what} larger than {limit} bytes (the proxy's {setting}); it was cut off there"
    return ApiError(ErrorKind.UPSTREAM_ERROR, message, status=502)


def unreadable_error(exchange: Exchange, exc: Exception) -> ApiError:
    """An upstream answer its codec could not read (a field of the wrong type, a missing key)."""
    name = exchange.upstream_route.upstream.name
    error = ApiError(
        ErrorKind.UPSTREAM_ERROR, f"Upstream {name} sent an answer that could not be read: {exc!r}", status=502
    )
    return redacted(exchange, error)


def relayed_headers(exchange: Exchange, response: httpx.Response) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in response.headers.items() if k.lower().startswith(RELAYED_RESPONSE_HEADER_PREFIXES)]
    route = exchange.upstream_route
    kept.append(("x-llmproxy-upstream", f"{route.upstream.name}/{route.upstream_model}"))
    if exchange.warnings:
        kept.append(("x-llmproxy-warnings", ", ".join(dict.fromkeys(exchange.warnings))))
    return encode_headers(kept)


def is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return "text/event-stream" in content_type or EVENT_STREAM_CONTENT_TYPE in content_type
