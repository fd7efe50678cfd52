"""OpenTelemetry traces (optional): one span per exchange, with the GenAI semantic conventions, sent over OTLP/HTTP.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. The request path pays
nothing for it: a span is built from the exchange's ledger row once the ledger writer has committed it
(`usage.ledger`, on the database thread, off the request path), with the exchange's own start and end times,
and handed to the SDK's BatchSpanProcessor, whose own thread exports batches to the collector. So a span carries
exactly what the ledger row says (tokens, cost, time to first token), an exchange replayed from a crashed
worker's spool gets its span once, and exchanges without a known proxy key (which have no row) have none.

The attribute names follow the GenAI semantic conventions (gen_ai.*); what only the proxy knows (cost, alias,
upstream, key, user, client program, attempts) goes under `llmproxy.*`. A key's secret never appears: a span
names a key by its id and label. Spans still queued when the server stops are flushed by the worker's last
word (after the ledger's last write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

from routing.runtime.worker import worker
from translation.operation import Operation
from usage.models import LedgerEntry, Outcome

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

# How long the stop waits for the last spans to reach the collector (milliseconds).
FLUSH_TIMEOUT_MS = 5000
INSTRUMENTATION_NAME = "llmproxy"

# gen_ai.provider.name: the upstream's format, unless its host names a better-known provider (an OpenAI-compatible
# server is reported as the API it speaks when its host is not one of these).
_PROVIDER_BY_FORMAT = {
    "anthropic": "anthropic",
    "openai-chat": "openai",
    "openai-responses": "openai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
}
_PROVIDER_BY_HOST_SUFFIX = {
    ".openai.azure.com": "azure.ai.openai",
    ".services.ai.azure.com": "azure.ai.inference",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.cohere.com": "cohere",
    "openrouter.ai": "openrouter",
}
# The outcomes that are errors of the operation (a client leaving is not: its span ends unset, outcome cancelled).
_ERROR_OUTCOMES = frozenset({Outcome.CLIENT_ERROR, Outcome.UPSTREAM_ERROR, Outcome.TIMEOUT})

_provider: TracerProvider | None = None


def enabled() -> bool:
    return bool(traces_endpoint())


def traces_endpoint() -> str:
    """Where spans go: the traces endpoint as given, else the base endpoint + /v1/traces (the OTLP/HTTP rule)."""
    if settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
        return str(settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    base = str(settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    return f"{base.rstrip('/')}/v1/traces" if base else ""


def _tracer_provider() -> TracerProvider:
    """The process's provider, made at the first export (the SDK is imported only when tracing is on)."""
    global _provider
    if _provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.util.re import parse_env_headers

        headers = parse_env_headers(settings.OTEL_EXPORTER_OTLP_HEADERS, liberal=True)
        provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(), headers=headers)))
        _provider = provider
    return _provider


def operation_name(row: LedgerEntry) -> str:
    if row.operation == Operation.COUNT_TOKENS:
        return "count_tokens"  # no conventional name: the proxy's own
    return "generate_content" if row.dialect == "gemini" else "chat"


def _first_chunk_seconds(row: LedgerEntry) -> float | None:
    """The row keeps time to first token in whole milliseconds: never more than the span it lies in (a 3.987 ms
    exchange whose first token came at its end reads 4 ms)."""
    if row.ttft_ms is None:
        return None
    return min(row.ttft_ms / 1000, (row.finished_at - row.started_at).total_seconds())


def provider_name(upstream_format: str, base_url: str) -> str:
    host = (urlsplit(base_url).hostname or "").lower()
    for suffix, name in _PROVIDER_BY_HOST_SUFFIX.items():
        if host == suffix.lstrip(".") or host.endswith(suffix):
            return name
    return _PROVIDER_BY_FORMAT.get(upstream_format, upstream_format or "_OTHER")


def span_attributes(row: LedgerEntry, facts: Mapping[str, Any], key_label: str, username: str) -> dict[str, Any]:
    """A ledger row as span attributes (None values are left out: an unreported count is not 0)."""
    cached = (row.cache_read_tokens or 0) + (row.cache_write_tokens or 0)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(row),
        "gen_ai.provider.name": provider_name(
            str(facts.get("upstream_format") or ""), str(facts.get("upstream_base_url") or "")
        ),
        "gen_ai.request.model": row.requested_model,
        "gen_ai.response.model": row.upstream_model or None,
        # The conventions' input count includes cached tokens; the ledger's leaves them apart.
        "gen_ai.usage.input_tokens": row.input_tokens + cached if row.input_tokens is not None else None,
        "gen_ai.usage.output_tokens": row.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": row.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": row.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": row.reasoning_tokens,
        "gen_ai.request.stream": row.stream,
        "gen_ai.response.time_to_first_chunk": _first_chunk_seconds(row),
        "gen_ai.conversation.id": row.client_session or None,
        "http.response.status_code": row.status,
        "llmproxy.exchange_id": row.exchange_id,
        "llmproxy.client_api": row.dialect,
        "llmproxy.endpoint": row.endpoint,
        "llmproxy.outcome": row.outcome,
        "llmproxy.cost_usd": float(row.cost_usd) if row.cost_usd is not None else None,
        "llmproxy.alias": row.alias or None,
        "llmproxy.upstream": row.upstream or None,
        "llmproxy.scenario": row.scenario or None,
        "llmproxy.upstream_request_id": row.upstream_request_id or None,
        "llmproxy.key.id": row.key_id,
        "llmproxy.key.name": key_label or None,
        "llmproxy.user": username or None,
        "llmproxy.client.program": row.client_program or None,
        "llmproxy.client.version": row.client_version or None,
        "llmproxy.attempts": row.attempts,
        "llmproxy.fallback": row.fallback,
        "llmproxy.usage_partial": row.usage_partial,
    }
    if row.outcome in _ERROR_OUTCOMES:
        attributes["error.type"] = row.error_type or row.outcome
    return {name: value for name, value in attributes.items() if value is not None}


def _names(rows: Sequence[LedgerEntry]) -> tuple[dict[int, str], dict[int, str]]:
    """Key labels and usernames of the rows (two queries per batch, on the database thread)."""

    def lookup(reference: str, field: str) -> dict[int, str]:
        ids = {getattr(row, reference) for row in rows} - {None}
        related = LedgerEntry._meta.get_field(reference.removesuffix("_id")).related_model
        if not ids or related is None:
            return {}
        return dict(related._default_manager.filter(pk__in=ids).values_list("pk", field))

    return lookup("key_id", "label"), lookup("user_id", "username")


def export(rows: Sequence[LedgerEntry], facts_by_id: Mapping[str, Mapping[str, Any]]) -> None:
    """One span per committed ledger row, queued for the exporter's thread (the ledger writer calls this on the
    database thread; it never raises into the writer)."""
    if not rows or not enabled():
        return
    try:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = _tracer_provider().get_tracer(INSTRUMENTATION_NAME)
        key_labels, usernames = _names(rows)
        for row in rows:
            attributes = span_attributes(
                row,
                facts_by_id.get(row.exchange_id or "", {}),
                key_labels.get(row.key_id or 0, ""),
                usernames.get(row.user_id or 0, ""),
            )
            model = row.requested_model or row.upstream_model
            name = f"{attributes['gen_ai.operation.name']} {model}".strip()
            span = tracer.start_span(
                name,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=_nanoseconds(row.started_at.timestamp()),
            )
            if "error.type" in attributes:
                span.set_status(Status(StatusCode.ERROR, row.error_message or None))
            span.end(end_time=_nanoseconds(row.finished_at.timestamp()))
    except Exception:
        logger.exception("spans of %d exchanges could not be exported", len(rows))


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


async def flush_at_stop() -> None:
    """The worker's last word, after the ledger's last write: send what is queued, then stop the exporter."""
    provider = _provider
    if provider is None:
        return
    await asyncio.to_thread(provider.force_flush, FLUSH_TIMEOUT_MS)
    await asyncio.to_thread(provider.shutdown)


# Only a last word: it runs after every other job's (the ledger's last write queues the last spans).
worker.register("traces", None, at_stop=flush_at_stop)
