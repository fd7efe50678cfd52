"""Budgets per key, user and group (routing.access.budgets) through the live server: under, at and over, the refusal in
each client dialect naming the budget and when it resets, and the reset itself.

Each answer of the fake upstream costs exactly $0.02 (12 input and 8 output tokens at $1,000 per million). The
reset is shown by moving the spend into the previous period (the daily rollups are what budgets are summed from),
which is what the turn of a period looks like from the budget's side; tests/test_budget_periods.py covers the
calendar arithmetic and the in-memory turn of a period with a clock it controls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import Group, User
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from websockets.sync.client import connect as ws_connect

from routing.models import GroupPolicy, KeyPolicy, ProxyKey, UserPolicy
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from usage.models import ModelPrice, Period, UsageRollup

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


@pytest.fixture
def fake(transactional_db: None) -> Iterator:
    """A Chat upstream behind alias `m`; each answer costs $0.02."""
    ModelPrice.objects.create(model_pattern="real-model", input_per_mtok=1000, output_per_mtok=1000)
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=12, output=8))) as upstream:
        add_route("up", "openai-chat", upstream.url + "/v1", alias="m", model="real-model")
        yield upstream


def post(proxy, key: str) -> httpx.Response:
    response = httpx.post(
        proxy.url + CHAT,
        headers={"authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    proxy.drain()  # the ledger row is written and priced: this worker's spend is up to date
    return response


def laptop(user: User) -> ProxyKey:
    return ProxyKey.objects.get(user=user, label="laptop")


def tomorrow() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def next_month() -> datetime:
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def until_admitted(proxy, key: str, timeout: float = 8.0) -> int:
    """Workers re-read spend every BUDGET_REFRESH_INTERVAL seconds (2 by default): wait for that."""
    deadline = time.monotonic() + timeout
    while (status := post(proxy, key).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def test_a_key_budget_under_at_and_reset(proxy, alice, alice_key, fake):
    KeyPolicy.objects.create(key=laptop(alice), budget_usd=Decimal("0.04"), budget_period="day")
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200  # $0 spent
    assert post(proxy, alice_key).status_code == 200  # $0.02 spent: under
    at = post(proxy, alice_key)  # $0.04 spent: the budget is used up
    assert at.status_code == 429
    reset = tomorrow()
    seconds = int(at.headers["retry-after"])
    assert abs(seconds - (reset - datetime.now(UTC)).total_seconds()) < 5
    assert at.headers["x-should-retry"] == "false"
    message = at.json()["error"]["message"]
    assert message.startswith(
        f"The budget of key 'laptop' is spent ($0.04 of $0.04 today). It resets at {reset:%Y-%m-%d} 00:00 UTC (in "
    )
    assert at.json()["error"]["type"] == "insufficient_quota"
    assert fake.request_count == 2

    # Midnight, as far as the budget can tell: today's spend becomes yesterday's.
    UsageRollup.objects.filter(hours=Period.DAY).update(period=datetime.now(UTC) - timedelta(days=1))
    assert until_admitted(proxy, alice_key) == 200


def test_a_budget_is_overshot_by_at_most_what_was_admitted_under_it(proxy, alice, alice_key, fake):
    KeyPolicy.objects.create(key=laptop(alice), budget_usd=Decimal("0.03"), budget_period="month")
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200  # $0 spent
    assert post(proxy, alice_key).status_code == 200  # $0.02 spent: still under, so this one runs
    over = post(proxy, alice_key)  # $0.04 spent: over by the cost of the last request admitted
    assert over.status_code == 429
    assert "($0.04 of $0.03 this month)" in over.json()["error"]["message"]
    assert f"It resets at {next_month():%Y-%m-%d} 00:00 UTC" in over.json()["error"]["message"]


def test_a_user_budget_counts_every_key_of_the_user(proxy, alice, alice_key, fake):
    UserPolicy.objects.create(user=alice, budget_usd=Decimal("0.04"), budget_period="week")
    _, second_key = ProxyKey.issue(alice, label="ci")
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200
    assert post(proxy, second_key).status_code == 200
    refused = post(proxy, alice_key)
    assert refused.status_code == 429
    assert "The budget of user 'alice' is spent ($0.04 of $0.04 this week)" in refused.json()["error"]["message"]


def test_a_group_budget_is_shared_by_its_members(proxy, alice, alice_key, fake):
    research = Group.objects.create(name="research")
    GroupPolicy.objects.create(group=research, budget_usd=Decimal("0.04"), budget_period="month")
    bob = User.objects.create_user("bob")
    _, bob_key = ProxyKey.issue(bob)
    carol = User.objects.create_user("carol")  # not a member
    _, carol_key = ProxyKey.issue(carol)
    alice.groups.add(research)
    bob.groups.add(research)
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200
    assert post(proxy, bob_key).status_code == 200
    refused = post(proxy, alice_key)
    assert refused.status_code == 429
    assert "The budget of group 'research' is spent ($0.04 of $0.04 this month)" in refused.json()["error"]["message"]
    assert post(proxy, bob_key).status_code == 429
    assert post(proxy, carol_key).status_code == 200


def test_spend_from_before_a_budget_was_set_counts(proxy, alice, alice_key, fake):
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200
    assert post(proxy, alice_key).status_code == 200
    UserPolicy.objects.create(user=alice, budget_usd=Decimal("0.04"), budget_period="day")
    proxy.sync()  # a new budget starts from the period's spend in the ledger, read before it applies
    assert post(proxy, alice_key).status_code == 429


def test_a_budget_without_period_never_resets_and_a_zero_budget_blocks(proxy, alice, alice_key, fake):
    policy = KeyPolicy.objects.create(key=laptop(alice), budget_usd=Decimal("0.02"), budget_period="none")
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200
    refused = post(proxy, alice_key)
    assert refused.status_code == 429
    assert "retry-after" not in refused.headers
    assert refused.json()["error"]["message"] == (
        "The budget of key 'laptop' is spent ($0.02 of $0.02 in total). It has no period and does not reset: "
        "ask an administrator to raise it."
    )
    policy.budget_usd = Decimal("0.10")  # raised: admitted again at once
    policy.save()
    proxy.sync()
    assert post(proxy, alice_key).status_code == 200
    policy.budget_usd = Decimal(0)
    policy.save()
    proxy.sync()
    assert post(proxy, alice_key).status_code == 429


def test_budget_refusals_in_each_client_dialect_are_not_retried(proxy, alice, alice_key, fake):
    KeyPolicy.objects.create(key=laptop(alice), budget_usd=Decimal(0), budget_period="month")
    proxy.sync()

    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as anthropic_caught:  # default retries: x-should-retry says no
        anthropic.Anthropic(api_key=alice_key, base_url=proxy.url).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert anthropic_caught.value.body["error"]["type"] == "rate_limit_error"
    assert anthropic_caught.value.body["error"]["message"].startswith("The budget of key 'laptop' is spent")

    client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1")
    with pytest.raises(openai.RateLimitError) as chat_caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (chat_caught.value.code, chat_caught.value.type) == ("insufficient_quota", "insufficient_quota")
    assert "resets at" in chat_caught.value.body["message"]
    with pytest.raises(openai.RateLimitError) as responses_caught:
        client.responses.create(model="m", input="hi")
    assert responses_caught.value.code == "insufficient_quota"
    assert time.monotonic() - started < 2  # nobody waited to retry
    assert fake.request_count == 0

    gemini = genai.Client(
        api_key=alice_key,
        http_options=genai_types.HttpOptions(
            base_url=proxy.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(genai_errors.ClientError) as gemini_caught:
        gemini.models.generate_content(model="m", contents="hi")
    assert (gemini_caught.value.code, gemini_caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert gemini_caught.value.message.startswith("The budget of key 'laptop' is spent ($0.00 of $0.00 this month)")

    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
        event = json.loads(ws.recv())
        assert (event["type"], event["status"], event["error"]["code"]) == ("error", 429, "insufficient_quota")

    # Token counts cost nothing and are not refused; listings neither.
    counted = httpx.post(
        proxy.url + "/v1/messages/count_tokens",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert counted.status_code == 200
    assert httpx.get(proxy.url + "/v1/models", headers={"x-api-key": alice_key}).status_code == 200
