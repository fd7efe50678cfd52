"""The exchange pipeline: resolve → authorise → admit → plan → relay → record, for every data-plane request,
whichever transport it came over (HTTP, or a `response.create` frame of the Responses WebSocket).

Reads only the in-memory snapshot (no database query on this path, but for the documented exceptions in
docs/architecture.md) and answers every failure in the client's own dialect, through the exchange's sink.
`serve` is the one place that owns the beginning and the end of an exchange: the ledger record, the
errors, the release of what admission took.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from routing.access.limits import Refused, admit
from routing.access.policy import access_names
from routing.config.registry import Route, Snapshot
from routing.dataplane import failover
from routing.dataplane.asgi_io import ClientDisconnected, Request, Send, cancel_on_disconnect
from routing.dataplane.conversations import ConnectionHistory, continuation
from routing.dataplane.counting import count_tokens
from routing.dataplane.endpoints import match
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.plan import Plan, decode_client_request
from routing.dataplane.relay import relay
from routing.dataplane.sinks import HttpSink
from routing.dataplane.upstream_call import build_upstream_request, upstream_secrets
from routing.runtime import drain
from routing.runtime.live import live_config
from routing.upstream import bedrock
from translation import catalog
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, status_for
from translation.operation import Operation
from usage import captures, ledger
from usage.clients import identify

logger = logging.getLogger(__name__)

INTERNAL_ERROR = ApiError(ErrorKind.UPSTREAM_ERROR, "Internal proxy error", status=500)
SERVER_STOPPED = ApiError(ErrorKind.UNAVAILABLE, "The server shut down before the answer was complete", status=503)


async def serve(exchange: Exchange, work: Callable[[], Awaitable[None]]) -> ApiError | None:
    """Run one exchange's `work` and own its end: the error the client is told (in its dialect, through the
    sink), the ledger row, and the release of rate-limit counters. Returns the error that ended it, if any
    (`INTERNAL_ERROR` for a proxy bug)."""
    record = exchange.record
    metered = exchange.metered
    if metered:
        ledger.begin_exchange(record)
    failure: ApiError | None = None
    try:
        await work()
    except ExchangeError as exc:
        failure = exc.error
        record.failed(exc.error, status_for(exchange.endpoint.dialect, exc.error), from_upstream=exc.from_upstream)
        await exchange.sink.fail(exc.error)
    except ClientDisconnected:
        record.cancelled()
    except asyncio.CancelledError:
        record.cancelled()  # the server dropped the connection (client gone, or shutting down)
        if drain.draining():  # cut by the server's stop past its grace: the client is told, in its dialect
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await exchange.sink.fail(SERVER_STOPPED)
        raise
    except Exception:
        logger.exception("unexpected failure on %s %s", exchange.request.method, exchange.request.path)
        failure = INTERNAL_ERROR
        record.failed(INTERNAL_ERROR, 500, from_upstream=False)
        with contextlib.suppress(ClientDisconnected):  # nobody left to tell
            await exchange.sink.fail(INTERNAL_ERROR)
    finally:
        # What admission took is given back first and whatever else fails: a slot kept by mistake would refuse
        # the key's streams for good. The record never raises (usage.ledger.record_exchange).
        try:
            if exchange.admission is not None:
                exchange.admission.finish(record.usage)
        except Exception:
            logger.exception("rate-limit counters of %s %s could not be given back", exchange.request.method, record.id)
        finally:
            if metered:
                ledger.record_exchange(record)  # a row only for a known key; the metrics count every exchange
            if exchange.capture is not None:
                captures.submit(exchange.capture, record.status, record.requested_model, upstream_secrets(exchange))
    return failure


async def handle_http(request: Request, read_body: Callable[[], Awaitable[bytes | None]], send: Send) -> None:
    """An HTTP data-plane request, from its head. The body is read (`read_body`: None when it is over
    MAX_REQUEST_BYTES, and then not read further) only once the head has not already refused the request: a
    Content-Length over the limit, or no key that could let it through (key first)."""
    endpoint = match(request.method, request.path, request.headers, request.query)
    exchange = Exchange(request, endpoint, HttpSink(endpoint.dialect, send, aws=endpoint.aws))

    async def work() -> None:
        await live_config.ensure_started()
        snapshot = live_config.snapshot
        match endpoint.operation:
            case Operation.GENERATE | Operation.COUNT_TOKENS:
                if _declared_length(request) > settings.MAX_REQUEST_BYTES:
                    raise _too_large()
                refuse_unauthenticated(exchange, snapshot)
                body = await read_body()
                if body is None:
                    raise _too_large()
                exchange.client_body = body
                payload = await _parse_request_body(body)
                if endpoint.aws and endpoint.dialect is Dialect.ANTHROPIC:
                    payload = _from_invoke_body(exchange, payload)
                if not await cancel_on_disconnect(request, forward(exchange, snapshot, payload)):
                    exchange.record.cancelled()
            case Operation.LIST_MODELS | Operation.GET_MODEL:
                await _models(exchange, snapshot)
            case None:
                raise ExchangeError(
                    ApiError(ErrorKind.NOT_FOUND, f"Unknown endpoint: {request.method} {request.full_path}")
                )

    await serve(exchange, work)


def _from_invoke_body(exchange: Exchange, payload: dict[str, Any]) -> dict[str, Any]:
    """An InvokeModel body (Anthropic's Messages as Bedrock takes them) as the Messages API takes it: the model
    and `stream` from the path, the betas from `anthropic_beta` into the `anthropic-beta` header."""
    endpoint = exchange.endpoint
    betas = payload.pop("anthropic_beta", None)
    payload.pop("anthropic_version", None)
    if isinstance(betas, list) and betas and "anthropic-beta" not in exchange.request.headers:
        exchange.request.headers["anthropic-beta"] = ",".join(str(beta) for beta in betas)
    return {**payload, "model": endpoint.model, "stream": bool(endpoint.stream)}


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _too_large() -> ExchangeError:
    return ExchangeError(
        ApiError(ErrorKind.REQUEST_TOO_LARGE, f"Request body exceeds {settings.MAX_REQUEST_BYTES} bytes")
    )


# Bodies from this size on are parsed on a worker thread, so that one large request cannot stall the others:
# 1 MB of JSON takes about 25 ms to parse. Smaller ones parse on the event loop, with no thread hop.
PARSE_OFF_LOOP_BYTES = 256 * 1024


async def _parse_request_body(body: bytes) -> dict[str, Any]:
    if len(body) < PARSE_OFF_LOOP_BYTES:
        return parse_body(body, "Request body")
    return await asyncio.to_thread(parse_body, body, "Request body", yield_gil=True)


def _same_object(pairs: dict[str, Any]) -> dict[str, Any]:
    return pairs


def parse_body(raw: bytes | str, what: str, *, yield_gil: bool = False) -> dict[str, Any]:
    """`yield_gil`: for a parse on a worker thread. The C decoder holds the GIL for a whole `json.loads`, so a
    thread alone would still stall the event loop (0.85 s for 45 MB, measured); a Python `object_hook` runs
    bytecode after every object, where the interpreter lets the event loop's thread in (40 ms at most), at about
    40 % more parse time."""
    try:
        payload = json.loads(raw, object_hook=_same_object if yield_gil else None)
    except ValueError as exc:
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, f"{what} is not valid JSON: {exc}")) from exc
    except RecursionError as exc:  # the parser recurses per level: a body thousands of levels deep is refused
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, f"{what} is nested too deeply")) from exc
    if not isinstance(payload, dict):
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, f"{what} must be a JSON object"))
    return payload


async def forward(
    exchange: Exchange, snapshot: Snapshot, payload: dict[str, Any], connection: ConnectionHistory | None = None
) -> None:
    """Generation or token counting, for either transport. `connection`: the Responses WebSocket's own
    conversation history."""
    if not exchange.record.client_session and "metadata" in payload:
        exchange.record.client_session = identify(exchange.request.headers, payload).session
    route = authorize_route(exchange, snapshot, payload, connection)
    if exchange.key is not None and (exchange.key.capture or route.capture):
        exchange.start_capture()
    counting = exchange.endpoint.operation is Operation.COUNT_TOKENS
    stream = not counting and (
        exchange.endpoint.stream if exchange.endpoint.stream is not None else payload.get("stream") is True
    )
    key = exchange.key
    if counting and key is not None and key.rules.budgets:
        key = dataclasses.replace(key, rules=dataclasses.replace(key.rules, budgets=()))  # a count costs nothing
    try:
        # Token counts pass the rate limits too: they are requests to an upstream like the rest (nothing to do
        # for a key without limits).
        exchange.admission = await admit(key, stream)
    except Refused as exc:
        raise ExchangeError(exc.error) from exc
    if counting:
        await _count(exchange, route, payload)
        return
    history, recorder = await continuation(exchange, payload, connection)
    await failover.generate(exchange, payload, history, recorder)


async def _count(exchange: Exchange, route: Route, payload: dict[str, Any]) -> None:
    if route.wire is not exchange.endpoint.dialect or route.upstream.provider == bedrock.KIND:
        await count_tokens(exchange, payload)
        return
    if exchange.endpoint.dialect is not Dialect.GEMINI:
        payload["model"] = route.upstream_model
    request = build_upstream_request(exchange, Operation.COUNT_TOKENS, payload, stream=False)
    await relay(exchange, Plan(request, False, False, None, None, ()))


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


def refuse_unauthenticated(exchange: Exchange, snapshot: Snapshot) -> None:
    """Key first, from the head, before the body is read or parsed: the 401 unless the presented key is a proxy
    key, or may be the client's own key for an upstream that forwards it (then the model decides, which is in
    the body, or in the path for Gemini)."""
    presented = presented_key(exchange.request)
    if presented:
        if snapshot.authenticate(presented, datetime.now(UTC)) is not None:
            return
        if exchange.endpoint.model is not None:  # Gemini: the route is known from the path
            route = snapshot.resolve(exchange.endpoint.model)
            if route is not None and route.upstream.forward_client_key:
                return
        elif any(upstream.forward_client_key for upstream in snapshot.upstreams.values()):
            return
    raise _unauthenticated(presented, exchange.request)


def _authenticate(exchange: Exchange, snapshot: Snapshot) -> str | None:
    """Sets `exchange.key`; returns the presented key (for upstreams that take the client's own key)."""
    presented = presented_key(exchange.request)
    if presented:
        key = snapshot.authenticate(presented, datetime.now(UTC))
        if key is not None:
            exchange.authenticated(key)
            live_config.note_key_used(key.id)
    return presented


def _unauthenticated(presented: str | None, request: Request | None = None) -> ExchangeError:
    if request is not None and request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
        message = (
            "This proxy does not take AWS signatures: send your proxy key as a Bedrock API key "
            "(Authorization: Bearer, which AWS's SDKs send when AWS_BEARER_TOKEN_BEDROCK is set)"
        )
        return ExchangeError(ApiError(ErrorKind.AUTHENTICATION, message))
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
    if exchange.endpoint.operation is Operation.LIST_MODELS:
        rules = exchange.key.rules
        under = exchange.request.prefix
        prefix = snapshot.prefixes.get(under)
        names = [
            name
            for name in snapshot.model_names()
            if rules.allows_model(access_names(name, name)) and (not under or (prefix and prefix.allows((name,))))
        ]
        entries = [catalog.model_entry(dialect, name, owners[name]) for name in names]
        await exchange.sink.json(200, catalog.model_list(dialect, entries))
        return
    requested = exchange.endpoint.model or ""
    route = reachable(exchange, snapshot, snapshot.resolve(requested))
    if route is None:
        raise ExchangeError(ApiError(ErrorKind.NOT_FOUND, f"Model {requested!r} is not configured on this proxy"))
    check_access(exchange, route)
    name = requested.removeprefix("models/")
    await exchange.sink.json(200, catalog.model_entry(dialect, name, route.upstream.name))


# --- routes -----------------------------------------------------------------------------------------------


def authorize_route(
    exchange: Exchange, snapshot: Snapshot, payload: dict[str, Any], connection: ConnectionHistory | None = None
) -> Route:
    """Check the key and resolve the model: sets `exchange.key`, `.route` and `.credential`, or raises.
    `connection`: the Responses WebSocket's own history, which a scenario is judged with."""
    endpoint = exchange.endpoint
    presented = _authenticate(exchange, snapshot)
    model = endpoint.model if endpoint.dialect in (Dialect.GEMINI, Dialect.BEDROCK) else payload.get("model")
    if not isinstance(model, str) or not model:
        if exchange.key is None:
            raise _unauthenticated(presented, exchange.request)
        raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, "Missing required field: model", param="model"))
    route = reachable(exchange, snapshot, snapshot.resolve(model))
    credential = _credential(exchange, route, presented)
    if route is None:
        exchange.record.requested_model = model  # the ledger names what was asked for, routed or not
        raise _model_not_found(model)
    exchange.routed(route)
    exchange.credential = credential
    check_access(exchange, route)
    if route.scenarios:
        route, credential = _scenario_route(exchange, route, payload, presented, credential, connection)
        exchange.routed(route)
        exchange.credential = credential
    return route


def _model_not_found(model: str) -> ExchangeError:
    return ExchangeError(
        ApiError(ErrorKind.NOT_FOUND, f"Model {model!r} is not configured on this proxy", param="model")
    )


def reachable(exchange: Exchange, snapshot: Snapshot, route: Route | None) -> Route | None:
    """The route, unless the request came under a path prefix that does not reach it (then None, answered like
    an unknown model: a prefix's clients learn nothing of the other aliases)."""
    prefix = exchange.request.prefix
    if not prefix or route is None:
        return route
    access = snapshot.prefixes.get(prefix)
    if access is None or not access.allows(access_names(route.requested_model, route.alias)):
        return None
    return route


def _scenario_route(
    exchange: Exchange,
    route: Route,
    payload: dict[str, Any],
    presented: str | None,
    credential: str | None,
    connection: ConnectionHistory | None,
) -> tuple[Route, str | None]:
    """The alias's scenario target for this request, if one matches (routing.config.scenarios). The body is
    decoded here, once for the exchange (the plan reads the same decode and notes its warnings); one the codec
    refuses keeps the alias's target, and the plan reports the error. A WebSocket turn that continues one of the
    connection's responses is judged with that conversation (held in memory); a continuation over HTTP by its new
    input only (its history would be a database read)."""
    try:
        decoded = decode_client_request(exchange, payload, noted=False)
    except ExchangeError:
        return route, credential
    previous = decoded.previous_response_id
    history = connection.get(previous) if connection is not None and previous else None
    if history:
        decoded = dataclasses.replace(decoded, messages=(*history, *decoded.messages))
    chosen = route.for_request(decoded)
    if chosen is route:
        return route, credential
    try:
        return chosen, _credential(exchange, chosen, presented)
    except ExchangeError:  # the client's own key, for an upstream that does not take it: stay on the alias's target
        return route, credential


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
