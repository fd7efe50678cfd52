"""Operator-defined path prefixes (routing.models.PathPrefix): /team-a/v1/messages is /v1/messages for the aliases
that /team-a reaches.

The ASGI router sends every path that has a data-plane root below some first segment here; which prefixes exist
is read from the live snapshot (no database query once it is loaded), so a prefix added in the admin works
without a restart. A path under no configured prefix goes on to `otherwise` (Django's 404, or the refused
WebSocket upgrade), exactly as before prefixes existed.
"""

from __future__ import annotations

from typing import Any

from routing.dataplane.asgi_io import PREFIX_SCOPE_KEY, Receive, Scope, Send
from routing.dataplane.endpoints import DATA_PLANE_PATTERN, split_prefix
from routing.runtime.live import live_config

# URLRouter matches paths without their leading slash: something, then a data-plane root.
CANDIDATE_PATHS = r"^.+?/" + DATA_PLANE_PATTERN


def prefixed(app: Any, otherwise: Any) -> Any:
    """An ASGI app serving `app` under the configured prefixes, with the prefix taken off the path."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        await live_config.ensure_started()
        found = split_prefix(scope["path"], live_config.snapshot.prefixes)
        if found is None:
            await otherwise(scope, receive, send)
            return
        prefix, rest = found
        await app({**scope, "path": rest, PREFIX_SCOPE_KEY: prefix}, receive, send)

    return dispatch
