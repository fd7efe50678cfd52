"""The exchange pipeline: resolve → authorise → forward → relay, for every data-plane request.

Reads only the in-memory snapshot (no database query on this path) and answers every failure in the
client's own dialect with the status that failure deserves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings

from routing.asgi_io import (
    JSON_CONTENT_TYPE,
    SSE_HEADERS,
    BodyTooLarge,
    ClientDisconnected,
    Request,
    Send,
    cancel_on_disconnect,
    encode_headers,
    send_bytes,
    send_json,
)
from routing.endpoints import Action, Endpoint, match
from routing.live import live_config
from routing.registry import KeyRecord, Route, Snapshot
from routing.upstream import Operation, auth_headers, endpoint_url, http_client, timeout_for
from translation import catalog
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, error_body, parse_upstream_error, status_for, stream_error_event

logger = logging.getLogger(__name__)

# Client headers that carry meaning for an upstream of the same format; everything else stays here.
FORWARDED_REQUEST_HEADERS = {
    Dialect.ANTHROPIC: ("anthropic-version", "anthropic-beta"),
    Dialect.OPENAI_CHAT: ("openai-beta",),
    Dialect.OPENAI_RESPONSES: ("openai-beta",),
    Dialect.GEMINI: (),
}
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# Upstream response headers a client may use: ids for support requests, rate-limit state, retry hints.
RELAYED_RESPONSE_HEADER_PREFIXES = ("retry-after", "request-id", "x-request-id", "anthropic-ratelimit-", "x-ratelimit-")


class ExchangeError(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class Exchange:
    """What one request has established so far; also what the ledger will record."""

    request: Request
    endpoint: Endpoint
    send: Send
    key: KeyRecord | None = None
    route: Route | None = None
    response_started: bool = False


async def handle(request: Request, send: Send) -> None:
    endpoint = match(request.method, request.path, request.headers, request.query)
    exchange = Exchange(request, endpoint, send)
    try:
        await live_config.ensure_started()
        snapshot = live_config.snapshot
        match endpoint.action:
            case Action.GENERATE | Action.COUNT_TOKENS:
                await _forward(exchange, snapshot)
            case Action.LIST_MODELS | Action.GET_MODEL:
                await _models(exchange, snapshot)
            case Action.NOT_FOUND:
                raise ExchangeError(ApiError(ErrorKind.NOT_FOUND, f"Unknown endpoint: {request.method} {request.path}"))
    except ExchangeError as exc:
        await _send_error(exchange, exc.error)
    except ClientDisconnected:
        logger.info("client disconnected before sending its whole request")
    except Exception:
        logger.exception("unexpected failure on %s %s", request.method, request.path)
        await _send_error(exchange, ApiError(ErrorKind.UPSTREAM_ERROR, "Internal proxy error", status=500))


async def _send_error(exchange: Exchange, error: ApiError) -> None:
    if exchange.response_started:
        return
    dialect = exchange.endpoint.dialect
    headers = [(b"retry-after", error.retry_after.encode())] if error.retry_after else None
    await send_json(exchange.send, status_for(dialect, error), error_body(dialect, error), headers)


# --- keys -------------------------------------------------------------------------------------------------


def presented_key(request: Request) -> str | None:
    """The key, wherever this client's SDK puts it."""
    headers = request.headers
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer " and authorization[7:].strip():
        return authorization[7:].strip()
    return headers.get("x-goog-api-key") or headers.get("api-key") or request.query.get("key") or None


def _authenticate(exchange: Exchange, snapshot: Snapshot) -> str | None:
    """Sets `exchange.key`; returns the presented key (for upstreams that take the client's own key)."""
    presented = presented_key(exchange.request)
    if presented:
        exchange.key = snapshot.authenticate(presented, datetime.now(UTC))
        if exchange.key is not None:
            live_config.note_key_used(exchange.key.id)
    return presented


def _unauthenticated(presented: str | None) -> ExchangeError:
    if not presented:
        message = "Missing API key: send your proxy key as x-api-key, Authorization: Bearer, x-goog-api-key or ?key="
    else:
        message = "Invalid proxy key: it is unknown, expired or revoked"
    return ExchangeError(ApiError(ErrorKind.AUTHENTICATION, message))


# --- models -----------------------------------------------------------------------------------------------


async def _models(exchange: Exchange, snapshot: Snapshot) -> None:
    presented = _authenticate(exchange, snapshot)
    if exchange.key is None:
        raise _unauthenticated(presented)
    dialect = exchange.endpoint.dialect
    owners = {name: snapshot.upstreams[rule.upstream_id].name for name, rule in snapshot.exact_aliases.items()}
    if exchange.endpoint.action is Action.LIST_MODELS:
        entries = [catalog.model_entry(dialect, name, owners[name]) for name in snapshot.model_names()]
        await send_json(exchange.send, 200, catalog.model_list(dialect, entries))
        return
    requested = exchange.endpoint.model or ""
    route = snapshot.resolve(requested)
    if route is None:
        raise ExchangeError(ApiError(ErrorKind.NOT_FOUND, f"Model {requested!r} is not configured on this proxy"))
    name = requested.removeprefix("models/")
    await send_json(exchange.send, 200, catalog.model_entry(dialect, name, route.upstream.name))


# --- generation and token counting ------------------------------------------------------------------------


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, f"Request body is not valid JSON: {exc}")) from exc
    if not isinstance(payload, dict):
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, "Request body must be a JSON object"))
    return payload


async def _forward(exchange: Exchange, snapshot: Snapshot) -> None:
    endpoint = exchange.endpoint
    try:
        raw = await exchange.request.body(settings.MAX_REQUEST_BYTES)
    except BodyTooLarge as exc:
        limit = settings.MAX_REQUEST_BYTES
        raise ExchangeError(ApiError(ErrorKind.REQUEST_TOO_LARGE, f"Request body exceeds {limit} bytes")) from exc
    payload = _parse_body(raw)
    presented = _authenticate(exchange, snapshot)

    model = endpoint.model if endpoint.dialect is Dialect.GEMINI else payload.get("model")
    if not isinstance(model, str) or not model:
        if exchange.key is None:
            raise _unauthenticated(presented)
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, "Missing required field: model", param="model"))
    route = snapshot.resolve(model)
    credential = _credential(exchange, route, presented)
    if route is None:
        raise ExchangeError(
            ApiError(ErrorKind.NOT_FOUND, f"Model {model!r} is not configured on this proxy", param="model")
        )
    exchange.route = route

    if route.upstream.format is not endpoint.dialect:
        if endpoint.action is Action.COUNT_TOKENS:
            await _estimate_tokens(exchange, raw)
            return
        raise ExchangeError(
            ApiError(
                ErrorKind.INVALID_REQUEST,
                f"Model {model!r} is served by a {route.upstream.format.label} upstream; translation from "
                f"{endpoint.dialect.label} is not available in this version",
                status=501,
            )
        )
    if endpoint.dialect is not Dialect.GEMINI:
        payload["model"] = route.upstream_model
    stream = endpoint.stream if endpoint.stream is not None else payload.get("stream") is True
    operation = Operation.COUNT_TOKENS if endpoint.action is Action.COUNT_TOKENS else Operation.GENERATE
    upstream_request = http_client().build_request(
        "POST",
        endpoint_url(route.upstream, operation, route.upstream_model, stream),
        content=json.dumps(payload).encode(),
        headers=_upstream_headers(exchange, route, credential, stream),
        params=dict(route.upstream.query_params) or None,
        timeout=timeout_for(route.upstream),
    )
    await cancel_on_disconnect(exchange.request, _relay(exchange, upstream_request, stream))


def _credential(exchange: Exchange, route: Route | None, presented: str | None) -> str | None:
    if exchange.key is not None:
        return route.upstream.credential if route else None
    if route is not None and route.upstream.forward_client_key and presented:
        return presented
    raise _unauthenticated(presented)


def _upstream_headers(exchange: Exchange, route: Route, credential: str | None, stream: bool) -> list[tuple[str, str]]:
    client_headers = exchange.request.headers
    headers = [("content-type", "application/json"), ("user-agent", "llmproxy/0.1")]
    for name in FORWARDED_REQUEST_HEADERS[route.upstream.format]:
        if name in client_headers:
            headers.append((name, client_headers[name]))
    if route.upstream.format is Dialect.ANTHROPIC and "anthropic-version" not in client_headers:
        headers.append(("anthropic-version", DEFAULT_ANTHROPIC_VERSION))
    if stream:
        headers.append(("accept-encoding", "identity"))  # a compressed stream could not be relayed chunk by chunk
    headers.extend(route.upstream.headers)
    headers.extend(auth_headers(route.upstream, credential))
    return headers


def _relayed_headers(exchange: Exchange, response: httpx.Response) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in response.headers.items() if k.lower().startswith(RELAYED_RESPONSE_HEADER_PREFIXES)]
    route = exchange.route
    if route is not None:
        kept.append(("x-llmproxy-upstream", f"{route.upstream.name}/{route.upstream_model}"))
    return encode_headers(kept)


async def _relay(exchange: Exchange, upstream_request: httpx.Request, stream: bool) -> None:
    route = exchange.route
    assert route is not None
    upstream = route.upstream
    try:
        response = await http_client().send(upstream_request, stream=True)
    except httpx.TimeoutException as exc:
        raise ExchangeError(_timeout_error(upstream.name, upstream.timeout)) from exc
    except httpx.HTTPError as exc:
        raise ExchangeError(
            ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {upstream.name} is unreachable: {exc}", status=502)
        ) from exc
    try:
        headers = _relayed_headers(exchange, response)
        is_event_stream = "text/event-stream" in response.headers.get("content-type", "")
        if response.status_code >= 400 or not stream or not is_event_stream:
            await _relay_whole(exchange, response, headers)
        else:
            await _relay_stream(exchange, response, headers)
    finally:
        await response.aclose()


def _timeout_error(upstream_name: str, seconds: float) -> ApiError:
    return ApiError(ErrorKind.TIMEOUT, f"Upstream {upstream_name} did not answer within {seconds:g} s")


async def _relay_whole(exchange: Exchange, response: httpx.Response, headers: list[tuple[bytes, bytes]]) -> None:
    route = exchange.route
    assert route is not None
    try:
        content = await response.aread()
    except httpx.TimeoutException as exc:
        raise ExchangeError(_timeout_error(route.upstream.name, route.upstream.timeout)) from exc
    except httpx.HTTPError as exc:
        raise ExchangeError(
            ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {route.upstream.name} failed: {exc}", status=502)
        ) from exc
    content_type = response.headers.get("content-type", "")
    if response.status_code >= 400 and "json" not in content_type:
        # Same dialect on both sides, so a JSON error body is already what the client expects; anything
        # else (an HTML page from a load balancer) is wrapped into the client's error envelope.
        error = parse_upstream_error(response.status_code, content)
        error = ApiError(error.kind, f"{route.upstream.name}: {error.message}", status=response.status_code)
        raise ExchangeError(error)
    exchange.response_started = True
    await send_bytes(exchange.send, response.status_code, content, content_type.encode() or JSON_CONTENT_TYPE, headers)


async def _relay_stream(exchange: Exchange, response: httpx.Response, headers: list[tuple[bytes, bytes]]) -> None:
    route = exchange.route
    assert route is not None
    send = exchange.send
    await send({"type": "http.response.start", "status": response.status_code, "headers": SSE_HEADERS + headers})
    exchange.response_started = True
    try:
        async for chunk in response.aiter_bytes():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.TimeoutException:
        error = _timeout_error(route.upstream.name, route.upstream.timeout)
        await send({"type": "http.response.body", "body": stream_error_event(exchange.endpoint.dialect, error)})
        return
    except httpx.HTTPError as exc:
        error = ApiError(ErrorKind.UPSTREAM_ERROR, f"Upstream {route.upstream.name} broke off the stream: {exc}")
        await send({"type": "http.response.body", "body": stream_error_event(exchange.endpoint.dialect, error)})
        return
    await send({"type": "http.response.body", "body": b""})


async def _estimate_tokens(exchange: Exchange, raw: bytes) -> None:
    """A rough local count (about four bytes of JSON per token) for upstreams that cannot count this dialect."""
    exchange.response_started = True
    estimate = max(1, len(raw) // 4)
    headers = [(b"x-llmproxy-estimated", b"true")]
    await send_json(exchange.send, 200, catalog.token_count(exchange.endpoint.dialect, estimate), headers)
