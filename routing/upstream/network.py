"""The network between the proxy and one upstream: its egress proxy and how its TLS certificates are checked.

An upstream's `Network` travels with each of its requests as an httpx request extension; the aiohttp transport
turns it into aiohttp's per-request `proxy`, `proxy_headers` and `ssl` (aiohttp keys its connection pools on
them, so upstreams with different networks never share a connection). An upstream without its own proxy
follows the process's HTTPS_PROXY / HTTP_PROXY and NO_PROXY, as most HTTP tools do: read at start and on each
configuration reload (`reload_environment`), never per request.
"""

from __future__ import annotations

import logging
import os
import ssl
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

logger = logging.getLogger(__name__)

# The httpx request extension that carries an upstream's `Network` to the transport.
EXTENSION = "llmproxy.network"
_ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True, slots=True)
class Network:
    proxy_url: str | None = None  # the upstream's own egress proxy (no credentials in it)
    proxy_auth: str | None = None  # USER:PASSWORD for it, from the environment or stored encrypted
    ssl: ssl.SSLContext | bool = True  # True: the system's CAs; False: no verification; a context: a CA bundle

    def __repr__(self) -> str:  # never the credentials, whatever prints it
        auth = ", proxy_auth=***" if self.proxy_auth else ""
        return f"Network(proxy_url={self.proxy_url!r}{auth}, ssl={self.ssl!r})"


DIRECT = Network()


def proxy_url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream's egress proxy, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "give an http:// or https:// URL with a host, e.g. http://egress.corp:3128"
    if parts.username or parts.password:
        return "put the proxy's credentials in the credentials variable or the stored credentials, not in the URL"
    return None


# --- TLS ---------------------------------------------------------------------------------------------------


def tls_setting(ca_bundle: str, verify: bool) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl` gets. Call it off the event loop: a CA bundle is read from disk."""
    if not verify:
        return False
    if not ca_bundle:
        return True
    try:
        mtime = os.stat(ca_bundle).st_mtime
    except OSError:
        mtime = -1.0
    return _context(ca_bundle, mtime)


@lru_cache(maxsize=64)
def _context(path: str, mtime: float) -> ssl.SSLContext:
    """One context per bundle version: the same object each reload keeps the upstream's pooled connections."""
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        # Fail closed: a context that trusts no authority, so every certificate is refused (never the
        # system's CAs instead of the operator's, never no verification).
        logger.error("CA bundle %s cannot be read (%s): TLS connections that need it will fail", path, exc)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.verify_mode = ssl.CERT_REQUIRED
        return context


def ca_bundle_problem(path: str) -> str | None:
    """Why the CA bundle at `path` cannot be used, or None (for the admin and the upstream check)."""
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        return f"CA bundle {path} does not exist"
    except (OSError, ssl.SSLError) as exc:
        return f"CA bundle {path} cannot be read: {exc}"
    return None


# --- proxies -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    url: str
    auth: str | None  # USER:PASSWORD


@dataclass(frozen=True, eq=False, slots=True)
class _ProcessProxies:
    """The process's proxy variables as urllib reads them (scheme → proxy URL, "no" → NO_PROXY)."""

    proxies: dict[str, str]
    active: bool  # HTTP_PROXY, HTTPS_PROXY or ALL_PROXY is set: without one, nothing goes through a proxy


def _read_environment() -> _ProcessProxies:
    active = any(os.environ.get(name) or os.environ.get(name.upper()) for name in _ENV_NAMES[:3])
    return _ProcessProxies(urllib.request.getproxies_environment() if active else {}, active)


# Read once here, and again by reload_environment(): a request only looks it up.
_process_proxies = _read_environment()


def reload_environment() -> None:
    """Read the process's HTTP(S)_PROXY / ALL_PROXY / NO_PROXY again. The snapshot calls it when it reads each
    upstream's network (routing.config.registry.upstream_network), so they are read at start and on each
    configuration reload, as the environment's credentials are; a test that changes them calls it too."""
    global _process_proxies
    fresh = _read_environment()
    if (fresh.proxies, fresh.active) != (_process_proxies.proxies, _process_proxies.active):
        _process_proxies = fresh  # a new object: _env_proxy's cached answers for the old one are not used


def proxy_for(network: Network, url: str) -> ProxyChoice | None:
    """The proxy a request to `url` goes through: the upstream's own, else the environment's, else none."""
    if network.proxy_url:
        return ProxyChoice(network.proxy_url, network.proxy_auth)
    process = _process_proxies
    if not process.active:
        return None
    parts = urlsplit(url)
    return _env_proxy(process, parts.scheme, parts.hostname or "", parts.port)


@lru_cache(maxsize=1024)
def _env_proxy(process: _ProcessProxies, scheme: str, host: str, port: int | None) -> ProxyChoice | None:
    proxies = process.proxies
    address = host if port is None else f"{host}:{port}"
    # Not in typeshed, but public since Python 3.3: NO_PROXY's matching, as curl and requests read it.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if bypass(address, proxies):
        return None
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    auth = None
    if parts.username:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return ProxyChoice(urlunsplit((parts.scheme, netloc, parts.path, "", "")), auth)


def basic_auth_header(user_password: str) -> str:
    user, _, password = user_password.partition(":")
    return aiohttp.encode_basic_auth(user, password)
