"""Alerts through a real server and a local webhook receiver: a budget reaching 80 % and then 100 % sends one alert
each; a circuit opening sends one; a receiver that fails is retried; one that hangs holds up no request.

Each answer of the fake upstream costs exactly $0.02 (12 input and 8 output tokens at $1,000 per million), as in
tests/test_budgets.py. Each test has its own server: what a server saw (circuits, claimed alerts) stays in its
memory. "Exactly one" is checked once a later alert has arrived: the server looks at every budget and circuit
on each pass of its background worker, so a repeat would have been claimed before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from routing.models import ProxyKey, UserPolicy
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.liveserver import ProxyServer, free_port
from tests.receivers import SmtpReceiver, WebhookReceiver, wait_until
from usage.models import Alert, ModelPrice

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def alerting(webhook: WebhookReceiver, transactional_db: None) -> Iterator[ProxyServer]:
    env = {
        "ALERT_WEBHOOK_URLS": webhook.url + "/services/T000/B000/secret-path",
        "ALERT_RETRY_SECONDS": "0.05",
        "ALERT_ATTEMPTS": "4",
        "ALERT_ERROR_RATE_MIN_REQUESTS": "5",
        "ALERT_LINK_BASE_URL": "https://proxy.example.com",
    }
    with ProxyServer(extra_env=env) as server:
        yield server
        server.drain()


@pytest.fixture
def fake(transactional_db: None) -> Iterator:
    ModelPrice.objects.create(model_pattern="real-model", input_per_mtok=1000, output_per_mtok=1000)
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=12, output=8))) as upstream:
        add_route("up", "openai-chat", upstream.url + "/v1", alias="m", model="real-model")
        yield upstream


def post(server: ProxyServer, key: str) -> httpx.Response:
    response = httpx.post(
        server.url + CHAT,
        headers={"authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    server.drain()  # the ledger row is written: this worker's spend is up to date
    return response


def budgeted(name: str, amount: str) -> str:
    user = User.objects.create_user(name)
    UserPolicy.objects.create(user=user, budget_usd=Decimal(amount), budget_period="day")
    _, key = ProxyKey.issue(user, label="laptop")
    return key


def posts_of(webhook: WebhookReceiver, kind: str, **match: object) -> list[dict]:
    found = []
    for body in webhook.received():
        section = body.get("budget") or body.get("upstream") or {}
        if body["kind"] == kind and all(section.get(k) == v or body.get(k) == v for k, v in match.items()):
            found.append(body)
    return found


def test_a_budget_reaching_80_then_100_percent_sends_one_alert_each(alerting, webhook, fake):
    alice_key = budgeted("alice", "0.05")
    bob_key = budgeted("bob", "0.025")
    alerting.sync()

    assert post(alerting, alice_key).status_code == 200  # $0.02: 40 %
    assert post(alerting, alice_key).status_code == 200  # $0.04: 80 %
    (at_80,) = wait_until(lambda: posts_of(webhook, "budget", who="user 'alice'"), what="the 80 % alert")
    assert at_80["threshold_percent"] == 80
    assert at_80["budget"]["limit_usd"] == "0.05"
    assert at_80["budget"]["spent_usd"] == "0.04"
    assert at_80["budget"]["percent"] == 80.0
    assert at_80["budget"]["period"] == "day"
    assert at_80["budget"]["period_start"].endswith("T00:00:00+00:00")
    assert at_80["text"] == "llmproxy: the budget of user 'alice' has reached 80 %: $0.04 of $0.05 today (80 %)."
    assert at_80["dashboard_url"] == "https://proxy.example.com/dashboard/"
    assert at_80["time"]

    assert post(alerting, alice_key).status_code == 200  # $0.06: over
    assert post(alerting, alice_key).status_code == 429  # refused from now on
    wait_until(lambda: len(posts_of(webhook, "budget", who="user 'alice'")) >= 2, what="the 100 % alert")

    # A later alert (bob's budget at 80 %) has arrived: no repeat of alice's came before it.
    assert post(alerting, bob_key).status_code == 200
    wait_until(lambda: posts_of(webhook, "budget", who="user 'bob'"), what="bob's alert")
    alice_alerts = posts_of(webhook, "budget", who="user 'alice'")
    assert [body["threshold_percent"] for body in alice_alerts] == [80, 100]
    at_100 = alice_alerts[1]
    assert at_100["text"].startswith("llmproxy: the budget of user 'alice' is spent: $0.06 of $0.05 today (120 %).")
    assert "Its requests are refused until" in at_100["text"]
    assert len(webhook.received()) == 3

    # The operators see them in the admin, with how they went.
    rows = list(Alert.objects.order_by("raised_at", "id"))
    assert [(row.kind, row.subject, row.times) for row in rows] == [
        ("budget", "user 'alice', day", 1),
        ("budget", "user 'alice', day", 1),
        ("budget", "user 'bob', day", 1),
    ]
    wait_until(lambda: all(row.delivery for row in Alert.objects.all()), what="deliveries recorded")
    assert {row.delivery for row in Alert.objects.all()} == {"webhook 127.0.0.1: delivered"}
    staff = User.objects.create_user("ops", password="ops-password", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/usage/alert/").content.decode()
    assert "the budget of user &#x27;alice&#x27; is spent" in page
    assert "secret-path" not in page and "secret-path" not in alerting.output()


def test_a_failing_receiver_is_retried(alerting, webhook, fake):
    webhook.fail_next(2)
    alice_key = budgeted("alice", "0.025")
    alerting.sync()
    assert post(alerting, alice_key).status_code == 200  # $0.02: 80 %
    (alert,) = wait_until(lambda: posts_of(webhook, "budget"), what="the alert, on the third attempt")
    assert alert["threshold_percent"] == 80
    assert webhook.refused == 2
    row = wait_until(lambda: Alert.objects.exclude(delivery="").first(), what="the delivery recorded")
    assert row.delivery == "webhook 127.0.0.1: delivered (attempt 3)"
    assert row.delivered_at is not None


def test_a_circuit_opening_sends_one_alert(alerting, webhook, fake, alice_key):
    fake.script(*[Reply(error=Failure(500, "the upstream is down")) for _ in range(5)])
    alerting.sync()
    for _ in range(3):  # CIRCUIT_FAILURES: the third failure opens the circuit
        assert post(alerting, alice_key).status_code == 500
    (opened,) = wait_until(lambda: posts_of(webhook, "circuit_open"), what="the circuit alert")
    assert opened["upstream"]["target"] == "up/real-model"
    assert opened["upstream"]["upstream"] == "up"
    assert opened["upstream"]["circuit"] == "open"
    assert opened["upstream"]["consecutive_failures"] == 3
    assert opened["upstream"]["last_error"] == "answered 500"
    assert opened["text"].startswith("llmproxy: the circuit of up/real-model opened after 3 failure(s)")
    assert opened["dashboard_url"] == "https://proxy.example.com/admin/routing/upstream/?q=up"

    # Two more failures while it rests: 5 of 5 attempts failed, over the error-rate threshold; still one opening.
    for _ in range(2):
        assert post(alerting, alice_key).status_code == 500
    (rate,) = wait_until(lambda: posts_of(webhook, "error_rate"), what="the error-rate alert")
    assert (rate["upstream"]["attempts"], rate["upstream"]["failures"]) == (5, 5)
    assert rate["upstream"]["error_rate"] == 1.0
    assert rate["upstream"]["window_seconds"] == 300.0
    assert rate["upstream"]["threshold"] == 0.25
    assert len(posts_of(webhook, "circuit_open")) == 1


def test_a_hanging_receiver_holds_up_no_request(alerting, webhook, fake):
    webhook.hold()
    alice_key = budgeted("alice", "0.02")
    alerting.sync()
    assert post(alerting, alice_key).status_code == 200  # $0.02: spent; the alert's post now hangs
    assert webhook.held.wait(15)
    # While the delivery waits for an answer, requests are served and budgets still enforced as usual.
    bob_key = budgeted("bob", "10")
    alerting.sync()
    for _ in range(5):
        assert post(alerting, bob_key).status_code == 200
    assert post(alerting, alice_key).status_code == 429
    assert webhook.received() == []  # the post is still unanswered
    webhook.release()
    (alert,) = wait_until(lambda: posts_of(webhook, "budget", who="user 'alice'"), what="the held alert")
    assert alert["threshold_percent"] == 100  # 80 % and 100 % at once: the one that matters is sent


def test_alerts_go_by_email_too(fake, transactional_db):
    with SmtpReceiver() as smtp:
        env = {
            "ALERT_EMAILS": "ops@example.com,oncall@example.com",
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            "DEFAULT_FROM_EMAIL": "proxy@example.com",
        }
        with ProxyServer(extra_env=env) as server:
            alice_key = budgeted("alice", "0.02")
            server.sync()
            assert post(server, alice_key).status_code == 200  # $0.02: spent
            (mail,) = wait_until(smtp.received, what="the alert's email")
            server.drain()
    assert mail.sender == "proxy@example.com"
    assert mail.recipients == ["ops@example.com", "oncall@example.com"]
    assert mail.message["subject"].startswith("llmproxy: the budget of user 'alice' is spent: $0.02 of $0.02 today")
    body = mail.message.get_payload(decode=True).decode()
    assert '"threshold_percent": 100' in body and '"spent_usd": "0.02"' in body
    row = wait_until(
        lambda: (
            Alert.objects.filter(kind="budget").exclude(delivery="").exclude(delivery__startswith="not sent").first()
        ),
        what="the delivery recorded",
    )
    assert row.delivery == "email to 2 recipient(s): delivered"


def test_two_replicas_send_a_budget_alert_once(webhook, fake, transactional_db):
    env = {"ALERT_WEBHOOK_URLS": webhook.url, "ALERT_RETRY_SECONDS": "0.05"}
    with fake_upstream("openai-chat", default=Reply(error=Failure(503))) as broken:
        add_route("broken", "openai-chat", broken.url + "/v1", alias="broken", model="real-model")
        alice_key = budgeted("alice", "0.02")
        with ProxyServer(extra_env=env) as first, ProxyServer(extra_env=env) as second:
            first.sync()
            second.sync()
            assert post(first, alice_key).status_code == 200  # $0.02: spent, on the first replica
            wait_until(lambda: posts_of(webhook, "budget"), what="the first replica's alert")
            # The second replica knows it too once it refuses alice (its spend re-read from the database)...
            wait_until(lambda: post(second, alice_key).status_code == 429, what="the second replica's refusal")
            # ...and has looked at its budgets since: a circuit only it has seen open has been alerted.
            _, bob_key = ProxyKey.issue(User.objects.create_user("bob"))
            second.sync()
            for _ in range(3):
                httpx.post(
                    second.url + CHAT,
                    headers={"authorization": f"Bearer {bob_key}"},
                    json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
                    timeout=30,
                )
            wait_until(lambda: posts_of(webhook, "circuit_open"), what="the second replica's circuit alert")
            first.drain()
            second.drain()
    assert len(posts_of(webhook, "budget")) == 1
    assert Alert.objects.filter(kind="budget").count() == 2  # 80 % (passed at once, not sent) and 100 %


def test_a_receiver_that_is_down_is_given_up_after_the_attempts_and_requests_go_on(fake, transactional_db):
    down = f"http://127.0.0.1:{free_port()}/hooks/secret-path"  # nothing listens there
    env = {"ALERT_WEBHOOK_URLS": down, "ALERT_RETRY_SECONDS": "0.05", "ALERT_ATTEMPTS": "3"}
    with ProxyServer(extra_env=env) as server:
        alice_key = budgeted("alice", "0.02")
        server.sync()
        assert post(server, alice_key).status_code == 200
        assert post(server, alice_key).status_code == 429  # the budget holds, alert or no alert
        row = wait_until(
            lambda: Alert.objects.filter(delivery__contains="failed").first(), what="the delivery given up"
        )
        server.drain()
        output = server.output()
    assert row.delivery.startswith("webhook 127.0.0.1: failed after 3 attempt(s) (ConnectError: ")
    assert row.delivered_at is None
    assert output.count("not delivered (attempt") == 3
    assert "secret-path" not in output and "secret-path" not in row.delivery
