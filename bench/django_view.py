"""The same pipeline mounted behind a Django async view with the default middleware, for comparison only.

The benchmark serves `bench.django_view.application` to measure what the data plane would pay if it went
through Django's request handler and middleware stack instead of the ASGI router in llmproxy_site/asgi.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.django_view_settings"

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponseBase, StreamingHttpResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

application = get_asgi_application()

from routing.dataplane import pipeline  # noqa: E402
from routing.dataplane.asgi_io import Request  # noqa: E402


@csrf_exempt
async def data_plane_view(request: ASGIRequest) -> HttpResponseBase:
    body = request.body
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the view never learns of a disconnect
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await messages.put(message)

    async def read_body() -> bytes:
        return body  # Django has read it

    scope = dict(request.scope)
    task = asyncio.ensure_future(pipeline.handle_http(Request.from_scope(scope, receive), read_body, send))
    start = await messages.get()

    async def body_chunks() -> AsyncIterator[bytes]:
        while True:
            message = await messages.get()
            yield message.get("body", b"")
            if not message.get("more_body"):
                await task
                return

    response = StreamingHttpResponse(body_chunks(), status=start["status"])
    for name, value in start["headers"]:
        response[name.decode()] = value.decode()
    return response


urlpatterns = [re_path(r"^(?:v1|v1beta)/.*$", data_plane_view)]
