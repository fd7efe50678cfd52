"""Failover over an alias's targets (issue 13): each failure an upstream can have before the answer starts falls
back to the next target, and none of the client's own faults does; weights split the traffic; a failing target's
circuit opens and it gets no traffic until its rest ends; a pool key the upstream refuses rests alone. Through the
official SDKs against in-process fake upstreams that fail on cue; the ledger and /metrics show what happened."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
from django.contrib.auth.models import User
from django.test import Client
from google import genai
from google.genai import types as genai_types

from routing.config.configfile import ConfigFileError, export_config, import_config
from routing.models import ModelAlias, Upstream
from routing.upstream.health import health
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from tests.test_dashboard import section_rows
from tests.test_responses_ws import create, final, key, live, opened, reload, turn  # noqa: F401  (fixtures)
from usage import metrics
from usage.models import LedgerEntry

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def fresh_health(settings) -> Iterator[None]:
    """Circuits and key rests are per process: each test starts with none, and with its own thresholds."""
    settings.REDIS_URL = ""
    settings.CIRCUIT_FAILURES = 100  # a test that means to open a circuit says so
    health.reset()
    metrics.reset()
    yield
    health.reset()


def route(primary_url: str, other_url: str, *, fallback: bool = True, weight: int = 1, **alias_fields) -> ModelAlias:
    """Alias `smart`: first target an Anthropic upstream `a`, second an OpenAI Chat upstream `b` (another API:
    the request is translated for it)."""
    a = Upstream.objects.create(name="a", format="anthropic", base_url=primary_url)
    Upstream.objects.create(name="b", format="openai-chat", base_url=other_url + "/v1")
    target = {"upstream": "b", "model": "b-model", "weight": weight, "fallback": fallback}
    return ModelAlias.objects.create(
        name="smart", upstream=a, upstream_model="a-model", targets=[target], **alias_fields
    )


def claude(inproc: InProcessProxy, proxy_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=proxy_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())


def rows() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(alias="smart").order_by("started_at", "id"))


RETRYABLE = [
    ("429", Reply(error=Failure(429, "slow down", type="rate_limit_error")), 429),
    ("500", Reply(error=Failure(500, "boom", type="api_error")), 500),
    ("502", Reply(error=Failure(502, "bad gateway", type="api_error")), 502),
    ("503", Reply(error=Failure(503, "unavailable", type="api_error")), 503),
    ("504", Reply(error=Failure(504, "gateway timeout", type="api_error")), 504),
    ("529", Reply(error=Failure(529, "Overloaded", type="overloaded_error")), 529),
    ("first-byte timeout", Reply(hang=True), 0),
]


def test_each_failure_before_the_answer_falls_back_to_the_next_target(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        Upstream.objects.filter(name="a").update(timeout=0.3)
        inproc.sync()
        client = claude(inproc, alice_key)
        b.script(*[Reply(text=f"from b {i}") for i in range(len(RETRYABLE))])
        for name, failure, _ in RETRYABLE:
            a.script(failure)
            answer = client.messages.create(model="smart", max_tokens=50, messages=HI)
            assert answer.content[0].text.startswith("from b"), name  # type: ignore[union-attr]
        assert b.request_count == len(RETRYABLE)
        assert {r.json["model"] for r in b.requests} == {"b-model"}
        inproc.drain()
        ledger = rows()
        assert [(r.attempts, r.upstream, r.upstream_model, r.outcome) for r in ledger] == [
            (2, "b", "b-model", "ok")
        ] * len(RETRYABLE)
        assert [r.failed_attempts[0]["status"] for r in ledger] == [status for _, _, status in RETRYABLE]
        assert all(r.failed_attempts[0]["target"] == "a/a-model" for r in ledger)
        assert "did not answer within 0.3 s" in ledger[-1].failed_attempts[0]["message"]


def test_an_unreachable_target_falls_back(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as b:
        route("http://127.0.0.1:1", b.url)  # nothing listens on port 1: connection refused
        inproc.sync()
        answer = claude(inproc, alice_key).messages.create(model="smart", max_tokens=50, messages=HI)
        assert answer.content[0].type == "text"
        assert b.request_count == 1
        inproc.drain()
        (row,) = rows()
        assert row.attempts == 2 and row.failed_attempts[0]["status"] == 0
        assert "unreachable" in row.failed_attempts[0]["message"]


def test_a_prompt_beyond_a_targets_context_window_goes_to_the_next_target(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        Upstream.objects.filter(name="a").update(context_window=200)  # a small local model, say
        inproc.sync()
        client = claude(inproc, alice_key)
        short = client.messages.create(model="smart", max_tokens=50, messages=HI)
        assert short.content[0].type == "text" and a.request_count == 1 and b.request_count == 0
        long = [{"role": "user", "content": "word " * 2000}]
        answer = client.messages.create(model="smart", max_tokens=50, messages=long)
        assert answer.content[0].type == "text"
        assert (a.request_count, b.request_count) == (1, 1)
        inproc.drain()
        first, second = rows()
        assert (first.upstream, first.fallback, first.failed_attempts) == ("a", False, [])
        assert (second.upstream, second.outcome, second.attempts, second.fallback) == ("b", "ok", 1, True)
        assert second.failed_attempts[0]["target"] == "a/a-model"
        assert "context window is 200 tokens" in second.failed_attempts[0]["message"]


def test_a_prompt_no_target_can_take_is_refused_with_the_reason(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        Upstream.objects.update(context_window=200)
        inproc.sync()
        with pytest.raises(anthropic.BadRequestError, match="context window is 200 tokens"):
            claude(inproc, alice_key).messages.create(
                model="smart", max_tokens=50, messages=[{"role": "user", "content": "word " * 2000}]
            )
        assert (a.request_count, b.request_count) == (0, 0)


@pytest.mark.parametrize(
    "status, kind, sdk_error",
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (404, "not_found_error", anthropic.NotFoundError),
        (413, "request_too_large", anthropic.APIStatusError),
    ],
)
def test_the_clients_own_faults_do_not_fall_back(inproc, alice_key, status, kind, sdk_error):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        a.script(Reply(error=Failure(status, f"refused with {status}", type=kind)))
        with pytest.raises(sdk_error) as raised:
            claude(inproc, alice_key).messages.create(model="smart", max_tokens=50, messages=HI)
        assert raised.value.status_code == status
        assert f"refused with {status}" in str(raised.value)
        assert b.request_count == 0
        inproc.drain()
        (row,) = rows()
        assert (row.attempts, row.upstream, row.status, row.failed_attempts) == (1, "a", status, [])


def test_a_stream_that_fails_after_its_first_event_is_not_retried(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        a.script(Reply(text="partial answer here", stream_error=Failure(529, "Overloaded", type="overloaded_error")))
        client = claude(inproc, alice_key)
        with (
            client.messages.stream(model="smart", max_tokens=50, messages=HI) as stream,
            pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        ):
            for _ in stream:
                pass
        assert b.request_count == 0
        inproc.drain()
        (row,) = rows()
        assert (row.attempts, row.upstream, row.outcome) == (1, "a", "upstream_error")


def test_the_last_attempts_answer_reaches_the_client_when_every_target_fails(inproc, alice_key, settings):
    settings.ROUTING_MAX_ATTEMPTS = 2
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        a.script(Reply(error=Failure(503, "a is down", type="api_error")))
        b.script(Reply(error=Failure(500, "b is down too", type="server_error")))
        with pytest.raises(anthropic.InternalServerError, match="b is down too"):
            claude(inproc, alice_key).messages.create(model="smart", max_tokens=50, messages=HI)
        inproc.drain()
        (row,) = rows()
        assert (row.attempts, row.upstream, row.status) == (2, "b", 500)
        assert [f["target"] for f in row.failed_attempts] == ["a/a-model"]
        operator = Client()
        operator.force_login(User.objects.create_superuser("operator", password=None))
        page = operator.get(f"/admin/usage/ledgerentry/{row.pk}/change/").content.decode()
        assert re.search(r"field-failed_attempts[\s\S]{0,600}a/a-model[\s\S]{0,200}a is down", page)


def test_weights_split_the_traffic(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        a_row = Upstream.objects.create(name="a", format="anthropic", base_url=a.url)
        Upstream.objects.create(name="b", format="openai-chat", base_url=b.url + "/v1")
        ModelAlias.objects.create(
            name="smart", upstream=a_row, upstream_model="a-model", weight=3, targets=[{"upstream": "b", "model": "b"}]
        )
        inproc.sync()
        oai = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
        for _ in range(200):
            oai.chat.completions.create(model="smart", messages=HI)  # type: ignore[arg-type]
        assert (a.request_count, b.request_count) == (150, 50)


def test_a_failing_target_rests_then_gets_one_trial(inproc, alice_key, settings):
    settings.CIRCUIT_FAILURES = 2
    settings.CIRCUIT_COOLDOWN = 1.0
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        client = claude(inproc, alice_key)
        a.script(*[Reply(error=Failure(500, "down", type="api_error"))] * 2)
        for _ in range(2):
            client.messages.create(model="smart", max_tokens=20, messages=HI)
        assert a.request_count == 2
        # Open: the next requests go straight to the fallback, the resting target sees none of them.
        for _ in range(5):
            client.messages.create(model="smart", max_tokens=20, messages=HI)
        assert a.request_count == 2 and b.request_count == 7
        operator = Client()
        operator.force_login(User.objects.create_superuser("operator", password=None))
        listing = operator.get("/admin/routing/upstream/").content.decode()
        assert re.search(r"a/a-model · open · until \d\d:\d\d:\d\d UTC", listing)
        inproc.drain()
        exposed = inproc.http.get("/metrics").text
        assert "llmproxy_open_circuits 1" in exposed
        assert 'llmproxy_fallbacks_total{alias="smart",upstream="b"} 7' in exposed
        assert 'llmproxy_upstream_attempts_total{upstream="a",outcome="upstream_error"} 2' in exposed
        # The dashboard shows the fallbacks taken per alias and serving upstream, and what failed first.
        page = operator.get("/dashboard/?range=24h").content.decode()
        assert section_rows(page, "fallbacks")[0][:4] == ["smart", "b", "7", "a/a-model \u00d72"]
        # Its rest over, one request tries it; it answers, and the circuit closes.
        time.sleep(1.1)
        client.messages.create(model="smart", max_tokens=20, messages=HI)
        assert a.request_count == 3 and b.request_count == 7
        listing = operator.get("/admin/routing/upstream/").content.decode()
        assert re.search(r"a/a-model · closed · \d+% errors \(5 min, this worker\)", listing)
        assert "llmproxy_open_circuits 0" in inproc.http.get("/metrics").text


def test_a_429_with_retry_after_rests_the_target_that_long(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        client = claude(inproc, alice_key)
        a.script(Reply(error=Failure(429, "slow down", type="rate_limit_error", retry_after=1)))
        client.messages.create(model="smart", max_tokens=20, messages=HI)
        client.messages.create(model="smart", max_tokens=20, messages=HI)
        assert (a.request_count, b.request_count) == (1, 2)
        time.sleep(1.1)
        client.messages.create(model="smart", max_tokens=20, messages=HI)
        assert (a.request_count, b.request_count) == (2, 2)


def test_a_pool_key_that_is_refused_or_rate_limited_rests_alone(inproc, alice_key, monkeypatch):
    monkeypatch.setenv("POOL_KEY_1", "sk-pool-one")
    monkeypatch.setenv("POOL_KEY_2", "sk-pool-two")
    monkeypatch.setenv("POOL_KEY_3", "sk-pool-three")
    with inproc.upstream("openai-chat", strict=False) as up:
        upstream = Upstream.objects.create(
            name="pool", format="openai-chat", base_url=up.url + "/v1", api_key_env="POOL_KEY_1, POOL_KEY_2, POOL_KEY_3"
        )
        ModelAlias.objects.create(name="smart", upstream=upstream, upstream_model="m")
        inproc.sync()
        oai = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
        up.script(
            Reply(error=Failure(429, "key one is rate limited", retry_after=60)),
            Reply(text="ok"),
            Reply(error=Failure(401, "key three is revoked", type="invalid_request_error")),
            Reply(text="ok"),
        )
        for _ in range(5):
            answer = oai.chat.completions.create(model="smart", messages=HI)  # type: ignore[arg-type]
            assert answer.choices[0].message.content
        used = [r.headers["authorization"].removeprefix("Bearer ") for r in up.requests]
        # Round-robin from key one: it is rate-limited (rests), two serves; three is refused (rests), two again;
        # then only key two is left awake.
        assert used == ["sk-pool-one", "sk-pool-two", "sk-pool-three", "sk-pool-two"] + ["sk-pool-two"] * 3
        inproc.drain()
        ledger = rows()
        assert [r.attempts for r in ledger] == [2, 2, 1, 1, 1]
        assert [f["status"] for r in ledger for f in r.failed_attempts] == [429, 401]


def test_failover_serves_every_client_api(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as a, inproc.upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        inproc.sync()
        down = Reply(error=Failure(503, "down", type="api_error"))
        oai = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
        options = genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
        gemini = genai.Client(api_key=alice_key, http_options=options)

        a.script(down)
        assert oai.chat.completions.create(model="smart", messages=HI).choices[0].message.content  # type: ignore[arg-type]
        a.script(down)
        assert oai.responses.create(model="smart", input="Hi").output_text
        a.script(down)
        assert gemini.models.generate_content(model="smart", contents="Hi").text
        a.script(down)
        with claude(inproc, alice_key).messages.stream(model="smart", max_tokens=20, messages=HI) as stream:
            assert stream.get_final_text()
        assert (a.request_count, b.request_count) == (4, 4)
        inproc.drain()
        assert [(r.dialect, r.attempts, r.upstream) for r in rows()] == [
            ("openai-chat", 2, "b"),
            ("openai-responses", 2, "b"),
            ("gemini", 2, "b"),
            ("anthropic", 2, "b"),
        ]


# --- configuration ---------------------------------------------------------------------------------------------

CONFIG = """
upstreams:
  - {name: a, format: openai-chat, base_url: "http://127.0.0.1:9/v1", api_key_env: [A_KEY_1, A_KEY_2]}
  - {name: b, format: anthropic, base_url: "http://127.0.0.1:9"}
  - {name: c, format: gemini, base_url: "http://127.0.0.1:9"}
aliases:
  - name: smart
    targets:
      - {upstream: a, model: m1, weight: 3}
      - {upstream: b, model: m2, weight: 1}
      - {upstream: c, model: m3, fallback: true}
  - {name: "gpt-*", upstream: a}
"""


@pytest.mark.django_db
def test_targets_and_key_pools_round_trip_through_the_config_file():
    import_config(CONFIG)
    smart = ModelAlias.objects.get(name="smart")
    assert (smart.upstream.name, smart.upstream_model, smart.weight) == ("a", "m1", 3)
    assert smart.targets == [
        {"upstream": "b", "model": "m2", "weight": 1, "fallback": False},
        {"upstream": "c", "model": "m3", "weight": 1, "fallback": True},
    ]
    assert Upstream.objects.get(name="a").api_key_env == "A_KEY_1, A_KEY_2"
    exported = export_config()
    assert "api_key_env:\n  - A_KEY_1\n  - A_KEY_2" in exported
    report = import_config(exported)
    assert not report.created and not report.updated
    assert ModelAlias.objects.get(name="gpt-*").targets == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "targets, message",
    [
        ("[{upstream: c, model: m3, fallback: true}]", "the first target cannot be a fallback"),
        ("[{upstream: a, model: m1, weight: 0}]", "weight must be a whole number"),
        ("[{upstream: a, model: m1}, {upstream: nowhere, model: x}]", "no upstream named nowhere"),
        ("[{upstream: a, model: m1, priority: 2}]", "unknown field"),
    ],
)
def test_bad_targets_are_refused_with_their_line(targets, message):
    text = CONFIG.replace(
        "    targets:\n      - {upstream: a, model: m1, weight: 3}\n      - {upstream: b, model: m2, weight: 1}\n"
        "      - {upstream: c, model: m3, fallback: true}\n",
        f"    targets: {targets}\n",
    )
    with pytest.raises(ConfigFileError, match=re.escape(message)):
        import_config(text)


# --- the Responses WebSocket ----------------------------------------------------------------------------------


@pytest.fixture
def failing_pair(transactional_db):
    with fake_upstream("anthropic", strict=False) as a, fake_upstream("openai-chat", strict=False) as b:
        route(a.url, b.url)
        yield a, b


async def test_codex_over_the_responses_websocket_falls_back(live, key, failing_pair):  # noqa: F811
    a, b = failing_pair
    await reload()
    a.script(Reply(error=Failure(529, "Overloaded", type="overloaded_error")))
    ws = await opened(key)
    response = final(await turn(ws, create(model="smart", input="Hi", tools=[], reasoning=None, include=[])))
    assert response["status"] == "completed" and response["output"]
    assert (a.request_count, b.request_count) == (1, 1)
    await ws.disconnect()


# --- choosing a target -----------------------------------------------------------------------------------------


def test_the_target_with_fewer_requests_in_flight_per_weight_goes_first():
    from routing.config.registry import Target, upstream_route
    from routing.config.shaping import NO_SHAPING

    one = upstream_route(Upstream(pk=1, name="one", format="openai-chat", base_url="http://127.0.0.1:9/v1"))
    two = upstream_route(Upstream(pk=2, name="two", format="openai-chat", base_url="http://127.0.0.1:9/v1"))
    heavy, light = Target(one, "m", NO_SHAPING, weight=2), Target(two, "m", NO_SHAPING, weight=1)
    # Nothing in flight: the weights decide, two in three to the heavier one.
    firsts = [health.order("alias", [heavy, light])[0].name for _ in range(6)]
    assert firsts.count("one/m") == 4 and firsts.count("two/m") == 2
    # Two requests running on the heavy target (one per unit of weight), none on the light one: light goes first.
    health.started(heavy)
    health.started(heavy)
    assert [t.name for t in health.order("alias", [heavy, light])] == ["two/m", "one/m"]
    health.started(light)
    health.started(light)  # now two per unit of weight on light, one on heavy
    assert health.order("alias", [heavy, light])[0].name == "one/m"
    for target in (heavy, heavy, light, light):
        health.finished(target)
    assert health.in_flight == {}


@pytest.mark.django_db
def test_stored_keys_make_a_pool_too():
    from routing.config.registry import upstream_route

    upstream = Upstream(name="pool", format="anthropic", base_url="http://127.0.0.1:9")
    upstream.set_api_key("sk-ant-one sk-ant-two\nsk-ant-three")
    upstream.save()
    assert upstream_route(upstream).credentials == ("sk-ant-one", "sk-ant-two", "sk-ant-three")
    assert "sk-ant" not in export_config()


@pytest.mark.django_db
def test_the_admin_checks_an_aliass_targets():
    from django.core.exceptions import ValidationError

    upstream = Upstream.objects.create(name="a", format="anthropic", base_url="http://127.0.0.1:9")
    alias = ModelAlias(name="smart", upstream=upstream, upstream_model="m", targets=[{"upstream": "nowhere"}])
    with pytest.raises(ValidationError, match="no upstream named nowhere"):
        alias.full_clean()
    alias.targets = [{"upstream": "a", "model": "m2", "weight": "3"}]
    with pytest.raises(ValidationError, match="weight must be a whole number"):
        alias.full_clean()
    alias.targets = [{"upstream": "a", "model": "m2", "fallback": True}]
    alias.full_clean()
    assert alias.targets == [{"upstream": "a", "model": "m2", "weight": 1, "fallback": True}]
