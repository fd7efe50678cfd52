"""Prometheus metrics: the registry fed with ledger records, its text format, and `GET /metrics` on a real server."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import openai
import pytest

from routing.upstream import health  # noqa: F401  (registers the open-circuits gauge, as the server does)
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.liveserver import ProxyServer
from translation.errors import ApiError, ErrorKind
from translation.operation import Operation
from translation.usage import Usage as TokenUsage
from usage import metrics
from usage.ledger import ExchangeRecord
from usage.models import ModelPrice, Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAMILIES = {
    "llmproxy_requests_total": "counter",
    "llmproxy_tokens_total": "counter",
    "llmproxy_cost_usd_total": "counter",
    "llmproxy_request_duration_seconds": "histogram",
    "llmproxy_time_to_first_token_seconds": "histogram",
    "llmproxy_upstream_attempts_total": "counter",
    "llmproxy_fallbacks_total": "counter",
    "llmproxy_in_flight_requests": "gauge",
    "llmproxy_in_flight_streams": "gauge",
    "llmproxy_open_circuits": "gauge",
}


# --- a small parser of the text exposition format 0.0.4 ----------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """The value of the sample with exactly these labels; 0 when there is none yet (a counter not yet
        incremented has no sample)."""
        found = [v for n, ls, v in self.samples if n == name and ls == labels]
        assert len(found) <= 1, (name, labels)
        return found[0] if found else 0.0

    def histogram(self, name: str, **labels: str) -> tuple[list[tuple[float, float]], float, float]:
        """(buckets as (le, cumulative count), sum, count) after checking the histogram's invariants."""
        buckets = []
        for n, ls, v in self.samples:
            if n == name + "_bucket" and {k: x for k, x in ls.items() if k != "le"} == labels:
                buckets.append((_float(ls["le"]), v))
        total = self.value(name + "_sum", **labels)
        count = self.value(name + "_count", **labels)
        if not buckets:
            assert count == 0 and total == 0
            return [], 0.0, 0.0
        bounds = [le for le, _ in buckets]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), "buckets in increasing order"
        assert bounds[-1] == math.inf, "the last bucket is +Inf"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        assert counts[-1] == count, "+Inf bucket equals _count"
        return buckets, total, count


def _float(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf}.get(text) or float(text)


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match is not None, f"bad labels: {text!r}"
        assert match.group(1) not in labels, f"label repeated: {text!r}"
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
    return labels


def _family(sample_name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and types.get(base) == "histogram":
            return base
    return sample_name


def parse(text: str) -> Exposition:
    """Every line is a HELP, a TYPE (before the family's samples) or a sample `name{labels} value`."""
    assert text.endswith("\n")
    parsed = Exposition()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert re.fullmatch(_NAME, name) and name not in parsed.helps and help_text
            parsed.helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in parsed.types, f"TYPE repeated for {name}"
            parsed.types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match is not None, f"not a sample line: {line!r}"
            name = match.group(1)
            family = _family(name, parsed.types)
            assert family in parsed.types, f"sample before its TYPE: {line!r}"
            assert family in parsed.helps, f"sample without HELP: {line!r}"
            parsed.samples.append((name, _labels(match.group(2) or ""), _float(match.group(3))))
    return parsed


# --- the registry, fed with ledger records ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def finished(
    *,
    alias: str = "sonnet",
    upstream: str = "anthropic",
    dialect: str = "anthropic",
    duration: float = 1.5,
    ttft: float | None = 0.4,
    usage: TokenUsage | None = None,
    stream: bool = False,
    operation: str = Operation.GENERATE,
) -> ExchangeRecord:
    """A record that has gone through `exchange_started` and `exchange_finished` as the ledger does."""
    record = ExchangeRecord(dialect, "/v1/messages", operation)
    metrics.exchange_started(record)
    record.alias, record.upstream, record.upstream_model, record.stream = alias, upstream, "claude-x", stream
    record.usage = usage or TokenUsage()
    record.first_output = record.started + ttft if ttft is not None else None
    record.finished = record.started + duration
    metrics.exchange_finished(record)
    return record


def test_empty_registry_declares_every_family():
    parsed = parse(metrics.render())
    assert parsed.types == FAMILIES
    assert set(parsed.helps) == set(FAMILIES)
    assert parsed.samples == [
        ("llmproxy_in_flight_requests", {}, 0.0),
        ("llmproxy_in_flight_streams", {}, 0.0),
        ("llmproxy_open_circuits", {}, 0.0),
    ]


def test_a_finished_exchange_counts_its_request_tokens_and_times():
    usage = TokenUsage(input_tokens=100, cache_read_tokens=40, cache_write_tokens=None, output_tokens=30)
    finished(usage=usage, duration=1.5, ttft=0.4)
    finished(usage=TokenUsage(input_tokens=5, output_tokens=7, reasoning_tokens=3), duration=3.0, ttft=None)
    parsed = parse(metrics.render())

    ok = {"dialect": "anthropic", "alias": "sonnet", "upstream": "anthropic", "operation": "generate", "outcome": "ok"}
    assert parsed.value("llmproxy_requests_total", **ok) == 2
    where = {"alias": "sonnet", "upstream": "anthropic"}
    tokens = {ls["kind"]: v for n, ls, v in parsed.samples if n == "llmproxy_tokens_total"}
    # Only reported numbers: nobody reported cache writes.
    assert tokens == {"input": 105, "cache_read": 40, "output": 37, "reasoning": 3}
    assert parsed.value("llmproxy_tokens_total", kind="input", **where) == 105

    buckets, total, count = parsed.histogram("llmproxy_request_duration_seconds", **where)
    assert count == 2 and total == pytest.approx(4.5)
    assert dict(buckets)[1.0] == 0 and dict(buckets)[2.0] == 1 and dict(buckets)[5.0] == 2
    _, ttft_sum, ttft_count = parsed.histogram("llmproxy_time_to_first_token_seconds", **where)
    assert ttft_count == 1 and ttft_sum == pytest.approx(0.4)  # no first output, no time to first token
    assert parsed.value("llmproxy_in_flight_requests") == 0


def test_histogram_buckets_are_cumulative_with_inclusive_bounds():
    durations = [0.1, 0.25, 0.3, 1.0, 7.0, 45.0, 299.0, 5000.0]
    for duration in durations:
        finished(duration=duration, ttft=duration / 10)
    parsed = parse(metrics.render())
    buckets, total, count = parsed.histogram("llmproxy_request_duration_seconds", alias="sonnet", upstream="anthropic")
    assert count == len(durations)
    assert total == pytest.approx(sum(durations))
    for le, cumulative in buckets:
        assert cumulative == sum(1 for d in durations if d <= le), le
    assert [le for le, _ in buckets] == [*metrics.DURATION_BUCKETS, math.inf]
    assert max(metrics.DURATION_BUCKETS) >= 600  # long reasoning answers take minutes
    ttft_buckets, ttft_total, _ = parsed.histogram(
        "llmproxy_time_to_first_token_seconds", alias="sonnet", upstream="anthropic"
    )
    assert ttft_total == pytest.approx(sum(durations) / 10)
    assert [le for le, _ in ttft_buckets] == [*metrics.TTFT_BUCKETS, math.inf]


def test_outcomes_and_routes_are_separate_series():
    finished(alias="", upstream="ollama", dialect="openai-chat")  # a direct UPSTREAM/MODEL route
    record = ExchangeRecord("openai-chat", "/v1/chat/completions")
    metrics.exchange_started(record)
    record.failed(ApiError(ErrorKind.AUTHENTICATION, "bad key"), 401, from_upstream=False)
    record.finished = record.started + 0.01
    metrics.exchange_finished(record)  # refused before any route: no alias, no upstream
    failing = ExchangeRecord("anthropic", "/v1/messages")
    failing.alias, failing.upstream = "sonnet", "anthropic"
    failing.failed(ApiError(ErrorKind.OVERLOADED, "Overloaded", status=529), 529, from_upstream=True)
    failing.finished = failing.started + 2
    metrics.exchange_finished(failing)
    parsed = parse(metrics.render())

    requests = {
        (ls["dialect"], ls["alias"], ls["upstream"], ls["outcome"]): v
        for n, ls, v in parsed.samples
        if n == "llmproxy_requests_total"
    }
    assert requests == {
        ("openai-chat", "", "ollama", Outcome.OK): 1,
        ("openai-chat", "", "", Outcome.CLIENT_ERROR): 1,
        ("anthropic", "sonnet", "anthropic", Outcome.UPSTREAM_ERROR): 1,
    }
    # Never a user, key, session or requested model among the labels.
    label_names = {name for _, ls, _ in parsed.samples for name in ls}
    assert label_names <= {"dialect", "alias", "upstream", "operation", "outcome", "kind", "le"}


def test_token_counts_are_counted_but_are_not_generations():
    finished(operation=Operation.COUNT_TOKENS, usage=TokenUsage(input_tokens=500), duration=0.01, ttft=None)
    parsed = parse(metrics.render())
    assert parsed.value(
        "llmproxy_requests_total",
        dialect="anthropic",
        alias="sonnet",
        upstream="anthropic",
        operation="count_tokens",
        outcome="ok",
    )
    assert not any(n.startswith(("llmproxy_tokens_total", "llmproxy_request_duration")) for n, _, _ in parsed.samples)


def test_in_flight_gauges_follow_records_whose_stream_flag_comes_later():
    plain = ExchangeRecord("openai-chat", "/v1/chat/completions")
    streamed = ExchangeRecord("anthropic", "/v1/messages")
    metrics.exchange_started(plain)
    metrics.exchange_started(streamed)
    streamed.stream = True  # the routing layer learns it from the body, after the exchange began
    parsed = parse(metrics.render())
    assert parsed.value("llmproxy_in_flight_requests") == 2
    assert parsed.value("llmproxy_in_flight_streams") == 1

    metrics.exchange_finished(streamed)
    assert parse(metrics.render()).value("llmproxy_in_flight_streams") == 0
    metrics.exchange_finished(plain)
    metrics.exchange_finished(plain)  # twice, or never started: the gauges never go below zero
    metrics.exchange_finished(ExchangeRecord("gemini", "/v1beta/models/x:generateContent"))
    parsed = parse(metrics.render())
    assert parsed.value("llmproxy_in_flight_requests") == 0
    assert parsed.value("llmproxy_in_flight_streams") == 0


def test_label_values_and_help_are_escaped():
    awkward = 'claude-*"quoted"\\path\nnext'
    finished(alias=awkward, upstream="up")
    text = metrics.render()
    assert '\\"quoted\\"\\\\path\\nnext' in text
    assert all(line for line in text[:-1].split("\n")), "a raw newline inside a value would split a line"
    parsed = parse(text)
    assert parsed.value("llmproxy_tokens_total", alias=awkward, upstream="up", kind="input") == 0
    assert parsed.histogram("llmproxy_request_duration_seconds", alias=awkward, upstream="up")[2] == 1


def test_cost_is_added_from_other_threads_without_losing_any():
    def add_costs() -> None:
        for _ in range(2000):
            metrics.cost_recorded("sonnet", "anthropic", "claude-x", Decimal("0.001"))

    threads = [threading.Thread(target=add_costs) for _ in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        parse(metrics.render())  # rendering while the database thread adds
    for thread in threads:
        thread.join()
    metrics.cost_recorded("", "ollama", "llama3.2", Decimal("0.5"))
    parsed = parse(metrics.render())
    assert parsed.value("llmproxy_cost_usd_total", alias="sonnet", upstream="anthropic") == pytest.approx(16.0)
    assert parsed.value("llmproxy_cost_usd_total", alias="", upstream="ollama") == 0.5
    assert "llama3.2" not in metrics.render()  # the upstream model is not a label


# --- GET /metrics on the real server --------------------------------------------------------------------------------

UPSTREAM_KEY = "upstream-secret-key"


def scrape(server: ProxyServer, token: str | None = None) -> Exposition:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


def wait_for(server: ProxyServer, check, timeout: float = 10.0) -> Exposition:
    """Scrape until `check(exposition)` holds (exchanges are recorded after their answer was sent)."""
    deadline = time.monotonic() + timeout
    while True:
        parsed = scrape(server)
        if check(parsed) or time.monotonic() > deadline:
            return parsed
        time.sleep(0.05)


@pytest.fixture
def chat_upstream(proxy) -> Iterator:
    with fake_upstream("openai-chat", api_key=UPSTREAM_KEY) as fake:
        upstream = add_route("metered", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        upstream.set_api_key(UPSTREAM_KEY)
        upstream.save()
        proxy.sync()
        yield fake


def series(parsed: Exposition) -> dict[str, float]:
    ok = {"dialect": "openai-chat", "alias": "m", "upstream": "metered", "operation": "generate"}
    where = {"alias": "m", "upstream": "metered"}
    return {
        "ok": parsed.value("llmproxy_requests_total", outcome="ok", **ok),
        "upstream_error": parsed.value("llmproxy_requests_total", outcome="upstream_error", **ok),
        "unrouted": parsed.value(
            "llmproxy_requests_total",
            dialect="openai-chat",
            alias="",
            upstream="",
            operation="generate",
            outcome="client_error",
        ),
        "input": parsed.value("llmproxy_tokens_total", kind="input", **where),
        "cache_read": parsed.value("llmproxy_tokens_total", kind="cache_read", **where),
        "output": parsed.value("llmproxy_tokens_total", kind="output", **where),
        "durations": parsed.histogram("llmproxy_request_duration_seconds", **where)[2],
        "first_tokens": parsed.histogram("llmproxy_time_to_first_token_seconds", **where)[2],
        "cost": parsed.value("llmproxy_cost_usd_total", **where),
    }


@pytest.mark.e2e
def test_metrics_move_with_real_exchanges(proxy, alice_key, chat_upstream):
    before = series(scrape(proxy))
    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "Hello"}]
    chat_upstream.script(
        Reply(text="Bonjour", usage=Usage(input=30, output=7, cache_read=10)),
        Reply(text="one two three four", chunks=4, chunk_delay=0.3, usage=Usage(input=12, output=8)),
        Reply(error=Failure(500, "The upstream broke")),
    )

    assert client.chat.completions.create(model="m", messages=messages).choices[0].message.content == "Bonjour"

    stream = client.chat.completions.create(model="m", messages=messages, stream=True)
    pieces = []
    for number, chunk in enumerate(stream):
        if number == 1:  # the stream is open: it is in flight
            during = scrape(proxy)
            assert during.value("llmproxy_in_flight_requests") >= 1
            assert during.value("llmproxy_in_flight_streams") >= 1
        pieces += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(pieces) == "one two three four"

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=messages)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)

    expected = {
        "ok": 2,
        "upstream_error": 1,
        "unrouted": 1,
        "input": 20 + 12,  # the cached part of the first prompt is counted as cache_read, not input
        "cache_read": 10,
        "output": 7 + 8,
        "durations": 3,
        "first_tokens": 2,  # the failed request produced no output
    }

    def moved(parsed: Exposition) -> bool:
        now = series(parsed)
        return all(now[name] - before[name] == delta for name, delta in expected.items())

    after = wait_for(proxy, lambda parsed: moved(parsed) and parsed.value("llmproxy_in_flight_requests") == 0)
    now = series(after)
    assert {name: now[name] - before[name] for name in expected} == expected
    assert after.value("llmproxy_in_flight_requests") == 0
    assert after.value("llmproxy_in_flight_streams") == 0
    _, total, _ = after.histogram("llmproxy_request_duration_seconds", alias="m", upstream="metered")
    assert total >= 0.9  # the stream alone took about 4 chunks of 0.3 s


@pytest.mark.e2e
def test_cost_of_priced_exchanges_reaches_the_metrics(proxy, alice_key, chat_upstream):
    """Pricing happens when the ledger writes its rows; usage.ledger.write_pending reports each priced row."""
    ModelPrice.objects.create(model_pattern="real-model", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
    proxy.sync()
    before = series(scrape(proxy))["cost"]
    chat_upstream.script(Reply(text="Bonjour", usage=Usage(input=30, output=7, cache_read=10)))
    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hello"}])
    expected = (20 * 1 + 10 * 1 + 7 * 2) / 1_000_000  # cache reads at the input price when none is set
    after = wait_for(proxy, lambda parsed: series(parsed)["cost"] - before >= expected * 0.999)
    assert series(after)["cost"] - before == pytest.approx(expected)


async def test_without_a_token_only_loopback_may_scrape(settings):
    """With no METRICS_TOKEN, a scrape from another host is refused (the counters name users and models)."""
    from channels.testing import HttpCommunicator

    from routing.dataplane.http import serve_metrics

    settings.METRICS_TOKEN = ""
    for client, status in ((("10.0.0.7", 40000), 403), (("127.0.0.1", 40000), 200), (("::1", 40000), 200)):
        communicator = HttpCommunicator(serve_metrics, "GET", "/metrics")
        communicator.scope["client"] = client
        response = await communicator.get_response()
        assert response["status"] == status, client
        assert (b"llmproxy_" in response["body"]) == (status == 200)


@pytest.mark.e2e
def test_metrics_are_open_without_a_token(proxy):
    response = httpx.get(proxy.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert set(parse(response.text).types) == set(FAMILIES)
    assert httpx.post(proxy.url + "/metrics").status_code == 405


@pytest.mark.e2e
def test_metrics_token_is_required_when_set(transactional_db):
    server = ProxyServer(extra_env={"METRICS_TOKEN": "scrape-secret"})
    try:
        url = server.url + "/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer wrong-secret"}).status_code == 401
        assert httpx.get(url, headers={"authorization": "Basic scrape-secret"}).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer scrape-secret-and-more"}).status_code == 401
        unauthorized = httpx.get(url)
        assert unauthorized.headers["www-authenticate"].startswith("Bearer")
        assert "llmproxy_" not in unauthorized.text
        parsed = scrape(server, token="scrape-secret")
        assert set(parsed.types) == set(FAMILIES)
        assert httpx.get(url, headers={"authorization": "bearer scrape-secret"}).status_code == 200
    finally:
        server.stop()
