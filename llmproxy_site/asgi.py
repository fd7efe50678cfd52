"""ASGI entry point: HTTP through the data-plane router (Django behind it), WebSockets through Channels."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")

from channels.routing import ProtocolTypeRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

# Django must be set up before anything imports models.
django_app = ASGIStaticFilesHandler(get_asgi_application())

from routing.dataplane import DataPlaneRouter  # noqa: E402
from routing.responses_ws import websocket_application  # noqa: E402

application = ProtocolTypeRouter({"http": DataPlaneRouter(django_app), "websocket": websocket_application})

# Everything loaded so far (Django, the codecs, the route table's code) lives as long as the process: moved out
# of the garbage collector's view, it stops being rescanned on every full collection, which otherwise shows up
# as tens of milliseconds of tail latency under daphne (docs/benchmarks.md).
gc.freeze()
