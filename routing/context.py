"""What one data-plane exchange has established so far, shared by the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.asgi_io import Request, Send
from routing.endpoints import Endpoint
from routing.registry import KeyRecord, Route
from translation.errors import ApiError


class ExchangeError(Exception):
    """Stops the exchange; the client gets `error` in its own dialect (if nothing was sent yet)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class Exchange:
    request: Request
    endpoint: Endpoint
    send: Send
    key: KeyRecord | None = None
    route: Route | None = None
    credential: str | None = None
    response_started: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def upstream_route(self) -> Route:
        assert self.route is not None, "the route is resolved before any upstream call"
        return self.route
