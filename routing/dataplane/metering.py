"""What the ledger learns from an upstream's answer: usage, time to first token, the upstream's request id
and a failure midway. Only observes; the bytes the client gets never wait for it.

`Meter.observe` reads IR stream events — the translated relay has them anyway, the pass-through relay gets
them from `StreamTap`, which decodes a copy of the stream after each chunk has been sent on. Usage therefore
comes from the upstream's own report, normalised by the codec that decodes it (translation.usage).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import httpx

from routing.dataplane.codecs import codec_for
from routing.dataplane.exchange import Exchange
from routing.dataplane.upstream_call import event_parser
from translation.errors import status_for
from translation.ir import (
    ReasoningDelta,
    RefusalStart,
    Request,
    Response,
    ResponseStart,
    ResponseStop,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolCallStart,
    UsageUpdate,
)
from translation.sse import SSEEvent

logger = logging.getLogger(__name__)

# The events that mean generated output reached the client: the first one is the time to first token.
_OUTPUT_EVENTS = (TextDelta, ReasoningDelta, ToolArgsDelta, ToolCallStart, RefusalStart)
# Where upstreams put their own id for a request (OpenAI, Anthropic; Gemini sends its id in the body).
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-goog-request-id")


class Meter:
    def __init__(self, exchange: Exchange) -> None:
        self.record = exchange.record
        self._dialect = exchange.endpoint.dialect

    def response_headers(self, response: httpx.Response) -> None:
        for name in REQUEST_ID_HEADERS:
            if name in response.headers:
                self.record.upstream_request_id = response.headers[name]
                return

    def observe(self, events: Iterable[Any]) -> None:
        record = self.record
        for event in events:
            if isinstance(event, _OUTPUT_EVENTS):
                record.output_started()
            elif isinstance(event, UsageUpdate):
                record.add_usage(event.usage)
            elif isinstance(event, ResponseStart):
                record.add_usage(event.usage)
                if not record.upstream_request_id and event.id:
                    record.upstream_request_id = event.id
            elif isinstance(event, ResponseStop):
                record.add_usage(event.usage)
                record.answered = True
            elif isinstance(event, StreamError):
                error = event.error
                record.failed(error, status_for(self._dialect, error), from_upstream=True, partial=True)

    def whole(self, response: Response) -> None:
        """A whole answer: its usage and id; the output reached the client all at once, now."""
        self.record.add_usage(response.usage)
        if not self.record.upstream_request_id and response.id:
            self.record.upstream_request_id = response.id
        self.record.output_started()
        self.record.answered = True


class StreamTap:
    """Decodes a copy of a relayed upstream stream for the meter. A stream the decoder cannot read is still
    relayed untouched; only the ledger then lacks its numbers."""

    def __init__(self, exchange: Exchange, meter: Meter) -> None:
        route = exchange.upstream_route
        self._meter = meter
        self._parser = event_parser(exchange)  # at most UPSTREAM_MAX_EVENT_BYTES of one event (EventTooLarge)
        self._decoder: Any = codec_for(route.wire).stream.StreamDecoder(
            Request(model=route.upstream_model, messages=())
        )

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse and decode a chunk already sent on; returns its events."""
        events = self._parser.feed(chunk)
        self.decode(events)
        return events

    def parse(self, chunk: bytes) -> list[SSEEvent]:
        """Only parse (the caller sends the events on, then hands them to `decode`)."""
        return self._parser.feed(chunk)

    def finish(self) -> list[SSEEvent]:
        """The end of the stream; returns the events a last unterminated frame held."""
        events = self._parser.flush()
        self.decode(events)
        if self._decoder is not None:
            with contextlib.suppress(Exception):  # a decoder's complaint about an early end is not the client's
                self._meter.observe(self._decoder.finish())
        return events

    def decode(self, events: list[SSEEvent]) -> None:
        if self._decoder is None:
            return
        try:
            self._meter.observe(ir for event in events for ir in self._decoder.feed(event))
        except Exception:
            logger.warning("usage could not be read from an upstream stream; relaying it without", exc_info=True)
            self._decoder = None
            self._meter.record.usage_partial = True  # what the ledger has is what came before the unreadable event


def whole_body_usage(exchange: Exchange, meter: Meter, content: bytes) -> None:
    """Usage of a whole answer relayed as is (read after it was sent)."""
    try:
        body = json.loads(content)
        decoded = codec_for(exchange.upstream_route.wire).response.decode_response(body)
    except Exception:
        logger.warning("usage could not be read from an upstream answer", exc_info=True)
        return
    meter.whole(decoded.value)
