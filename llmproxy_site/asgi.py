"""ASGI entry point: Channels routing for both protocols.

HTTP: data-plane paths go to `DataPlaneConsumer` (routing.dataplane.http), the probes and `/metrics` to plain
ASGI callables, everything else (admin, dashboards, pages) to Django. WebSockets: the Responses WebSocket
(key auth, no session) and the staff live view (session auth, origin checked).
"""

from __future__ import annotations

import gc
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application
from django.urls import URLPattern, re_path

# Django must be set up before anything imports models.
django_app = ASGIStaticFilesHandler(get_asgi_application())

from routing.dataplane import http, websocket  # noqa: E402
from routing.dataplane.endpoints import DATA_PLANE_PATTERN  # noqa: E402
from routing.dataplane.prefixes import CANDIDATE_PATHS, prefixed  # noqa: E402
from usage.live import LiveConsumer  # noqa: E402


def route(pattern: str, app: Any) -> URLPattern:
    """A URLRouter entry for an ASGI application (Django's stubs type `re_path` for views only)."""
    entry: URLPattern = re_path(pattern, app)
    return entry


live_view = AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))
# URLRouter matches paths without their leading slash.
DATA_PLANE = "^" + DATA_PLANE_PATTERN

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                route(DATA_PLANE, http.DataPlaneConsumer.as_asgi()),
                route(r"^healthz?$", http.liveness),
                route(r"^health/ready$", http.readiness),
                route(r"^metrics$", http.serve_metrics),
                # Operator-defined prefixes (/team-a/v1/messages); a path under none goes on to Django.
                route(CANDIDATE_PATHS, prefixed(http.DataPlaneConsumer.as_asgi(), django_app)),
                route(r"", django_app),
            ]
        ),
        "websocket": URLRouter(
            [
                route(websocket.PATHS, websocket.ResponsesConsumer.as_asgi()),
                route(websocket.PREFIXED_PATHS, prefixed(websocket.ResponsesConsumer.as_asgi(), websocket.refuse)),
                # The staff live view (usage.live): a person's browser, so the Django session decides (staff
                # only), and the Origin must be one of ALLOWED_HOSTS so another site's page cannot open it.
                route(
                    r"^dashboard/live/ws/?$", AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))
                ),
                route(r"", websocket.refuse),
            ]
        ),
    }
)

# Everything loaded so far (Django, the codecs, the route table's code) lives as long as the process: moved out
# of the garbage collector's view, it stops being rescanned on every full collection, which otherwise shows up
# as tens of milliseconds of tail latency under daphne (docs/benchmarks.md).
gc.freeze()
