"""The data-plane consumer as it was before it received its own messages: Channels' `AsyncConsumer.__call__`
(channel-layer lookup, `await_many_dispatch` with a task per message), for comparison only.

`python -m bench.run --compare daphne,channels-dispatch,raw-router` measures what that machinery cost, in
alternation with the shipped consumer and the bare router (docs/benchmarks.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")

from channels.consumer import AsyncConsumer
from channels.routing import URLRouter

from llmproxy_site.asgi import DATA_PLANE, route
from llmproxy_site.asgi import application as site
from routing.dataplane.asgi_io import Receive, Scope, Send
from routing.dataplane.http import DataPlaneConsumer


class ChannelsDispatchConsumer(DataPlaneConsumer):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        await AsyncConsumer.__call__(self, scope, receive, send)


data_plane = URLRouter([route(DATA_PLANE, ChannelsDispatchConsumer.as_asgi()), route(r"", site)])


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    await (data_plane if scope["type"] == "http" else site)(scope, receive, send)
