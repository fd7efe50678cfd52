"""The admin says what it is and answers the questions asked of keys: the proxy's name and links to the
dashboards on every admin page, keys filtered by status, a key's spend whether or not it has a budget, and
budgets below a cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from routing.models import KeyPolicy, ProxyKey
from usage.models import Period, UsageRollup


@pytest.fixture
def operator(db) -> Client:
    user = User.objects.create_superuser("operator", password="unused")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_names_the_proxy_and_links_to_the_dashboards(operator):
    html = operator.get("/admin/").content.decode()
    assert "<title>Upstreams, aliases, keys and usage | llmproxy admin</title>" in html
    assert "llmproxy administration" in html and "Django administration" not in html
    assert 'href="/dashboard/"' in html and 'href="/me/"' in html
    page = operator.get("/admin/routing/upstream/").content.decode()
    assert 'href="/dashboard/"' in page and "llmproxy admin" in page


def test_the_key_list_filters_by_status(operator):
    alice = User.objects.create_user("alice")
    ProxyKey.issue(alice, label="active-key")
    ProxyKey.issue(alice, label="later-key", expires_at=timezone.now() + timedelta(days=3))
    ProxyKey.issue(alice, label="expired-key", expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = ProxyKey.issue(alice, label="revoked-key")
    revoked.revoked_at = timezone.now()
    revoked.save()

    def shown(status: str) -> set[str]:
        html = operator.get(f"/admin/routing/proxykey/?status={status}").content.decode()
        return {label for label in ("active-key", "later-key", "expired-key", "revoked-key") if label in html}

    assert shown("active") == {"active-key", "later-key"}
    assert shown("expired") == {"expired-key"}
    assert shown("revoked") == {"revoked-key"}
    html = operator.get("/admin/routing/proxykey/").content.decode()
    assert "?status=expired" in html  # offered in the filter panel


def _spend(key: ProxyKey, cost: str, day: datetime, alias: str) -> None:
    UsageRollup.objects.create(
        hours=Period.DAY,
        period=day,
        user_id=key.user_id,
        key_id=key.pk,
        alias=alias,
        requests=1,
        cost_usd=Decimal(cost),
    )


def test_a_keys_form_shows_its_spend_without_a_budget(operator):
    alice = User.objects.create_user("alice")
    key, _ = ProxyKey.issue(alice, label="no-budget")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _spend(key, "1.2500", today, "a")
    _spend(key, "0.0075", today, "b")
    _spend(key, "40", today.replace(day=1) - timedelta(days=1), "a")  # last month
    html = operator.get(f"/admin/routing/proxykey/{key.pk}/change/").content.decode()
    assert "$1.2575 (per calendar month (UTC))" in html

    KeyPolicy.objects.create(key=key, budget_period="day")
    html = operator.get(f"/admin/routing/proxykey/{key.pk}/change/").content.decode()
    assert "$1.2575 (per day (UTC))" in html


def test_a_budget_takes_cents_and_below(operator):
    alice = User.objects.create_user("alice")
    key, _ = ProxyKey.issue(alice, label="tiny")
    form = {
        "user": alice.pk,
        "label": "tiny",
        "expires_at_0": "",
        "expires_at_1": "",
        "revoked_at_0": "",
        "revoked_at_1": "",
        "policy-TOTAL_FORMS": "1",
        "policy-INITIAL_FORMS": "0",
        "policy-MIN_NUM_FORMS": "0",
        "policy-MAX_NUM_FORMS": "1",
        "policy-0-allowed_models": "",
        "policy-0-budget_usd": "0.005",
        "policy-0-budget_period": "month",
        "policy-0-requests_per_minute": "",
        "policy-0-tokens_per_minute": "",
        "policy-0-concurrent_streams": "",
    }
    response = operator.post(f"/admin/routing/proxykey/{key.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert KeyPolicy.objects.get(key=key).budget_usd == Decimal("0.005")
