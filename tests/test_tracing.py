"""OpenTelemetry export: a real server configured with the standard OTEL_* variables sends one span per exchange
to a local OTLP/HTTP collector, with the GenAI semantic conventions' names and the exchange's facts."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.liveserver import ProxyServer
from tests.receivers import OtlpCollector
from usage.models import LedgerEntry, ModelPrice
from usage.tracing import provider_name

pytestmark = pytest.mark.e2e

REPORTED = Usage(input=100, output=20, cache_read=30)


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def traced_server(
    collector: OtlpCollector, django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[ProxyServer]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20collector-token",
        "OTEL_SERVICE_NAME": "proxy-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's own batching pace, shortened for the test
    }
    with ProxyServer(extra_env=env) as server:
        yield server


@pytest.fixture
def traced(traced_server: ProxyServer, collector: OtlpCollector, transactional_db: None) -> Iterator[ProxyServer]:
    with collector.lock:
        collector.spans.clear()
    yield traced_server
    traced_server.drain()


def test_each_exchange_becomes_one_span_with_the_genai_attributes(traced, collector, alice, alice_key):
    ModelPrice.objects.create(model_pattern="real-model", input_per_mtok=Decimal(2), output_per_mtok=Decimal(10))
    with fake_upstream("anthropic") as claude, fake_upstream("gemini") as gemini:
        add_route("claude-up", "anthropic", claude.url, alias="sonnet", model="real-model")
        add_route("gemini-up", "gemini", gemini.url, alias="flash", model="gemini-real")
        traced.sync()
        claude.script(Reply(text="Hi there", usage=REPORTED, chunks=2))
        gemini.script(Reply(text="Hello", usage=Usage(input=11, output=5)))
        claude.script(Reply(error=Failure(500, "the upstream broke")))

        client = anthropic.Anthropic(api_key=alice_key, base_url=traced.url, max_retries=0)
        with client.messages.stream(
            model="sonnet", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
        ) as events:
            assert "".join(events.text_stream) == "Hi there"
        google = genai.Client(api_key=alice_key, http_options=genai_types.HttpOptions(base_url=traced.url))
        assert google.models.generate_content(model="flash", contents="Hello").text == "Hello"
        chat = openai.OpenAI(api_key=alice_key, base_url=traced.url + "/v1", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            chat.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "Hello"}])

        spans = collector.wait_for_spans(3)

    assert len(spans) == 3
    rows = {row.exchange_id: row for row in LedgerEntry.objects.all()}
    by_id = {span.attributes["llmproxy.exchange_id"]: span for span in spans}
    assert set(by_id) == set(rows)
    streamed, generated, failed = (by_id[row.exchange_id] for row in sorted(rows.values(), key=lambda r: r.started_at))
    key = ProxyKey.objects.get()

    # The streamed Anthropic exchange, priced.
    assert streamed.name == "chat sonnet"
    attributes = streamed.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]) == ("sonnet", "real-model")
    assert attributes["gen_ai.usage.input_tokens"] == 100  # the cached 30 included, as the conventions count
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 30
    assert attributes["gen_ai.usage.output_tokens"] == 20
    assert attributes["gen_ai.request.stream"] is True
    row = rows[attributes["llmproxy.exchange_id"]]
    assert row.cost_usd
    assert attributes["llmproxy.cost_usd"] == float(row.cost_usd)  # the ledger's price, as the dashboards show it
    assert 0 <= attributes["gen_ai.response.time_to_first_chunk"] <= (streamed.end_ns - streamed.start_ns) / 1e9
    assert (attributes["llmproxy.alias"], attributes["llmproxy.upstream"]) == ("sonnet", "claude-up")
    assert (attributes["llmproxy.key.id"], attributes["llmproxy.key.name"]) == (key.pk, "laptop")
    assert attributes["llmproxy.user"] == "alice"
    assert attributes["llmproxy.client.program"] == "Anthropic SDK (Python)"
    assert (attributes["llmproxy.attempts"], attributes["llmproxy.fallback"]) == (1, False)
    assert attributes["llmproxy.outcome"] == "ok"
    assert "error.type" not in attributes and streamed.status_code == 0
    assert streamed.start_ns == pytest.approx(row.started_at.timestamp() * 1e9, abs=1e3)
    assert streamed.end_ns == pytest.approx(row.finished_at.timestamp() * 1e9, abs=1e3)
    assert streamed.kind == 3  # SPAN_KIND_CLIENT: the proxy calls a model

    # The Gemini exchange: its operation has the conventions' Gemini name, its upstream the provider's.
    assert generated.name == "generate_content flash"
    assert generated.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert generated.attributes["gen_ai.response.model"] == "gemini-real"
    assert (generated.attributes["gen_ai.usage.input_tokens"], generated.attributes["gen_ai.usage.output_tokens"]) == (
        11,
        5,
    )
    assert "llmproxy.cost_usd" not in generated.attributes  # unpriced: no cost, never $0

    # The failure: error.type and an ERROR status, no usage invented.
    assert failed.name == "chat sonnet"
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.attributes["llmproxy.outcome"] == "upstream_error"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.status_code == 2 and "the upstream broke" in failed.status_message
    assert "gen_ai.usage.input_tokens" not in failed.attributes

    # Who sent them, and how they reached the collector; nothing secret among the attributes.
    assert {span.resource["service.name"] for span in spans} == {"proxy-under-test"}
    assert {span.scope for span in spans} == {"llmproxy"}
    assert set(collector.paths) == {"/v1/traces"}
    assert {headers.get("authorization") for headers in collector.headers} == {"Bearer collector-token"}
    assert all(alice_key not in str(span.attributes.values()) for span in spans)


def test_the_spans_still_queued_are_sent_when_the_server_stops(
    collector, alice_key, transactional_db, django_db_blocker
):
    """A long batching delay: nothing would be sent before the stop, which flushes."""
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        fake.script(Reply(text="one", usage=Usage(input=3, output=1)))
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url + "/custom/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }
        with collector.lock:
            collector.spans.clear()
            collector.paths.clear()
        with ProxyServer(extra_env=env) as server:
            server.sync()
            chat = openai.OpenAI(api_key=alice_key, base_url=server.url + "/v1", max_retries=0)
            chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            server.drain()
            assert collector.spans == []
        (span,) = collector.wait_for_spans(1, timeout=5)
    assert span.name == "chat m"
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.resource["service.name"] == "llmproxy"
    assert collector.paths == ["/custom/traces"]


@pytest.mark.parametrize(
    ("upstream_format", "base_url", "provider"),
    [
        ("openai-chat", "https://api.openai.com/v1", "openai"),
        ("openai-chat", "https://team.openai.azure.com/openai", "azure.ai.openai"),
        ("openai-chat", "https://openrouter.ai/api/v1", "openrouter"),
        ("openai-responses", "http://127.0.0.1:11434/v1", "openai"),
        ("bedrock", "", "aws.bedrock"),
        ("vertex", "", "gcp.vertex_ai"),
    ],
)
def test_the_provider_name_is_the_conventions_name_for_the_upstream(upstream_format, base_url, provider):
    assert provider_name(upstream_format, base_url) == provider
