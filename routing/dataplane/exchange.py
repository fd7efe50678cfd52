"""One data-plane exchange: the transport-free facts the pipeline establishes, and the sink that delivers.

Whether the client came over HTTP (JSON or SSE) or the Responses WebSocket only shows in `sink`; everything
else (who asked, which route, what the ledger will record) is the same for both transports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routing.config.registry import KeyRecord, Route
from routing.dataplane.asgi_io import Request
from routing.dataplane.endpoints import Endpoint
from translation.errors import ApiError
from translation.ir import Request as IrRequest
from translation.ir import TranslationWarning
from translation.operation import Operation
from usage.captures import ExchangeCapture
from usage.clients import identify
from usage.ledger import ExchangeRecord

if TYPE_CHECKING:
    from routing.access.limits import Admission
    from routing.dataplane.sinks import Sink


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
    sink: Sink
    key: KeyRecord | None = None
    route: Route | None = None
    credential: str | None = None
    warnings: list[str] = field(default_factory=list)
    admission: Admission | None = None  # rate-limit counters held until the exchange ends (routing.access.limits)
    # The client's request decoded (with the decode's warnings), once: routing.dataplane.plan.decode_client_request.
    client_request: tuple[IrRequest, tuple[TranslationWarning, ...]] | None = None
    # The client's request as it came (HTTP: the body's bytes; the WebSocket: the frame's object), referenced
    # for a capture only, and the capture itself when the key or the alias asks for one (usage.captures).
    client_body: bytes | dict[str, Any] | None = None
    capture: ExchangeCapture | None = None
    record: ExchangeRecord = field(init=False)
    # Whether the exchange becomes a ledger row: it reaches, or was meant to reach, an upstream.
    metered: bool = field(init=False)

    def __post_init__(self) -> None:
        endpoint = self.endpoint
        operation = endpoint.operation if endpoint.operation is Operation.COUNT_TOKENS else Operation.GENERATE
        client = identify(self.request.headers)
        self.record = ExchangeRecord(
            endpoint.dialect.value,
            self.request.full_path,
            operation,
            client_program=client.program,
            client_version=client.version,
            client_session=client.session,
        )
        # The ledger lists the features translation dropped: the same list the client is told about.
        self.record.warnings = self.warnings
        self.metered = endpoint.operation is not None and endpoint.operation.calls_upstream

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
        record.upstream_format = route.wire.value
        record.scenario = route.scenario

    def start_capture(self) -> None:
        """Keep this exchange's bodies: the client's request now, the rest as they pass (usage.captures)."""
        body = self.client_body
        raw = json.dumps(body).encode() if isinstance(body, dict) else body or b""
        self.capture = ExchangeCapture(self.record.id, self.record.started_at, raw, self.request.headers)
        self.sink.capture = self.capture

    @property
    def upstream_route(self) -> Route:
        assert self.route is not None, "the route is resolved before any upstream call"
        return self.route
