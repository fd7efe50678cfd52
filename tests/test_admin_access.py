"""Operators set model access, budgets and rate limits on the admin pages of keys, users and groups; an edit reaches
the running server on its next request and lands in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from routing.models import AuditEntry, ConfigState, GroupPolicy, KeyPolicy, ProxyKey, UserPolicy
from tests.conftest import add_route
from usage.models import Period, UsageRollup


@pytest.fixture
def operator(transactional_db) -> Client:
    User.objects.create_superuser("operator", password="operator-password")
    client = Client()
    assert client.login(username="operator", password="operator-password")
    return client


def inline(prefix: str, **fields: str) -> dict[str, str]:
    data = {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1",
        f"{prefix}-0-budget_period": "month",
    }
    data.update({f"{prefix}-0-{name}": value for name, value in fields.items()})
    return data


def key_form(key: ProxyKey, **policy: str) -> dict[str, str]:
    return {
        "user": str(key.user_id),
        "label": key.label,
        "expires_at_0": "",
        "expires_at_1": "",
        "revoked_at_0": "",
        "revoked_at_1": "",
        **inline("policy", **policy),
    }


def test_a_key_gets_model_access_a_budget_and_limits_in_the_admin(operator, alice, alice_key, proxy):
    add_route("up", "openai-chat", "http://127.0.0.1:9/v1", alias="fast")
    add_route("other", "openai-chat", "http://127.0.0.1:9/v1", alias="smart")
    key = ProxyKey.objects.get(user=alice)
    page = operator.get(f"/admin/routing/proxykey/{key.pk}/change/").content.decode()
    assert "Model access and budget" in page and "Rate limits" in page

    token = ConfigState.current_token()
    response = operator.post(
        f"/admin/routing/proxykey/{key.pk}/change/",
        key_form(
            key,
            allowed_models="fast\nclaude-*, up/*\n",
            budget_usd="12.50",
            budget_period="week",
            requests_per_minute="30",
            tokens_per_minute="",
            concurrent_streams="2",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = KeyPolicy.objects.get(key=key)
    assert policy.allowed_models == ["fast", "claude-*", "up/*"]
    assert (policy.budget_usd, policy.budget_period) == (Decimal("12.50"), "week")
    assert (policy.requests_per_minute, policy.tokens_per_minute, policy.concurrent_streams) == (30, None, 2)
    assert ConfigState.current_token() != token
    entry = AuditEntry.objects.get(model="routing.keypolicy", action="create")
    assert entry.actor == "operator"
    assert entry.changes["allowed_models"] == [None, ["fast", "claude-*", "up/*"]]

    # The list reads back one per line, and the running server applies it.
    assert "fast\nclaude-*\nup/*" in operator.get(f"/admin/routing/proxykey/{key.pk}/change/").content.decode()
    proxy.sync()
    listed = httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {alice_key}"}).json()
    assert [m["id"] for m in listed["data"]] == ["fast"]


def test_a_negative_budget_is_refused(operator, alice):
    key = ProxyKey.issue(alice, label="laptop")[0]
    response = operator.post(f"/admin/routing/proxykey/{key.pk}/change/", key_form(key, budget_usd="-1"))
    assert response.status_code == 200
    assert "cannot be negative" in response.content.decode()
    assert not KeyPolicy.objects.exists()


def test_a_user_page_sets_the_users_access_budget_and_limits(operator, alice):
    page = operator.get(f"/admin/auth/user/{alice.pk}/change/").content.decode()
    assert "Proxy: model access, budget and rate limits" in page
    data = {
        "username": "alice",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": alice.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": alice.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": alice.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": alice.date_joined.strftime("%H:%M:%S"),
        **inline("proxy_policy", allowed_models="claude-*", budget_usd="100", requests_per_minute="60"),
    }
    response = operator.post(f"/admin/auth/user/{alice.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = UserPolicy.objects.get(user=alice)
    assert (policy.allowed_models, policy.budget_usd, policy.requests_per_minute) == (["claude-*"], 100, 60)


def test_a_group_page_sets_the_teams_access_and_budget_and_shows_its_spend(operator, alice):
    research = Group.objects.create(name="research")
    alice.groups.add(research)
    UsageRollup.objects.create(
        hours=Period.DAY,
        period=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
        user_id=alice.pk,
        key_id=1,
        requests=1,
        cost_usd=Decimal("3.25"),
    )
    data = {"name": "research", **inline("proxy_policy", allowed_models="fast", budget_usd="50")}
    response = operator.post(f"/admin/auth/group/{research.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = GroupPolicy.objects.get(group=research)
    assert (policy.allowed_models, policy.budget_usd, policy.budget_period) == (["fast"], 50, "month")
    page = operator.get(f"/admin/auth/group/{research.pk}/change/").content.decode()
    assert "$3.2500" in page  # what the members spent this month
