"""An httpx transport that sends requests with aiohttp.

httpx stays the API the pipeline is written against; underneath, aiohttp's connection pool does the work,
because httpx's own pool costs about three times the CPU per request under concurrency on these machines
(docs/benchmarks.md has the measurement). Failures come back as the httpx exceptions the pipeline already
handles: a refused connection is a ConnectError, a silent upstream a ReadTimeout, a dropped one a ReadError.
Each request's egress proxy and TLS setting come with it (routing.upstream.network).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

from routing.upstream.network import DIRECT, EXTENSION, Network, basic_auth_header, proxy_for


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except aiohttp.ClientHttpProxyError as exc:  # the egress proxy refused (407) or failed the CONNECT
        raise httpx.ProxyError(f"egress proxy answered {exc.status} {exc.message}", request=request) from exc
    except aiohttp.ClientProxyConnectionError as exc:  # before its base class: the proxy, not the upstream
        raise httpx.ProxyError(f"cannot connect to the egress proxy: {exc}", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


# A compressed body is handed to httpx in pieces this small: httpx inflates each piece whole, and gzip can
# inflate about a thousandfold, so this bounds what one piece becomes in memory (~2 MB) before the proxy's
# size caps (UPSTREAM_MAX_BODY_BYTES, UPSTREAM_MAX_EVENT_BYTES) can count it: a gzip bomb is cut off early.
COMPRESSED_READ_BYTES = 2 * 1024


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        encoding = self._response.headers.get("content-encoding", "identity").strip().lower()
        # Uncompressed bytes are passed on as they arrive (whatever is buffered: no added latency).
        chunks = content.iter_any() if encoding == "identity" else content.iter_chunked(COMPRESSED_READ_BYTES)
        with _httpx_errors(self._request):
            async for chunk in chunks:
                yield chunk

    async def aclose(self) -> None:
        # A body read to the end returns its connection to the pool; one abandoned halfway (the client went
        # away) closes it, which is what tells the upstream to stop generating.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 0,
                ttl_dns_cache=300,
            )
            # httpx decodes content-encoding itself, so aiohttp must hand over the bytes untouched.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        url = str(request.url)
        headers = list(request.headers.multi_items())
        network: Network = request.extensions.get(EXTENSION, DIRECT)
        proxy = proxy_for(network, url)
        proxy_headers: dict[str, str] | None = None
        if proxy is not None and proxy.auth:
            if request.url.scheme == "https":
                proxy_headers = {"Proxy-Authorization": basic_auth_header(proxy.auth)}  # on the CONNECT only
            else:
                headers.append(("Proxy-Authorization", basic_auth_header(proxy.auth)))  # a plain-HTTP proxy reads it
        with _httpx_errors(request):
            response = await self._client_session().request(
                request.method,
                url,
                headers=headers,
                data=await request.aread(),
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                proxy=proxy.url if proxy is not None else None,
                proxy_headers=proxy_headers,
                ssl=network.ssl,
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
