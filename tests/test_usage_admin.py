"""The ledger in the admin is a read-only record; model prices are edited there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from routing.models import ProxyKey
from usage.admin import NewestRowsPaginator
from usage.models import LedgerEntry, ModelPrice, Outcome

LEDGER = "/admin/usage/ledgerentry/"
START = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def operator(db) -> Client:
    User.objects.create_superuser("operator", password="operator-password")
    client = Client()
    assert client.login(username="operator", password="operator-password")
    return client


def entry(minute: int, **fields) -> LedgerEntry:
    defaults = {
        "started_at": START + timedelta(minutes=minute),
        "finished_at": START + timedelta(minutes=minute, seconds=2),
        "dialect": "anthropic",
        "endpoint": "/v1/messages",
        "requested_model": "claude-sonnet-4-5",
        "alias": "claude-*",
        "upstream": "anthropic",
        "upstream_model": "claude-sonnet-4-5",
        "outcome": Outcome.OK,
        "status": 200,
        "input_tokens": 1000,
        "output_tokens": 300,
        "cost_usd": Decimal("0.0075"),
        "price_source": "genai-prices 0.2.3: anthropic/claude-sonnet-4-5",
        "ttft_ms": 850,
        "duration_ms": 2000,
    }
    return LedgerEntry.objects.create(**{**defaults, **fields})


@pytest.fixture
def ledger(db) -> dict[str, LedgerEntry]:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    key, _ = ProxyKey.issue(alice, label="alice-laptop")
    return {
        "ok": entry(0, user=alice, key=key, requested_model="model-alpha", client_session="sess-alpha-123"),
        "failed": entry(
            1,
            user=bob,
            requested_model="model-bravo",
            outcome=Outcome.UPSTREAM_ERROR,
            status=502,
            input_tokens=None,
            output_tokens=None,
            cost_usd=None,
            price_source="",
        ),
        "local": entry(
            2,
            user=alice,
            requested_model="model-charlie",
            alias="local",
            upstream="ollama",
            upstream_model="llama3.2",
            cost_usd=None,
            price_source="",
        ),
    }


def listed(client: Client, query: str = "") -> str:
    response = client.get(LEDGER + query)
    assert response.status_code == 200
    return response.content.decode()


def queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        listed(client)
    return len(captured.captured_queries)


def test_the_changelist_lists_the_rows(operator, ledger):
    html = listed(operator)
    for name in ("model-alpha", "model-bravo", "model-charlie"):
        assert name in html
    assert "alice-laptop" in html
    assert "$0.0075" in html
    assert "1,000 in · 300 out" in html
    assert "850 ms" in html
    assert "2.00 s" in html
    assert "2026-05-04 12:01:00" in html  # to the second (TIME_ZONE is UTC)


def test_the_changelist_makes_no_query_per_row(operator, ledger):
    before = queries(operator)
    for minute in range(10, 20):
        user = User.objects.create_user(f"user{minute}")
        entry(minute, user=user, key=ProxyKey.issue(user)[0])
    assert queries(operator) == before


def test_a_long_ledger_is_counted_up_to_its_newest_rows(operator, ledger, monkeypatch):
    assert "3 ledger" in listed(operator)
    monkeypatch.setattr(NewestRowsPaginator, "COUNT_CAP", 2)
    html = listed(operator)
    assert "more than 2 ledger" in html and "3 ledger" not in html
    for name in ("model-alpha", "model-bravo", "model-charlie"):
        assert name in html  # every row is still listed
    assert "1 ledger entry" in listed(operator, "?outcome__exact=upstream_error")  # a filter narrows it


def test_a_row_without_a_cost_is_unpriced_never_zero(operator, ledger):
    html = listed(operator, "?q=model-charlie")
    assert "model-charlie" in html and "model-alpha" not in html
    assert "unpriced" in html
    assert "$0" not in html


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        (f"?outcome__exact={Outcome.UPSTREAM_ERROR}", {"model-bravo"}),
        ("?alias=local", {"model-charlie"}),
        ("?alias=claude-*", {"model-alpha", "model-bravo"}),
        ("?upstream=ollama", {"model-charlie"}),
        ("?q=sess-alpha-123", {"model-alpha"}),
        ("?started_at__gte=2026-05-04+00:00:00%2B00:00&started_at__lt=2026-05-05+00:00:00%2B00:00", None),
    ],
)
def test_filters(operator, ledger, query, shown):
    html = listed(operator, query)
    everything = {"model-alpha", "model-bravo", "model-charlie"}
    shown = everything if shown is None else shown
    for name in everything:
        assert (name in html) == (name in shown), name


def test_filter_by_user(operator, ledger):
    alice = User.objects.get(username="alice")
    html = listed(operator, f"?user__id__exact={alice.pk}")
    assert "model-alpha" in html and "model-charlie" in html
    assert "model-bravo" not in html


def test_the_filters_offer_the_names_in_use(operator, ledger):
    html = listed(operator)
    assert "?alias=local" in html
    assert "?upstream=ollama" in html


def test_a_row_can_be_viewed_but_not_changed(operator, ledger):
    row = ledger["ok"]
    url = f"{LEDGER}{row.pk}/change/"
    response = operator.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "model-alpha" in html and "sess-alpha-123" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert 'name="requested_model"' not in html  # shown as text, not as a form field

    response = operator.post(url, {"requested_model": "tampered", "status": "200"})
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.requested_model == "model-alpha"


def test_rows_cannot_be_added_or_deleted(operator, ledger):
    assert operator.get(f"{LEDGER}add/").status_code == 403
    assert operator.post(f"{LEDGER}add/", {"status": "200"}).status_code == 403
    row = ledger["ok"]
    assert operator.post(f"{LEDGER}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.count() == 3
    assert "delete_selected" not in listed(operator)


def test_a_model_price_can_be_added(operator):
    response = operator.get("/admin/usage/modelprice/add/")
    assert response.status_code == 200
    assert "An override always wins over the catalogue" in response.content.decode()

    response = operator.post(
        "/admin/usage/modelprice/add/",
        {
            "model_pattern": "llama3*",
            "upstream": "ollama",
            "note": "electricity",
            "input_per_mtok": "0.10",
            "output_per_mtok": "0.40",
            "cache_read_per_mtok": "",
            "cache_write_per_mtok": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    price = ModelPrice.objects.get()
    assert (price.model_pattern, price.upstream) == ("llama3*", "ollama")
    assert (price.input_per_mtok, price.output_per_mtok) == (Decimal("0.1"), Decimal("0.4"))
    assert price.cache_read_per_mtok is None and price.cache_write_per_mtok is None
    assert "llama3*" in operator.get("/admin/usage/modelprice/").content.decode()
