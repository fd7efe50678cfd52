"""The exchange pipeline: resolve → authorise → forward → relay, for every data-plane request.

Reads only the in-memory snapshot (no database query on this path) and answers every failure in the
client's own dialect with the status that failure deserves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from routing.asgi_io import BodyTooLarge, ClientDisconnected, Request, Send, cancel_on_disconnect, send_json
from routing.context import Exchange, ExchangeError
from routing.conversations import http_continuation
from routing.counting import count_tokens
from routing.endpoints import Action, match
from routing.limits import admit
from routing.live import live_config
from routing.policy import access_names
from routing.registry import Route, Snapshot
from routing.relay import build_upstream_request, relay_passthrough
from routing.translated import forward_translated
from routing.upstream import Operation
from translation import catalog
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, error_body, status_for
from translation.openai_chat import wire as chat_wire
from usage import ledger
from usage.clients import identify

logger = logging.getLogger(__name__)


async def handle(request: Request, send: Send) -> None:
    endpoint = match(request.method, request.path, request.headers, request.query)
    exchange = Exchange(request, endpoint, send)
    record = exchange.record
    metered = endpoint.action in (Action.GENERATE, Action.COUNT_TOKENS)
    if metered:
        ledger.begin_exchange(record)
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
        record.failed(exc.error, status_for(endpoint.dialect, exc.error), from_upstream=exc.from_upstream)
        await _send_error(exchange, exc.error)
    except ClientDisconnected:
        record.cancelled()
        logger.info("client disconnected before sending its whole request")
    except asyncio.CancelledError:
        record.cancelled()  # the server dropped the connection (client gone, or shutting down)
        raise
    except Exception:
        logger.exception("unexpected failure on %s %s", request.method, request.path)
        error = ApiError(ErrorKind.UPSTREAM_ERROR, "Internal proxy error", status=500)
        record.failed(error, 500, from_upstream=False)
        await _send_error(exchange, error)
    finally:
        if metered:
            ledger.record_exchange(record)
        if exchange.admission is not None:
            exchange.admission.finish(record.usage)


async def _send_error(exchange: Exchange, error: ApiError) -> None:
    if exchange.response_started:
        return
    dialect = exchange.endpoint.dialect
    headers = [(b"retry-after", error.retry_after.encode())] if error.retry_after else []
    if error.kind is ErrorKind.BUDGET_EXHAUSTED:
        headers.append((b"x-should-retry", b"false"))  # the SDKs (and Claude Code) would retry a 429 in vain
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
        key = snapshot.authenticate(presented, datetime.now(UTC))
        if key is not None:
            exchange.authenticated(key)
            live_config.note_key_used(key.id)
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
        rules = exchange.key.rules
        names = [name for name in snapshot.model_names() if rules.allows_model(access_names(name, name))]
        entries = [catalog.model_entry(dialect, name, owners[name]) for name in names]
        await send_json(exchange.send, 200, catalog.model_list(dialect, entries))
        return
    requested = exchange.endpoint.model or ""
    route = snapshot.resolve(requested)
    if route is None:
        raise ExchangeError(ApiError(ErrorKind.NOT_FOUND, f"Model {requested!r} is not configured on this proxy"))
    check_access(exchange, route)
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
    if not exchange.record.client_session and "metadata" in payload:
        exchange.record.client_session = identify(exchange.request.headers, payload).session
    route = authorize_route(exchange, snapshot, payload)
    operation = Operation.COUNT_TOKENS if endpoint.action is Action.COUNT_TOKENS else Operation.GENERATE
    stream = endpoint.stream if endpoint.stream is not None else payload.get("stream") is True
    if operation is Operation.GENERATE:
        await admit(exchange, stream)  # budgets and rate limits (nothing to do for a key without any)

    if route.upstream.format is not endpoint.dialect or (
        operation is Operation.GENERATE and route.shaping.rewrites_requests
    ):
        if operation is Operation.COUNT_TOKENS:
            await count_tokens(exchange, payload)
            return
        history, on_response = await http_continuation(exchange, payload)
        work = forward_translated(exchange, payload, history, on_response)
        if not await cancel_on_disconnect(exchange.request, work):
            exchange.record.cancelled()
        return
    if endpoint.dialect is not Dialect.GEMINI:
        payload["model"] = route.upstream_model
    exchange.record.stream = stream
    # Without it the ledger would see no usage; the client still gets only the chunks it asked for.
    hide_usage_chunk = endpoint.dialect is Dialect.OPENAI_CHAT and chat_wire.usage_not_requested(payload)
    if hide_usage_chunk:
        chat_wire.with_usage_requested(payload)
    upstream_request = build_upstream_request(exchange, operation, payload, stream)
    work = relay_passthrough(exchange, upstream_request, stream, hide_usage_chunk=hide_usage_chunk)
    if not await cancel_on_disconnect(exchange.request, work):
        exchange.record.cancelled()


def authorize_route(exchange: Exchange, snapshot: Snapshot, payload: dict[str, Any]) -> Route:
    """Check the key and resolve the model: sets `exchange.key`, `.route` and `.credential`, or raises."""
    endpoint = exchange.endpoint
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
    exchange.routed(route)
    exchange.credential = credential
    check_access(exchange, route)
    return route


def check_access(exchange: Exchange, route: Route) -> None:
    """Refuse a model outside the model access lists of the key, its user or their groups (403)."""
    key = exchange.key
    if key is None or not key.rules.access:
        return
    level = key.rules.refusing_level(access_names(route.requested_model, route.alias))
    if level is not None:
        allowed = ", ".join(level.entries)
        message = f"Model {route.requested_model!r} is not allowed for {level.who} (allowed: {allowed})"
        raise ExchangeError(ApiError(ErrorKind.PERMISSION, message, param="model"))


def _credential(exchange: Exchange, route: Route | None, presented: str | None) -> str | None:
    if exchange.key is not None:
        return route.upstream.credential if route else None
    if route is not None and route.upstream.forward_client_key and presented:
        return presented
    raise _unauthenticated(presented)
