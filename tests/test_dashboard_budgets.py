"""The dashboard's Budgets panel: each group, user and key with a budget against what it spent this period, counted
as the hot path counts it (routing.access.budgets), sorted, linked to the view of what it counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from routing.access.budgets import SpendBook
from routing.config.registry import load_snapshot
from routing.models import GroupPolicy, KeyPolicy, ProxyKey, UserPolicy
from tests.test_dashboard import section_rows
from usage.models import LedgerEntry, Outcome
from usage.rollups import apply_rollups

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
THIS_MONTH = TODAY.replace(day=1)


def spend(user: User, key: ProxyKey, started_at: datetime, cost: str) -> LedgerEntry:
    return LedgerEntry(
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=1),
        user=user,
        key=key,
        dialect="anthropic",
        endpoint="/v1/messages",
        outcome=Outcome.OK,
        status=200,
        duration_ms=1000,
        alias="sonnet",
        upstream_model="claude-sonnet-4",
        input_tokens=10,
        output_tokens=5,
        cost_usd=Decimal(cost),
    )


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_user("boss", password="x", is_staff=True))
    return client


@pytest.fixture
def budgets(db: None) -> dict[str, Any]:
    """A group of two with a monthly budget, a user and a key with their own, and spend inside and just outside
    each current period; people, keys and groups without a budget spend too."""
    users = {name: User.objects.create_user(name, password="x") for name in ("alice", "bob", "carol", "dave", "erin")}
    keys = {name: ProxyKey.issue(user, label="laptop")[0] for name, user in users.items()}
    other_dave_key, _ = ProxyKey.issue(users["dave"], label="ci")
    research = Group.objects.create(name="research")
    research.user_set.add(users["alice"], users["bob"])
    GroupPolicy.objects.create(group=research, budget_usd=Decimal("10"), budget_period="month")
    idle = Group.objects.create(name="idle")  # an access list, no budget: not listed
    idle.user_set.add(users["erin"])
    GroupPolicy.objects.create(group=idle, allowed_models=["claude-*"])
    UserPolicy.objects.create(user=users["carol"], budget_usd=Decimal("2"), budget_period="month")
    UserPolicy.objects.create(user=users["erin"], requests_per_minute=10)  # limits only: not listed
    KeyPolicy.objects.create(key=keys["dave"], budget_usd=Decimal("1"), budget_period="day")
    in_month = THIS_MONTH + timedelta(minutes=30)
    last_month = THIS_MONTH - timedelta(minutes=30)
    created = LedgerEntry.objects.bulk_create(
        [
            spend(users["alice"], keys["alice"], in_month, "0.50"),
            spend(users["bob"], keys["bob"], in_month, "7.75"),
            spend(users["alice"], keys["alice"], last_month, "100"),  # last month: not this month's
            spend(users["carol"], keys["carol"], in_month, "2.50"),
            spend(users["carol"], keys["carol"], last_month, "3"),
            spend(users["dave"], keys["dave"], TODAY + timedelta(minutes=1), "0.00005"),
            spend(users["dave"], keys["dave"], TODAY - timedelta(minutes=1), "5"),  # yesterday
            spend(users["dave"], other_dave_key, TODAY + timedelta(minutes=1), "0.30"),  # another key of dave's
            spend(users["erin"], keys["erin"], in_month, "1"),
        ]
    )
    apply_rollups(created)
    return {"users": users, "keys": keys, "research": research}


def panel(client: Client, query: str = "") -> tuple[str, list[list[str]]]:
    html = client.get(f"/dashboard/{query}").content.decode()
    return html, section_rows(html, "budgets")


def test_each_budget_against_its_spend_this_period(staff_client: Client, budgets: dict[str, Any]) -> None:
    _, rows = panel(staff_client)
    dave_key = budgets["keys"]["dave"]
    # By share used, the most used first: carol overshot (the requests running when it was reached finished),
    # the group is past 80 %, dave's key has spent less than shows as a digit.
    assert [row[0] for row in rows] == ["user carol", "group research", f"key {dave_key.prefix}… laptop (dave)"]
    carol, research, key = rows
    assert carol[1:] == ["$2.50", "$2.00 this month", "125 %", "exhausted", carol[5]]
    # The group's spend is its members' this month (alice $0.50 + bob $7.75), not alice's $100 of last month.
    assert research[1:5] == ["$8.25", "$10.00 this month", "82 %", "over 80 %"]
    # The key's spend is its own today: not yesterday's $5, not dave's other key.
    assert key[1:5] == ["< $0.0001", "$1.00 today", "0 %", "ok"]
    next_month = (THIS_MONTH + timedelta(days=32)).replace(day=1)
    assert carol[5] == research[5] == f"{next_month:%Y-%m-%d %H:%M}"
    assert key[5] == f"{TODAY + timedelta(days=1):%Y-%m-%d %H:%M}"


def test_the_panel_counts_what_the_hot_path_enforces(staff_client: Client, budgets: dict[str, Any]) -> None:
    """The same figures as the spend book that refuses requests."""
    book = SpendBook()
    snapshot = load_snapshot()
    book.refresh(snapshot, now=NOW)
    found = {b.subject: book.spent(b, NOW.timestamp()) for b in snapshot.budgets.values()}
    research, carol = budgets["research"], budgets["users"]["carol"]
    assert found[("group", research.pk)] == Decimal("8.25")
    assert found[("user", carol.pk)] == Decimal("2.50")
    assert found[("key", budgets["keys"]["dave"].pk)] == Decimal("0.00005")


def test_only_budgets_are_listed(staff_client: Client, budgets: dict[str, Any]) -> None:
    """Erin spends but has only a rate limit, her group only an access list; dave's other key has no budget."""
    html, _ = panel(staff_client)
    listed = set(re.findall(r'data-scope="(\w+)" data-subject="(\d+)"', html))
    users, keys = budgets["users"], budgets["keys"]
    assert listed == {
        ("group", str(budgets["research"].pk)),
        ("user", str(users["carol"].pk)),
        ("key", str(keys["dave"].pk)),
    }


def test_a_revoked_key_and_no_budget_at_all(staff_client: Client, budgets: dict[str, Any]) -> None:
    ProxyKey.objects.filter(pk=budgets["keys"]["dave"].pk).update(revoked_at=NOW)
    _, rows = panel(staff_client)
    assert [row[0] for row in rows] == ["user carol", "group research"]
    GroupPolicy.objects.all().delete()
    UserPolicy.objects.all().delete()
    _, rows = panel(staff_client)
    assert len(rows) == 1 and "No key, user or group has a budget" in rows[0][0]


def test_sortable_like_the_breakdowns(staff_client: Client, budgets: dict[str, Any]) -> None:
    html, _ = panel(staff_client)
    assert 'aria-sort="descending"><a href="?range=7d#budgets" data-sort="used"' in html  # the default
    _, rows = panel(staff_client, "?budget_sort=name")
    assert [row[0].split()[1] for row in rows] == sorted((row[0].split()[1] for row in rows), key=str.casefold)
    _, rows = panel(staff_client, "?budget_sort=spent")
    assert [row[1] for row in rows] == ["$8.25", "$2.50", "< $0.0001"]
    _, rows = panel(staff_client, "?budget_sort=amount")
    assert [row[2].split()[0] for row in rows] == ["$10.00", "$2.00", "$1.00"]
    _, rows = panel(staff_client, "?budget_sort=resets")
    assert rows[0][0].startswith("key ")  # today's budget resets first
    # The breakdowns' own order is kept while the panel's changes, and the other way round.
    html, _ = panel(staff_client, "?budget_sort=name&sort=requests")
    assert 'href="?range=7d&amp;sort=requests#budgets" data-sort="used"' in html
    assert 'href="?range=7d&amp;budget_sort=name#by-user" data-sort="cost"' in html
    assert '<input type="hidden" name="budget_sort" value="name">' in html  # applying the filters keeps it


def _row_link(html: str, scope: str, subject_id: int) -> dict[str, list[str]]:
    row = html.split(f'data-scope="{scope}" data-subject="{subject_id}"')[1].split("</tr>")[0]
    href = row.split('href="')[1].split('"')[0].replace("&amp;", "&")
    return parse_qs(urlsplit(href).query)


def test_rows_link_to_the_view_of_what_they_count(staff_client: Client, budgets: dict[str, Any]) -> None:
    html, _ = panel(staff_client, "?user=1&alias=sonnet")
    research = budgets["research"]
    link = _row_link(html, "group", research.pk)
    assert link == {"group": [str(research.pk)], "range": ["month"]}  # other filters cleared
    # Followed, the dashboard's cost is the panel's spend.
    page = staff_client.get("/dashboard/", {k: v[0] for k, v in link.items()}).content.decode()
    assert 'data-metric="cost_usd" data-value="8.25000000"' in page
    dave_key = budgets["keys"]["dave"]
    link = _row_link(html, "key", dave_key.pk)
    assert link == {
        "key": [str(dave_key.pk)],
        "from": [f"{TODAY:%Y-%m-%dT%H:%M}"],
        "to": [f"{TODAY + timedelta(days=1):%Y-%m-%dT%H:%M}"],
    }
    page = staff_client.get("/dashboard/", {k: v[0] for k, v in link.items()}).content.decode()
    assert 'data-metric="cost_usd" data-value="0.00005000"' in page
    carol = budgets["users"]["carol"]
    assert _row_link(html, "user", carol.pk) == {"user": [str(carol.pk)], "range": ["month"]}
