"""A generation over an alias's targets: the one place that decides where a request goes, and where it goes
next when an upstream fails before anything reached the client.

An attempt is one target with one of its upstream's keys. It is retried elsewhere when it failed before the
proxy sent the client a byte: the connection could not be made or broke, no answer came in time, or the answer
was 429, 500, 502, 503, 504 or 529 (Anthropic's "overloaded"). Never after the answer began, and never for
400, 401, 403, 404 or 413: those are the request's own fault (or, with a single key, the key's), and another
target would say the same. A pool key the upstream refused (401/403) or rate-limited (429) rests alone and the
same target is tried with the next key. At most ROUTING_MAX_ATTEMPTS attempts; the last one's answer, whatever
it is, goes to the client as it would without failover.

Which target comes first, and whether a target is resting, is routing.upstream.health's; each attempt's
request is planned for its own target (routing.dataplane.plan), so targets of other APIs are translated to.
The ledger row records every failed attempt and the target that served.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from routing.config.registry import Route, Target
from routing.dataplane.conversations import Recorder
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.plan import Plan, plan_generation
from routing.dataplane.relay import relay
from routing.dataplane.upstream_call import open_upstream, read_body, upstream_error
from routing.upstream.health import health, parse_retry_after
from translation.errors import ApiError, ErrorKind
from translation.ir import Message

# Answers that say "not now" about the target, not "no" about the request.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
# Answers that are about the key itself: with a pool, another key may do.
KEY_STATUSES = frozenset({401, 403, 429})


@dataclass
class _Attempt:
    target: Target
    key_index: int
    plan: Plan


async def generate(
    exchange: Exchange, payload: dict[str, Any], history: tuple[Message, ...] | None, recorder: Recorder | None
) -> None:
    route = exchange.upstream_route
    own_key = exchange.key is None  # the client's own key, forwarded: its one target, nothing to fail over to
    targets = (route.target,) if own_key or not route.targets else route.targets
    queue = deque(health.order(route.alias or route.requested_model, targets))
    limit = max(1, int(settings.ROUTING_MAX_ATTEMPTS))
    warnings_before = len(exchange.warnings)
    tried = 0
    last_failure: ExchangeError | None = None
    unplanned: ExchangeError | None = None
    while queue:
        target = queue.popleft()
        del exchange.warnings[warnings_before:]  # each plan notes its own translation's warnings
        try:
            attempt = _begin(exchange, route.via(target), target, own_key, payload, history, recorder)
        except ExchangeError as exc:
            # This target cannot take the request (a prompt beyond its context window, a feature its API lacks):
            # nothing was sent and the target is not at fault; another target may take it.
            unplanned = exc
            if queue:
                _note_failure(exchange, target, 0, exc.error)
            continue
        if not await health.may_try(target):  # half-open, and another request holds its trial
            continue
        tried += 1
        exchange.record.attempts = tried
        final = tried >= limit
        health.started(target)
        try:
            try:
                response = await open_upstream(exchange, attempt.plan.request)
            except ExchangeError as exc:  # no answer at all: nothing was sent, the next target may do
                health.failed(target, exc.error.message)
                if final or not queue:
                    raise
                _note_failure(exchange, target, 0, exc.error)
                last_failure = exc
                continue
            status = response.status_code
            retry_same = _key_failure(exchange, target, attempt.key_index, status, response, own_key)
            retryable = status in RETRY_STATUSES or retry_same
            if retryable and not final and (queue or retry_same):
                failure = await _failure(exchange, response)
                if not retry_same:
                    health.failed(target, failure.error.message, _rest(status, response, failure.error))
                _note_failure(exchange, target, status, failure.error)
                last_failure = failure
                if retry_same:
                    queue.appendleft(target)
                continue
            if status < 400:
                health.succeeded(target)
            elif status in RETRY_STATUSES and not retry_same:
                health.failed(target, f"answered {status}", _rest(status, response, None))
            exchange.record.fallback = tried > 1 or target.fallback or unplanned is not None
            await relay(exchange, attempt.plan, recorder, response)
            return
        finally:
            health.finished(target)
    # Every target was resting mid-trial, could not take the request, or the attempts ran out on failures: the
    # last failure speaks, else why the request could not be sent.
    if last_failure is not None:
        raise last_failure
    if unplanned is not None:
        raise unplanned
    message = f"Every target of {route.alias or route.requested_model} is resting; try again shortly"
    raise ExchangeError(ApiError(ErrorKind.OVERLOADED, message))


def _begin(
    exchange: Exchange,
    route: Route,
    target: Target,
    own_key: bool,
    payload: dict[str, Any],
    history: tuple[Message, ...] | None,
    recorder: Recorder | None,
) -> _Attempt:
    """Route the exchange to `target` with one of its keys and plan its request (a copy of the body: a plan
    writes its model and options into it)."""
    exchange.routed(route)
    key_index = 0
    if not own_key:
        key_index, exchange.credential = health.pick_key(target.upstream)
    plan = plan_generation(exchange, dict(payload), history, keep_conversation=recorder is not None)
    return _Attempt(target, key_index, plan)


def _key_failure(
    exchange: Exchange, target: Target, index: int, status: int, response: httpx.Response, own_key: bool
) -> bool:
    """A pool key answered for itself (refused, or rate-limited): it rests, and the same target may go on with
    another key. Returns whether it may."""
    upstream = target.upstream
    if own_key or status not in KEY_STATUSES or len(upstream.credentials) < 2:
        return False
    if status == 429:
        rest = parse_retry_after(response.headers) or settings.CIRCUIT_COOLDOWN
    else:
        rest = settings.KEY_REJECTED_COOLDOWN
    health.rest_key(upstream, index, rest)
    return health.other_key_awake(upstream, index)


def _rest(status: int, response: httpx.Response, error: ApiError | None) -> float | None:
    """How long a 429 asks the target to be left alone: its Retry-After header, or the delay its error body
    names (Gemini's RetryInfo); None for other statuses, which only count towards opening the circuit."""
    if status != 429:
        return None
    rest = parse_retry_after(response.headers)
    if rest is None and error is not None and error.retry_after:
        rest = parse_retry_after({"retry-after": error.retry_after})
    return rest


async def _failure(exchange: Exchange, response: httpx.Response) -> ExchangeError:
    """An error answer that will not reach the client, read (and the connection freed) for the ledger."""
    try:
        content = await read_body(exchange, response)
    except ExchangeError as exc:
        return exc
    finally:
        await response.aclose()
    return upstream_error(exchange, response.status_code, content, response.headers)


def _note_failure(exchange: Exchange, target: Target, status: int, error: ApiError) -> None:
    exchange.record.failed_attempts.append(
        {"target": target.name, "status": status, "error": error.kind.value, "message": error.message[:300]}
    )
