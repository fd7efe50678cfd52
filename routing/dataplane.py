"""The ASGI entry for HTTP: data-plane paths go straight to the exchange pipeline; the rest is Django.

Data-plane requests skip Django's request handler and middleware on purpose: each of those costs thread
hops per request (see docs/architecture.md) and the data plane needs none of sessions, CSRF or templates.
"""

from __future__ import annotations

import hmac

from django.conf import settings

from routing import cors, exchange, health
from routing.asgi_io import Receive, Request, Scope, Send, send_bytes
from routing.endpoints import is_data_plane
from usage import metrics

HEALTH_PATHS = {"/health": health.liveness, "/healthz": health.liveness, "/health/ready": health.readiness}
METRICS_PATH = "/metrics"
_TEXT = b"text/plain; charset=utf-8"


async def serve_metrics(request: Request, send: Send) -> None:
    """Prometheus scrape of this process (usage.metrics); a bearer token when METRICS_TOKEN is set."""
    if request.method != "GET":
        await send_bytes(send, 405, b"Method not allowed\n", _TEXT, [(b"allow", b"GET")])
        return
    token: str = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
        if not valid:
            await send_bytes(send, 401, b"Unauthorized\n", _TEXT, [(b"www-authenticate", b'Bearer realm="metrics"')])
            return
    await send_bytes(send, 200, metrics.render().encode(), metrics.CONTENT_TYPE.encode())


class DataPlaneRouter:
    def __init__(self, django_app: object) -> None:
        self.django_app = django_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http":
            if is_data_plane(path):
                request = Request.from_scope(scope, receive)
                if cors.is_preflight(request):
                    await cors.answer_preflight(request, send)
                    return
                await exchange.handle(request, cors.with_cors(request, send))
                return
            probe = HEALTH_PATHS.get(path)
            if probe is not None:
                await probe(send)
                return
            if path == METRICS_PATH:
                await serve_metrics(Request.from_scope(scope, receive), send)
                return
        await self.django_app(scope, receive, send)  # type: ignore[operator]
