"""Every exchange through the live server writes one ledger row: checked field by field, for each client API
against each upstream format, streaming and not, and for failures, cancellations and a server stop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from django.test import Client
from google import genai
from google.genai import types as genai_types
from websockets.sync.client import connect as ws_connect

from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.liveserver import ProxyServer
from usage.models import LedgerEntry, ModelPrice

pytestmark = pytest.mark.e2e

FORMATS = ["anthropic", "openai-chat", "openai-responses", "gemini"]
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}
ENDPOINTS = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "gemini": "/v1/models/m:generateContent",  # google-genai 3.4's default API version
}
PROGRAMS = {
    "anthropic": "Anthropic SDK (Python)",
    "openai-chat": "OpenAI SDK (Python)",
    "openai-responses": "OpenAI SDK (Python)",
    "gemini": "google-genai SDK (Python)",
}
# What the fake upstream reports (input includes the 30 cached tokens), and the price the operator set.
REPORTED = Usage(input=100, output=20, cache_read=30)
PRICE = {"input": Decimal(2), "output": Decimal(10), "cache_read": Decimal("0.2"), "cache_write": Decimal("2.5")}


def hand_cost(input_tokens: int, output: int, cache_read: int, cache_write: int = 0) -> Decimal:
    per_token = {k: v / 1_000_000 for k, v in PRICE.items()}
    return (
        input_tokens * per_token["input"]
        + output * per_token["output"]
        + cache_read * per_token["cache_read"]
        + cache_write * per_token["cache_write"]
    )


def wait_for_rows(count: int, timeout: float = 10.0) -> list[LedgerEntry]:
    """The server writes rows in batches off the request path: wait for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(LedgerEntry.objects.order_by("started_at", "id"))
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {count} ledger rows, found {LedgerEntry.objects.count()}")


@pytest.fixture
def priced() -> None:
    ModelPrice.objects.create(
        model_pattern="real-model",
        input_per_mtok=PRICE["input"],
        output_per_mtok=PRICE["output"],
        cache_read_per_mtok=PRICE["cache_read"],
        cache_write_per_mtok=PRICE["cache_write"],
    )


@pytest.fixture
def upstream(request) -> Iterator:
    """A fake upstream of format `request.param` behind alias `m` → upstream model `real-model`."""
    provider = request.param
    with fake_upstream(provider) as fake:
        add_route("up", provider, fake.url + BASE_PATH[provider], alias="m", model="real-model")
        yield fake


def call(client_api: str, url: str, key: str, stream: bool, **headers: str) -> str:
    """One request with the official SDK of `client_api`; returns the text the client saw."""
    prompt = "Hello"
    if client_api == "anthropic":
        client = anthropic.Anthropic(api_key=key, base_url=url, max_retries=0, default_headers=headers)
        if stream:
            with client.messages.stream(
                model="m", max_tokens=50, messages=[{"role": "user", "content": prompt}]
            ) as events:
                return "".join(events.text_stream)
        message = client.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": prompt}])
        return "".join(block.text for block in message.content if block.type == "text")
    if client_api == "openai-chat":
        chat = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, default_headers=headers)
        if stream:
            chunks = chat.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        completion = chat.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        return completion.choices[0].message.content or ""
    if client_api == "openai-responses":
        responses = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, default_headers=headers)
        if stream:
            response_events = responses.responses.create(model="m", input=prompt, stream=True)
            return "".join(e.delta for e in response_events if e.type == "response.output_text.delta")
        return responses.responses.create(model="m", input=prompt).output_text
    gemini = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=url, headers=headers))
    if stream:
        return "".join(c.text or "" for c in gemini.models.generate_content_stream(model="m", contents=prompt))
    return gemini.models.generate_content(model="m", contents=prompt).text or ""


def expected_usage(upstream_format: str) -> dict[str, int | None]:
    """The fake's report, normalised: input excludes the cached part; a count the format does not report
    stays None (unknown), one it reports as zero stays 0."""
    return {
        "input_tokens": 70,
        "cache_read_tokens": 30,
        "output_tokens": 20,
        "cache_write_tokens": {"anthropic": 0, "openai-chat": None, "openai-responses": 0, "gemini": None}[
            upstream_format
        ],
        "reasoning_tokens": {"anthropic": None, "openai-chat": 0, "openai-responses": 0, "gemini": None}[
            upstream_format
        ],
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("upstream", FORMATS, indirect=True)
@pytest.mark.parametrize("client_api", FORMATS)
def test_each_exchange_writes_one_row_field_by_field(proxy, alice, alice_key, upstream, priced, client_api, stream):
    upstream.script(Reply(text="Hi there, friend", usage=REPORTED, chunks=3))
    proxy.sync()
    before = time.time()
    text = call(client_api, proxy.url, alice_key, stream)
    assert text == "Hi there, friend"

    (row,) = wait_for_rows(1)
    key = ProxyKey.objects.get()
    assert (row.key_id, row.user_id) == (key.pk, alice.pk)
    assert row.dialect == client_api
    expected_path = ENDPOINTS[client_api]
    if client_api == "gemini" and stream:
        expected_path = "/v1/models/m:streamGenerateContent"
    assert row.endpoint == expected_path
    assert row.operation == "generate"
    assert row.client_program == PROGRAMS[client_api]
    assert row.client_version
    assert (row.requested_model, row.alias, row.upstream, row.upstream_model) == ("m", "m", "up", "real-model")
    assert row.stream is stream
    assert (row.outcome, row.status, row.error_type, row.error_message) == ("ok", 200, "", "")
    assert row.upstream_request_id
    usage = expected_usage(upstream.handler.name)
    assert {field: getattr(row, field) for field in usage} == usage
    assert row.usage_partial is False
    assert row.cost_usd == hand_cost(70, 20, 30)
    assert row.price_source.startswith("override")
    assert (row.price_input, row.price_output, row.price_cache_read) == (
        PRICE["input"],
        PRICE["output"],
        PRICE["cache_read"],
    )
    assert before - 1 <= row.started_at.timestamp() <= row.finished_at.timestamp() <= time.time() + 1
    assert row.duration_ms is not None and 0 <= row.ttft_ms <= row.duration_ms
    assert row.tokens_per_second is not None and row.tokens_per_second > 0
    if not stream:  # a whole answer: its speed is over the whole exchange, not the last milliseconds
        generating = row.output_tokens / row.tokens_per_second  # seconds the speed was computed over
        assert abs(generating - row.duration_ms / 1000) <= 0.001  # the whole exchange (duration_ms is rounded)


@pytest.mark.parametrize("upstream", ["openai-chat"], indirect=True)
def test_a_chat_stream_is_metered_without_showing_the_client_a_usage_chunk_it_did_not_ask_for(
    proxy, alice_key, upstream, priced
):
    upstream.script(Reply(text="abc", usage=REPORTED))
    proxy.sync()
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(
        proxy.url + "/v1/chat/completions", headers={"authorization": f"Bearer {alice_key}"}, json=body
    )
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    assert all(json.loads(f)["choices"] for f in frames[:-1])  # no usage-only chunk
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    (row,) = wait_for_rows(1)
    assert (row.input_tokens, row.output_tokens) == (70, 20)


@pytest.mark.parametrize(
    ("failure", "outcome", "error_type"),
    [
        (Failure(429), "upstream_error", "rate_limited"),
        (Failure(500), "upstream_error", "upstream_error"),
        (Failure(400), "client_error", "invalid_request"),
    ],
    ids=["429", "500", "400"],
)
@pytest.mark.parametrize("upstream", ["anthropic", "openai-chat"], indirect=True)
def test_upstream_errors_are_recorded_with_their_kind(proxy, alice_key, upstream, failure, outcome, error_type):
    upstream.script(Reply(error=failure))
    proxy.sync()
    client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status, row.error_type) == (outcome, failure.status, error_type)
    assert row.error_message
    assert row.input_tokens is None and row.output_tokens is None
    # Failed before any usage: it cost nothing, and is not counted as "unpriced" on the dashboards.
    assert (row.cost_usd, row.price_source) == (Decimal(0), "not billed: failed without usage")


@pytest.mark.parametrize("upstream", ["anthropic", "gemini"], indirect=True)
def test_a_stream_that_fails_midway_records_what_was_seen_as_partial(proxy, alice_key, upstream, priced):
    upstream.script(Reply(text="one two three", usage=REPORTED, stream_error=Failure(529)))
    proxy.sync()
    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "x"}]):
            pass
    (row,) = wait_for_rows(1)
    assert row.outcome == "upstream_error"
    assert row.usage_partial is True
    assert row.input_tokens == 70  # reported when the stream began
    assert row.ttft_ms is not None


@pytest.mark.parametrize("upstream", ["openai-chat", "anthropic"], indirect=True)
def test_a_client_that_goes_away_is_recorded_as_cancelled(proxy, alice_key, upstream, priced):
    upstream.script(Reply(text="x " * 40, chunks=40, chunk_delay=0.1, usage=REPORTED))
    proxy.sync()
    with httpx.stream(
        "POST",
        proxy.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {alice_key}"},
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.stream, row.usage_partial) == ("cancelled", True, True)
    assert row.ttft_ms is not None
    assert row.duration_ms < 3000  # 40 frames would take 4 s


def test_refused_requests_of_a_key_are_recorded_as_client_errors_and_unauthenticated_ones_are_not(proxy, alice_key):
    proxy.sync()
    refused_before = refused_count(proxy)
    httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": "sk-llmp-wrong"}, json={"model": "m"})
    httpx.post(proxy.url + "/v1/messages", json={"model": "m", "max_tokens": 1})
    httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": alice_key}, json={"model": "nope", "max_tokens": 1})
    (row,) = wait_for_rows(1)
    proxy.drain()  # the probe writes every row this worker has queued
    assert LedgerEntry.objects.count() == 1  # failed authentication is counted in the metrics only
    assert (row.outcome, row.status, row.error_type, row.key_id is None) == ("client_error", 404, "not_found", False)
    assert (row.requested_model, row.alias, row.upstream_model) == ("nope", "", "")  # never resolved, still named
    assert "nope" in row.error_message
    assert refused_count(proxy) == refused_before + 3
    # The teammate's own page names it too (the dashboard's breakdowns: tests/test_dashboard.py).
    assert row.user is not None
    teammate = Client()
    teammate.force_login(row.user)
    assert "<code>nope</code>" in teammate.get("/me/").content.decode()


def refused_count(proxy: ProxyServer) -> int:
    """The server's count of Anthropic generations refused before a route was chosen (its /metrics)."""
    labels = 'dialect="anthropic",alias="",upstream="",operation="generate",outcome="client_error"'
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if line.startswith(f"llmproxy_requests_total{{{labels}}} "):
            return int(line.rsplit(" ", 1)[1])
    return 0


@pytest.mark.parametrize("upstream", ["openai-chat"], indirect=True)
def test_token_counting_is_recorded_and_not_billed(proxy, alice_key, upstream, priced):
    proxy.sync()
    client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
    client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hello there"}])
    (row,) = wait_for_rows(1)
    assert (row.operation, row.outcome, row.endpoint) == ("count_tokens", "ok", "/v1/messages/count_tokens")
    assert row.cost_usd == 0


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_client_program_and_session_come_from_the_real_clients_headers(proxy, alice_key, upstream):
    proxy.sync()
    claude = {"user-agent": "claude-cli/2.1.197 (external, sdk-cli)", "x-claude-code-session-id": "sess-claude"}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": alice_key, **claude}, json=body)
    legacy = {**body, "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "sess-in-body"})}}
    httpx.post(
        proxy.url + "/v1/messages",
        headers={"x-api-key": alice_key, "user-agent": "claude-cli/2.0.1 (external, cli)"},
        json=legacy,
    )
    codex = {"user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb", "session-id": "sess-codex"}
    httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": alice_key, **codex}, json=body)
    rows = wait_for_rows(3)
    assert [(r.client_program, r.client_version, r.client_session) for r in rows] == [
        ("Claude Code", "2.1.197", "sess-claude"),
        ("Claude Code", "2.0.1", "sess-in-body"),
        ("Codex", "0.169.0", "sess-codex"),
    ]


@pytest.mark.parametrize("upstream", ["anthropic", "openai-responses"], indirect=True)
def test_responses_over_websocket_records_each_response(proxy, alice_key, upstream, priced):
    upstream.script(Reply(text="one", usage=REPORTED), Reply(text="two", usage=REPORTED))
    proxy.sync()
    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi", "generate": False}))
        while json.loads(ws.recv())["type"] != "response.completed":
            pass
        for text in ("one", "two"):
            ws.send(json.dumps({"type": "response.create", "model": "m", "input": text}))
            while json.loads(ws.recv())["type"] != "response.completed":
                pass
    rows = wait_for_rows(2)
    time.sleep(0.3)
    assert LedgerEntry.objects.count() == 2  # the warm-up called no upstream and is not an exchange
    for row in rows:
        assert (row.endpoint, row.dialect, row.stream, row.outcome, row.error_message) == (
            "ws:/v1/responses",
            "openai-responses",
            True,
            "ok",
            "",
        )
        assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (70, 20, 30)
        assert row.cost_usd == hand_cost(70, 20, 30)


def test_a_graceful_stop_writes_every_finished_and_running_exchange(transactional_db, alice):
    _, key = ProxyKey.issue(alice, label="ci")
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        # Rows would be written every minute: only the stop can have written them.
        server = ProxyServer(extra_env={"CONFIG_REFRESH_INTERVAL": "60"})
        try:
            client = openai.OpenAI(api_key=key, base_url=server.url + "/v1", max_retries=0)
            # The first request starts the background worker, whose first pass writes what is queued by then:
            # let that pass go by first (a model listing is not a ledgered exchange).
            client.models.list()
            time.sleep(1.0)
            for _ in range(5):
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            fake.script(Reply(text="x " * 100, chunks=100, chunk_delay=0.1))
            running = httpx.stream(
                "POST",
                server.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            )
            with running as response:
                lines = response.iter_lines()  # kept: a dropped iterator would close the response
                next(lines)
                assert LedgerEntry.objects.count() == 0
                server.stop()  # SIGTERM while a stream runs
        finally:
            server.stop()
    rows = list(LedgerEntry.objects.order_by("started_at"))
    assert [r.outcome for r in rows] == ["ok"] * 5 + ["cancelled"], server.output()
    assert rows[-1].usage_partial is True
    assert "shut down" in rows[-1].error_message, server.output()


@pytest.mark.parametrize("upstream", ["openai-responses"], indirect=True)
def test_features_the_translation_dropped_are_recorded(proxy, alice_key, upstream):
    proxy.sync()
    client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}], "stop_sequences": ["END"]}
    with client.messages.with_streaming_response.create(**body, stream=True) as streamed:
        header = streamed.headers["x-llmproxy-warnings"]
        streamed.read()
    (row,) = wait_for_rows(1)
    assert "stop_sequences" in row.warnings.split(", ")
    assert set(header.split(", ")) <= set(row.warnings.split(", "))


@pytest.mark.parametrize(
    ("streamed", "expected"),
    [(False, 200.0), (True, 100 / 0.002)],
    ids=["whole answer: over the whole exchange", "stream: from the first token"],
)
def test_output_speed_counts_generation_time_only_where_it_is_real(streamed, expected):
    from usage.ledger import tokens_per_second

    # 100 tokens; the first byte came 498 ms into a 500 ms exchange.
    assert tokens_per_second(100, 0.498, 0.5, streamed=streamed) == pytest.approx(expected)
