"""The ASGI entry for HTTP: data-plane paths go straight to the exchange pipeline; the rest is Django.

Data-plane requests skip Django's request handler and middleware on purpose: each of those costs thread
hops per request (see docs/architecture.md) and the data plane needs none of sessions, CSRF or templates.
"""

from __future__ import annotations

from routing import exchange, health
from routing.asgi_io import Receive, Request, Scope, Send
from routing.endpoints import is_data_plane

HEALTH_PATHS = {"/health": health.liveness, "/healthz": health.liveness, "/health/ready": health.readiness}


class DataPlaneRouter:
    def __init__(self, django_app: object) -> None:
        self.django_app = django_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http":
            if is_data_plane(path):
                await exchange.handle(Request.from_scope(scope, receive), send)
                return
            probe = HEALTH_PATHS.get(path)
            if probe is not None:
                await probe(send)
                return
        await self.django_app(scope, receive, send)  # type: ignore[operator]
