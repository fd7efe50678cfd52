"""The same pipeline behind a bare ASGI function instead of the Channels consumer, for comparison only.

`python -m bench.run --servers daphne,raw-router` measures what serving the data plane through
`routing.dataplane.http.DataPlaneConsumer` (mounted by Channels' URLRouter) costs against the plain router the
project used before, in one run (docs/benchmarks.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")

from django.conf import settings

from llmproxy_site.asgi import application as site
from routing.dataplane import pipeline
from routing.dataplane.asgi_io import Receive, Request, Scope, Send, read_body

DATA_PLANE_ROOTS = ("/v1/", "/v1beta/", "/v1alpha/", "/anthropic/", "/openai/", "/gemini/")


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http" or not scope["path"].startswith(DATA_PLANE_ROOTS):
        await site(scope, receive, send)
        return
    first = await receive()
    if first["type"] == "http.disconnect":
        return

    async def body() -> bytes | None:
        return await read_body(first, receive, settings.MAX_REQUEST_BYTES)

    await pipeline.handle_http(Request.from_scope(scope, receive), body, send)
