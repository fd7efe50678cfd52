"""Knowing an upstream works: ask it for its model list with its credential, as the proxy would call it.

The request goes through the same transport, egress proxy and TLS setting as real traffic, with the headers the
data plane sends (routing.upstream.client.upstream_headers); a format's model list is `GET /v1/models` (OpenAI,
Anthropic) or `GET /v1beta/models` (Gemini), read page by page (the answers' shapes are translation.catalog's).
Where there is none (an Azure deployment URL, a server that answers 404), one request for one output token to the
model of one of its aliases tells instead. Nothing reported ever holds the credential: upstream messages are
redacted. What to check is read from the database by routing.config.upstream_check (this module does I/O only).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from routing.config.registry import UpstreamRoute
from routing.upstream.client import (
    CloudCredentialsError,
    _openai_root,
    authorize_cloud,
    cloud_body,
    endpoint_url,
    network_extension,
    upstream_headers,
)
from routing.upstream.network import proxy_for
from routing.upstream.transport import AiohttpTransport
from translation import catalog
from translation.dialect import Dialect
from translation.errors import parse_upstream_error
from translation.operation import Operation
from translation.redaction import SECRET_NAME, redact_text

# A model list longer than this many pages is cut there: a check is not an inventory.
MAX_PAGES = 10
READ_TIMEOUT = 30.0


@dataclass
class CheckResult:
    upstream: str
    upstream_id: int
    reachable: bool = False
    status: int | None = None
    latency_ms: float | None = None
    method: str = "model list"
    models: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing variable, rejected key, unreachable…
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure (TLS verification off)
    via: str = "direct"  # the egress proxy the check went through (its URL, never its credentials)

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


@dataclass(frozen=True)
class Probe:
    """One upstream to check, everything read beforehand (database, environment, disk)."""

    route: UpstreamRoute
    probe_model: str  # for a one-token request where there is no model list ("" when no alias names one)
    problems: list[str]  # what is wrong before anything is sent
    notes: tuple[str, ...] = ()


def list_url(route: UpstreamRoute) -> str | None:
    """The upstream's model-list endpoint, or None where the base URL names one deployment."""
    if "{model}" in route.base_url or route.provider:  # a cloud's runtime endpoint lists no models
        return None
    match route.format:
        case Dialect.OPENAI_CHAT | Dialect.OPENAI_RESPONSES:
            return _openai_root(route.base_url) + "/models"
        case Dialect.ANTHROPIC:
            return route.base_url.removesuffix("/v1") + "/v1/models"
        case Dialect.GEMINI:
            base = route.base_url
            root = base if base.endswith(("/v1beta", "/v1", "/v1alpha")) else base + "/v1beta"
            return root + "/models"
        case Dialect.BEDROCK:
            return None


def _headers(route: UpstreamRoute) -> list[tuple[str, str]]:
    return upstream_headers(route, route.credential, [("user-agent", "llmproxy/0.1 (upstream check)")])


def _probe_body(route: UpstreamRoute, model: str) -> dict[str, Any]:
    """The smallest generation each format accepts: one output token (Responses requires at least 16), as the
    upstream takes it (a cloud's Messages body: routing.upstream.client.cloud_body)."""
    wire = route.wire_for(model)
    return cloud_body(route, wire, Operation.GENERATE, _smallest_generation(wire, model))


def _smallest_generation(wire: Dialect, model: str) -> dict[str, Any]:
    prompt = "Reply with OK."
    match wire:
        case Dialect.OPENAI_CHAT:
            return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1}
        case Dialect.OPENAI_RESPONSES:
            return {"model": model, "input": prompt, "max_output_tokens": 16}
        case Dialect.ANTHROPIC:
            return {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": prompt}]}
        case Dialect.GEMINI:
            return {
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"maxOutputTokens": 1},
            }
        case Dialect.BEDROCK:
            return {"messages": [{"role": "user", "content": [{"text": prompt}]}], "inferenceConfig": {"maxTokens": 1}}


def _secrets(route: UpstreamRoute) -> list[str]:
    secrets = [route.credential] if route.credential else []
    secrets.extend(value for name, value in route.headers if SECRET_NAME.search(name))
    if route.network.proxy_auth:
        secrets.extend((route.network.proxy_auth, route.network.proxy_auth.partition(":")[2]))
    return secrets


def _rejected_key(status: int, body: bytes) -> bool:
    # Gemini answers a wrong key with 400 and the reason API_KEY_INVALID; the others with 401 or 403.
    return status in (401, 403) or (status == 400 and b"API_KEY_INVALID" in body)


async def _send(
    client: httpx.AsyncClient, route: UpstreamRoute, method: str, url: str, params: dict[str, str], body: Any = None
) -> httpx.Response:
    request = client.build_request(
        method,
        url,
        headers=[*_headers(route), *([("content-type", "application/json")] if body is not None else [])],
        params={**dict(route.query_params), **params} or None,
        content=json.dumps(body).encode() if body is not None else None,
        timeout=httpx.Timeout(min(route.timeout, READ_TIMEOUT), connect=route.connect_timeout),
        extensions=network_extension(route),
    )
    await authorize_cloud(request, route)
    return await client.send(request)


async def _check(client: httpx.AsyncClient, probe: Probe) -> CheckResult:
    route = probe.route
    result = CheckResult(route.name, route.id, problems=list(probe.problems), notes=list(probe.notes))
    url = list_url(route)
    proxy = proxy_for(route.network, url or route.base_url)
    if proxy is not None:
        result.via = proxy.url if route.network.proxy_url else f"{proxy.url} (from the process environment)"
    started = time.perf_counter()
    try:
        if url is not None:
            response = await _send(client, route, "GET", url, catalog.model_list_query(route.format))
            result.latency_ms = (time.perf_counter() - started) * 1000
            result.reachable, result.status = True, response.status_code
            if response.is_success:
                result.models, params = catalog.read_model_list(route.format, response.json())
                pages = 1
                while params is not None and pages < MAX_PAGES:
                    models, params = catalog.read_model_list(
                        route.format, (await _send(client, route, "GET", url, params)).json()
                    )
                    result.models.extend(models)
                    pages += 1
                return result
            if response.status_code not in (404, 405):
                result.problems.append(_answer_problem(route, response))
                return result
        if not probe.probe_model:
            result.problems.append(
                "it has no model list, and none of its aliases names an upstream model to try a one-token request with"
            )
            return result
        result.method = f"one-token request to {probe.probe_model}"
        started = time.perf_counter()
        probe_url = endpoint_url(route, Operation.GENERATE, probe.probe_model, False)
        response = await _send(client, route, "POST", probe_url, {}, _probe_body(route, probe.probe_model))
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.reachable, result.status = True, response.status_code
        if not response.is_success:
            result.problems.append(_answer_problem(route, response))
    except CloudCredentialsError as exc:
        result.problems.append(redact_text(str(exc), _secrets(route)))
    except (httpx.HTTPError, ValueError) as exc:
        if isinstance(exc, httpx.HTTPError):
            result.reachable = False
            what = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
            result.problems.append(redact_text(f"{what}: {exc or type(exc).__name__}", _secrets(route)))
        else:
            result.problems.append("its model list is not JSON")
    return result


def _answer_problem(route: UpstreamRoute, response: httpx.Response) -> str:
    message = parse_upstream_error(response.status_code, response.content).message
    if response.status_code == 407:
        prefix = "the egress proxy rejected its credentials"
    elif _rejected_key(response.status_code, response.content):
        prefix = "the upstream rejected the key" if route.credential else "the upstream wants a key, and none is set"
    else:
        prefix = "the upstream answered an error"
    return redact_text(f"{prefix} (HTTP {response.status_code}): {message[:300]}", _secrets(route))


async def check_all(probes: Sequence[Probe]) -> list[CheckResult]:
    limits = httpx.Limits(max_connections=20, keepalive_expiry=5)
    async with httpx.AsyncClient(transport=AiohttpTransport(limits), follow_redirects=False) as client:
        return list(await asyncio.gather(*(_check(client, probe) for probe in probes)))
