"""Everything about talking to an upstream: its endpoint URLs, its headers, and the HTTP client.

The HTTP client sits behind this one module so that the transport can be chosen by measurement
(see docs/benchmarks.md) without touching the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from routing.config.registry import UpstreamRoute
from routing.runtime.worker import worker
from routing.upstream import bedrock, vertex
from routing.upstream.network import DIRECT, EXTENSION
from routing.upstream.transport import AiohttpTransport
from translation.anthropic.wire import DEFAULT_VERSION as ANTHROPIC_DEFAULT_VERSION
from translation.dialect import Dialect
from translation.operation import Operation

# Paths that mean an operator pasted a full endpoint URL instead of a base URL.
ENDPOINT_SUFFIXES = ("/chat/completions", "/responses", "/messages", ":generateContent", ":streamGenerateContent")


def _openai_root(base_url: str) -> str:
    """OpenAI-style bases carry their version (…/v1, Azure deployment URLs); a bare host gets /v1."""
    return base_url if urlsplit(base_url).path.strip("/") else base_url + "/v1"


def endpoint_url(upstream: UpstreamRoute, operation: Operation, model: str, stream: bool) -> str:
    if upstream.provider == vertex.KIND:
        return vertex.endpoint_url(upstream.base_url, upstream.project, upstream.location, operation, model, stream)
    if upstream.provider == bedrock.KIND or upstream.format is Dialect.BEDROCK:
        return bedrock.endpoint_url(upstream.base_url, operation, model, stream)
    base = upstream.base_url.replace("{model}", quote(model, safe=""))
    match upstream.format:
        case Dialect.OPENAI_CHAT:
            return _openai_root(base) + "/chat/completions"
        case Dialect.OPENAI_RESPONSES:
            suffix = "/responses/input_tokens" if operation is Operation.COUNT_TOKENS else "/responses"
            return _openai_root(base) + suffix
        case Dialect.ANTHROPIC:
            root = base.removesuffix("/v1")
            suffix = "/v1/messages/count_tokens" if operation is Operation.COUNT_TOKENS else "/v1/messages"
            return root + suffix
        case Dialect.GEMINI:
            root = base if base.endswith(("/v1beta", "/v1", "/v1alpha")) else base + "/v1beta"
            if operation is Operation.COUNT_TOKENS:
                method = "countTokens"
            else:
                method = "streamGenerateContent" if stream else "generateContent"
            url = f"{root}/models/{quote(model, safe='.-_')}:{method}"
            return url + "?alt=sse" if stream and operation is Operation.GENERATE else url


# How each `routing.models.AuthHeader` choice carries the credential (by value: upstream I/O keeps off the ORM).
_AUTH_TEMPLATES = {
    "bearer": ("authorization", "Bearer {}"),
    "x-api-key": ("x-api-key", "{}"),
    "api-key": ("api-key", "{}"),
    "x-goog-api-key": ("x-goog-api-key", "{}"),
}


def auth_headers(upstream: UpstreamRoute, credential: str | None) -> list[tuple[str, str]]:
    template = _AUTH_TEMPLATES.get(str(upstream.auth_header.value)) if credential else None
    if template is None:
        return []
    name, value = template
    return [(name, value.format(credential))]


def upstream_headers(
    upstream: UpstreamRoute,
    credential: str | None,
    first: Iterable[tuple[str, str]] = (),
    *,
    wire: Dialect | None = None,
    stream: bool = False,
) -> list[tuple[str, str]]:
    """The headers of a request to `upstream`, for the data plane and the upstream check alike: `first` (what the
    caller sends anyway), the Anthropic version the Anthropic codec encodes for (its `anthropic_version` flag)
    when the request speaks Anthropic's API (`wire`, by default the upstream's format) to Anthropic's own
    endpoint (a cloud carries the version in the body) and `first` carries none, `accept-encoding: identity` for
    a stream (a compressed stream could not be relayed chunk by chunk), the upstream's configured headers, then
    `credential` as the upstream wants it."""
    headers = list(first)
    wire = upstream.format if wire is None else wire
    if wire is Dialect.ANTHROPIC and not upstream.provider and not any(n == "anthropic-version" for n, _ in headers):
        version = upstream.translation_flags.get("anthropic_version", ANTHROPIC_DEFAULT_VERSION)
        headers.append(("anthropic-version", str(version)))
    if stream:
        headers.append(("accept-encoding", "identity"))
    headers.extend(upstream.headers)
    headers.extend(auth_headers(upstream, credential))
    return headers


_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def http_client() -> httpx.AsyncClient:
    """One pooled client per event loop (in practice, per worker process), reused by every request."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60)
        client = httpx.AsyncClient(transport=AiohttpTransport(limits), follow_redirects=False)
        _clients[loop] = client
    return client


async def close_clients() -> None:
    """Close the pooled connections of this process (its last word when the server stops)."""
    while _clients:
        _, client = _clients.popitem()
        await client.aclose()


worker.register("upstream connections", None, at_stop=close_clients)


def network_extension(upstream: UpstreamRoute) -> dict[str, Any]:
    """The request extension that tells the transport the upstream's egress proxy and TLS setting."""
    return {EXTENSION: upstream.network} if upstream.network is not DIRECT else {}


def timeout_for(upstream: UpstreamRoute) -> httpx.Timeout:
    return httpx.Timeout(upstream.timeout, connect=upstream.connect_timeout, pool=upstream.connect_timeout)


# --- the clouds: their bodies and credentials ----------------------------------------------------------------


def cloud_body(
    upstream: UpstreamRoute, wire: Dialect, operation: Operation, payload: dict[str, Any], beta: str | None = None
) -> dict[str, Any]:
    """`payload` as a cloud takes it: a Messages body on Vertex or Bedrock carries its version (and on Bedrock the
    client's betas, `beta`) in the body and its model in the URL. Other upstreams take it as it is."""
    if wire is not Dialect.ANTHROPIC:
        return payload
    if upstream.provider == vertex.KIND:
        return vertex.anthropic_body(payload, operation)
    if upstream.provider == bedrock.KIND:
        return bedrock.anthropic_body(payload, beta)
    return payload


async def authorize_cloud(request: httpx.Request, upstream: UpstreamRoute) -> str | None:
    """Put a cloud upstream's credentials on `request` just before it is sent: Vertex's OAuth access token (minted
    or refreshed as needed), Bedrock's SigV4 signature or API key. Returns the secret used (None for other
    upstreams, whose key `upstream_headers` already put on). Raises what went wrong, saying why."""
    if upstream.provider == vertex.KIND:
        if upstream.google_credentials is None:
            raise CloudCredentialsError(f"no usable Vertex AI credentials: {upstream.credentials_problem}")
        try:
            token = await vertex.access_tokens.token(upstream.google_credentials)
        except Exception as exc:  # google-auth's RefreshError, TransportError, a malformed key
            reason = exc.args[0] if exc.args else exc  # google-auth's errors carry the token endpoint's answer first
            raise CloudCredentialsError(f"no Vertex AI access token could be obtained: {reason}") from exc
        request.headers["authorization"] = f"Bearer {token}"
        return token
    if upstream.provider == bedrock.KIND:
        assert upstream.aws is not None, "a Bedrock route carries its AWS auth"
        try:
            return await bedrock.authorize(request, upstream.aws)
        except Exception as exc:  # no credentials, or the chain's refresh failed
            raise CloudCredentialsError(f"no usable AWS credentials: {exc}") from exc
    return None


class CloudCredentialsError(Exception):
    """A cloud upstream's credentials could not be put on a request (the message says why, never the secret)."""
