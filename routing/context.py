"""What one data-plane exchange has established so far, shared by the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from routing.asgi_io import Request, Send
from routing.endpoints import Action, Endpoint
from routing.registry import KeyRecord, Route
from translation.errors import ApiError
from usage.clients import identify
from usage.ledger import ExchangeRecord
from usage.models import Operation

if TYPE_CHECKING:
    from routing.limits import Admission


class ExchangeError(Exception):
    """Stops the exchange; the client gets `error` in its own dialect (if nothing was sent yet)."""

    def __init__(self, error: ApiError, *, from_upstream: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.from_upstream = from_upstream  # the upstream answered this error (the ledger tells them apart)


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
    admission: Admission | None = None  # rate-limit counters held until the exchange ends (routing.limits)
    record: ExchangeRecord = field(init=False)

    def __post_init__(self) -> None:
        endpoint = self.endpoint
        operation = Operation.COUNT_TOKENS if endpoint.action is Action.COUNT_TOKENS else Operation.GENERATE
        client = identify(self.request.headers)
        self.record = ExchangeRecord(
            endpoint.dialect.value,
            self.request.path,
            operation,
            client_program=client.program,
            client_version=client.version,
            client_session=client.session,
        )
        # The ledger lists the features translation dropped: the same list the client is told about.
        self.record.warnings = self.warnings

    def authenticated(self, key: KeyRecord) -> None:
        self.key = key
        self.record.key_id = key.id
        self.record.user_id = key.user_id
        self.record.username = key.username

    def routed(self, route: Route) -> None:
        self.route = route
        record = self.record
        record.requested_model = route.requested_model
        record.alias = route.alias or ""
        record.upstream = route.upstream.name
        record.upstream_model = route.upstream_model
        record.upstream_base_url = route.upstream.base_url
        record.upstream_format = route.upstream.format.value

    @property
    def upstream_route(self) -> Route:
        assert self.route is not None, "the route is resolved before any upstream call"
        return self.route
