"""A person's own page, /me/: their keys (the plaintext shown once, revocation that the proxy obeys at once,
nobody else's keys) and their own usage and cost."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.account import NEW_KEY_SESSION, USAGE_DAYS
from routing.models import ProxyKey, hash_key
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from usage.models import LedgerEntry, Outcome

ME = "/me/"
PLAINTEXT = re.compile(r"sk-llmp-[A-Za-z0-9_-]{20,}")


def logged_in(user: User, **client_options) -> Client:
    client = Client(**client_options)
    client.force_login(user)
    return client


def create_key(client: Client, label: str = "", expires: str = "") -> tuple[ProxyKey, str]:
    """Create a key through the page; returns it with the plaintext the next render showed."""
    before = set(ProxyKey.objects.values_list("pk", flat=True))
    response = client.post("/me/keys/", {"label": label, "expires": expires})
    assert response.status_code == 302
    assert response["Location"] == ME
    (key,) = ProxyKey.objects.exclude(pk__in=before)
    page = client.get(ME)
    assert page.status_code == 200
    found = PLAINTEXT.findall(page.content.decode())
    assert len(set(found)) == 1, found
    return key, found[0]


@pytest.fixture
def bob(transactional_db: None) -> User:
    return User.objects.create_user("bob", password="bob-password")


def test_the_page_needs_a_login(db):
    response = Client().get(ME)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/me/")
    assert Client().post("/me/keys/", {"label": "x"}).status_code == 302
    assert ProxyKey.objects.count() == 0


def test_a_new_key_is_shown_once_and_stored_only_hashed(alice):
    client = logged_in(alice)
    response = client.post("/me/keys/", {"label": "ci runner", "expires": ""})
    assert response.status_code == 302
    # Between the creation and the next render the plaintext waits in the session, encrypted.
    waiting = json.dumps(client.session[NEW_KEY_SESSION])

    page = client.get(ME)
    text = page.content.decode()
    (plaintext,) = set(PLAINTEXT.findall(text))
    assert "only time it is shown" in text
    assert 'id="copy-key"' in text
    assert "no-store" in page["Cache-Control"]

    key = ProxyKey.objects.get(user=alice)
    assert key.label == "ci runner"
    assert key.key_hash == hash_key(plaintext)
    assert plaintext.startswith(key.prefix)
    for column, value in ProxyKey.objects.filter(pk=key.pk).values().get().items():
        assert plaintext not in str(value), column
    assert plaintext not in waiting
    for session in Session.objects.all():
        assert plaintext not in json.dumps(session.get_decoded())

    again = client.get(ME).content.decode()
    assert plaintext not in again
    assert not PLAINTEXT.search(again)
    assert f"{key.prefix}…" in again
    assert "ci runner" in again


def test_the_expiry_date_is_the_last_day_the_key_works(alice):
    client = logged_in(alice)
    day = (timezone.now() + timedelta(days=3)).astimezone(UTC).date()
    key, _ = create_key(client, label="short", expires=day.isoformat())
    assert key.expires_at == datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    yesterday = (timezone.now() - timedelta(days=1)).astimezone(UTC).date()
    response = client.post("/me/keys/", {"label": "late", "expires": yesterday.isoformat()}, follow=True)
    assert not ProxyKey.objects.filter(label="late").exists()
    assert "in the past" in response.content.decode()


def test_keys_are_listed_with_their_state(alice):
    active, _ = ProxyKey.issue(alice, label="active-one")
    revoked, _ = ProxyKey.issue(alice, label="revoked-one")
    revoked.revoked_at = timezone.now()
    revoked.save()
    ProxyKey.issue(alice, label="expired-one", expires_at=timezone.now() - timedelta(hours=1))
    text = logged_in(alice).get(ME).content.decode()
    rows = {m.group(1): m.group(2) for m in re.finditer(r'data-prefix="([^"]+)">(.*?)</tr>', text, re.S)}
    assert len(rows) == 3
    states = {prefix: re.search(r"status status-(\w+)", row).group(1) for prefix, row in rows.items()}  # type: ignore[union-attr]
    assert states[active.prefix] == "active"
    assert states[revoked.prefix] == "revoked"
    assert sorted(states.values()) == ["active", "expired", "revoked"]


def test_the_page_says_whose_bodies_are_captured(alice):
    key, _ = ProxyKey.issue(alice, label="debugging")
    other, _ = ProxyKey.issue(alice, label="plain")
    assert 'id="captured"' not in logged_in(alice).get(ME).content.decode()  # off by default: nothing to say
    ProxyKey.objects.filter(pk=key.pk).update(capture_bodies=True)
    upstream = add_route("up", "openai-chat", "http://127.0.0.1:1/v1", alias="traced-model")
    add_route("up2", "openai-chat", "http://127.0.0.1:1/v1", alias="quiet-model")
    upstream.aliases.filter(name="traced-model").update(capture_bodies=True)
    text = logged_in(alice).get(ME).content.decode()
    notice = re.search(r'<p class="notice" id="captured">(.*?)</p>', text, re.S)
    assert notice is not None
    said = " ".join(notice.group(1).split())
    assert f"<code>{key.prefix}…</code>" in said and other.prefix not in said
    assert "<code>traced-model</code>" in said and "quiet-model" not in said
    assert "for 7 days" in said


def test_relabel_and_revoke_own_key(alice):
    client = logged_in(alice)
    key, _ = ProxyKey.issue(alice, label="old")
    assert client.post(f"/me/keys/{key.pk}/label/", {"label": "new name"}).status_code == 302
    key.refresh_from_db()
    assert key.label == "new name"
    assert client.post(f"/me/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    stamp = key.revoked_at
    client.post(f"/me/keys/{key.pk}/revoke/")  # again: nothing changes
    key.refresh_from_db()
    assert key.revoked_at == stamp


def test_key_actions_need_post_and_csrf(alice):
    key, _ = ProxyKey.issue(alice)
    client = logged_in(alice, enforce_csrf_checks=True)
    assert client.get(f"/me/keys/{key.pk}/revoke/").status_code == 405
    assert client.post(f"/me/keys/{key.pk}/revoke/").status_code == 403  # no CSRF token
    assert client.post("/me/keys/", {"label": "x"}).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None
    assert ProxyKey.objects.count() == 1


def test_another_users_key_is_404(alice, bob):
    alices, _ = ProxyKey.issue(alice, label="alice's")
    client = logged_in(bob)
    assert client.post(f"/me/keys/{alices.pk}/revoke/").status_code == 404
    assert client.post(f"/me/keys/{alices.pk}/label/", {"label": "mine now"}).status_code == 404
    assert client.post("/me/keys/999999/revoke/").status_code == 404
    alices.refresh_from_db()
    assert alices.revoked_at is None
    assert alices.label == "alice's"
    assert alices.prefix not in client.get(ME).content.decode()


@pytest.mark.e2e
def test_a_key_revoked_on_the_page_is_refused_by_the_running_proxy(proxy, alice):
    client = logged_in(alice)
    _, plaintext = create_key(client, label="to revoke")
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        proxy.sync()
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {plaintext}"}
        ok = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert ok.status_code == 200, ok.text

        key = ProxyKey.objects.get(user=alice)
        assert client.post(f"/me/keys/{key.pk}/revoke/").status_code == 302
        proxy.sync()
        refused = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"


# --- usage ------------------------------------------------------------------------------------------------


def entry(user: User | None, days_ago: float, **fields) -> LedgerEntry:
    started = timezone.now() - timedelta(days=days_ago)
    defaults = {
        "started_at": started,
        "finished_at": started + timedelta(seconds=2),
        "user": user,
        "dialect": "anthropic",
        "endpoint": "/v1/messages",
        "requested_model": "claude-sonnet-4-5",
        "upstream": "anthropic",
        "upstream_model": "claude-sonnet-4-5",
        "outcome": Outcome.OK,
        "status": 200,
        "input_tokens": 1000,
        "output_tokens": 300,
        "cost_usd": Decimal("0.0075"),
        "duration_ms": 2000,
    }
    return LedgerEntry.objects.create(**{**defaults, **fields})


@pytest.fixture
def usage_rows(alice, bob) -> list[LedgerEntry]:
    """Alice's rows in the window (priced, unpriced, failed, two models, three days), plus rows that must not
    count: hers from before the window, bob's, and an unauthenticated one."""
    mine = [
        entry(alice, 0),
        entry(alice, 0, input_tokens=500, output_tokens=100, cache_read_tokens=2000, cost_usd=Decimal("0.0030")),
        entry(alice, 1, requested_model="local", upstream="ollama", upstream_model="llama3.2", cost_usd=None),
        entry(
            alice, 1, outcome=Outcome.UPSTREAM_ERROR, status=502, input_tokens=None, output_tokens=None, cost_usd=None
        ),
        entry(alice, USAGE_DAYS - 2, output_tokens=50, cost_usd=Decimal("0.0100")),
    ]
    entry(alice, USAGE_DAYS + 1, cost_usd=Decimal("5"))
    entry(bob, 0, cost_usd=Decimal("7"), input_tokens=99999)
    entry(None, 0, cost_usd=Decimal("9"))
    return mine


def test_usage_totals_equal_the_users_own_rows(alice, usage_rows):
    response = logged_in(alice).get(ME)
    usage = response.context["usage"]
    totals = usage["totals"]
    assert totals["requests"] == len(usage_rows) == 5
    assert totals["input_tokens"] == sum(r.input_tokens or 0 for r in usage_rows) == 3500
    assert totals["output_tokens"] == sum(r.output_tokens or 0 for r in usage_rows) == 750
    assert totals["cache_read_tokens"] == 2000
    assert totals["cost"] == sum((r.cost_usd for r in usage_rows if r.cost_usd is not None), Decimal(0))
    assert totals["cost"] == Decimal("0.0205")
    assert totals["unpriced"] == 2
    assert totals["errors"] == 1

    by_model = {(m["requested_model"], m["upstream_model"]): m for m in usage["by_model"]}
    assert set(by_model) == {("claude-sonnet-4-5", "claude-sonnet-4-5"), ("local", "llama3.2")}
    assert by_model["local", "llama3.2"]["cost"] is None  # unpriced, never zero
    assert by_model["local", "llama3.2"]["requests"] == 1
    assert by_model["claude-sonnet-4-5", "claude-sonnet-4-5"]["requests"] == 4
    assert sum(m["requests"] for m in usage["per_day"]) == 5
    assert len({m["day"] for m in usage["per_day"]}) == 3

    text = response.content.decode()
    assert "unpriced" in text
    assert "$0.0205" in text
    assert "99999" not in text  # bob's


def test_usage_is_a_few_aggregate_queries_whatever_the_row_count(alice, usage_rows):
    client = logged_in(alice)
    client.get(ME)
    with CaptureQueriesContext(connection) as few:
        client.get(ME)
    for _ in range(20):
        entry(alice, 2, requested_model="another")
    with CaptureQueriesContext(connection) as many:
        client.get(ME)
    assert len(many.captured_queries) == len(few.captured_queries)
    ledger_reads = [q["sql"] for q in many.captured_queries if "usage_ledgerentry" in q["sql"]]
    assert len(ledger_reads) == 2  # the usage per day and model (totals and per model are its sums), failures
    aggregates = [sql for sql in ledger_reads if "COUNT(" in sql or "SUM(" in sql]
    assert len(aggregates) == 1
    (failures,) = set(ledger_reads) - set(aggregates)  # the recent failures: a few rows at most
    assert "LIMIT 10" in failures


def test_no_usage_yet(alice):
    text = logged_in(alice).get(ME).content.decode()
    assert "No requests with your keys in this period." in text
    assert "You have no keys yet." in text
