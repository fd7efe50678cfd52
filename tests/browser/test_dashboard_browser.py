"""The staff dashboard in a real browser against the real server: log in, read the figures, filter, export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from routing.models import ProxyKey
from tests.conftest import log_in
from usage.models import LedgerEntry, Outcome
from usage.rollups import apply_rollups

pytestmark = pytest.mark.e2e


def ledger_rows(now: datetime) -> dict[str, User]:
    """Rows written as the ledger's write path writes them: the rows and their rollups in one transaction."""
    alice = User.objects.create_user("alice", password="alice-password")
    bob = User.objects.create_user("bob", password="bob-password")
    alice_key, _ = ProxyKey.issue(alice, label="laptop")
    bob_key, _ = ProxyKey.issue(bob, label="ci")

    def row(user, key, minutes_ago, **fields):
        started = now - timedelta(minutes=minutes_ago)
        defaults = {
            "started_at": started,
            "finished_at": started + timedelta(seconds=2),
            "user": user,
            "key": key,
            "dialect": "anthropic",
            "endpoint": "/v1/messages",
            "outcome": Outcome.OK,
            "status": 200,
            "duration_ms": 2000,
            "client_program": "Claude Code",
        }
        return LedgerEntry(**{**defaults, **fields})

    rows = [
        row(alice, alice_key, 30, alias="sonnet", upstream_model="claude-sonnet-4", input_tokens=1200,
            output_tokens=300, cache_read_tokens=800, cost_usd=Decimal("0.5")),
        row(alice, alice_key, 150, alias="sonnet", upstream_model="claude-sonnet-4", input_tokens=800,
            output_tokens=100, cost_usd=Decimal("0.25")),
        row(bob, bob_key, 90, alias="local", upstream_model="qwen3-coder", input_tokens=5000, output_tokens=700,
            client_program="Codex"),  # unpriced
        row(bob, bob_key, 210, alias="local", upstream_model="qwen3-coder", outcome=Outcome.UPSTREAM_ERROR,
            status=502, client_program="Codex"),
    ]  # fmt: skip
    created = LedgerEntry.objects.bulk_create(rows)
    apply_rollups(created)
    return {"alice": alice, "bob": bob}


def tile(page, metric: str):
    return page.locator(f'#totals [data-metric="{metric}"]').first


def test_dashboard_figures_filter_export_and_charts(page, proxy):
    User.objects.create_user("boss", password="boss-password", is_staff=True)
    users = ledger_rows(datetime.now(UTC))

    log_in(page, "boss", "boss-password", "/dashboard/")
    assert page.url.endswith("/dashboard/")
    expect(page.locator("h1")).to_have_text("Usage dashboard")
    # The stylesheet is served by the server itself.
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor") == "rgb(29, 35, 48)"

    expect(tile(page, "requests")).to_have_attribute("data-value", "4")
    expect(tile(page, "requests").locator(".value")).to_have_text("4")
    expect(tile(page, "errors").locator(".value")).to_have_text("1")
    expect(tile(page, "input_tokens")).to_have_attribute("data-value", "7000")
    expect(tile(page, "input_tokens").locator(".value")).to_have_text("7k")
    expect(tile(page, "output_tokens")).to_have_attribute("data-value", "1100")
    expect(tile(page, "cost_usd").locator(".value")).to_have_text("$0.75")
    expect(page.locator('#totals [data-metric="unpriced"]')).to_contain_text("2 unpriced")
    expect(tile(page, "cache_hit_share").locator(".value")).to_have_text("10.3 %")  # 800 / 7,800

    # Last 24 hours by hour: 24 bars per series, a point per hour on the cost line.
    page.click('a[data-preset="24h"]')
    page.wait_for_load_state()
    assert "range=24h" in page.url
    assert page.locator("#chart-requests rect.bar").count() == 24
    assert page.locator("#chart-errors rect.bar").count() == 24
    assert page.locator("#chart-tokens rect.bar").count() == 24 * 4
    assert page.locator("#chart-cost circle.point").count() == 24
    heights = page.eval_on_selector_all(
        "#chart-requests rect.bar", "bars => bars.map(b => parseFloat(b.getAttribute('height')))"
    )
    assert sum(1 for h in heights if h > 0) == 4  # the four exchanges were in four different hours
    values = page.eval_on_selector_all("#chart-requests rect.bar", "bars => bars.map(b => +b.dataset.value)")
    assert sum(values) == 4
    # A tooltip on each bar.
    assert page.locator("#chart-requests rect.bar title").count() == 24

    # Filter by user: the figures change.
    page.select_option("select[name=user]", str(users["bob"].pk))
    page.click("#filters button[type=submit]")
    page.wait_for_load_state()
    assert f"user={users['bob'].pk}" in page.url
    expect(tile(page, "requests")).to_have_attribute("data-value", "2")
    expect(tile(page, "errors").locator(".value")).to_have_text("1")
    expect(tile(page, "input_tokens")).to_have_attribute("data-value", "5000")
    expect(tile(page, "cost_usd").locator(".value")).to_have_text("unpriced")
    assert sum(page.eval_on_selector_all("#chart-requests rect.bar", "b => b.map(x => +x.dataset.value)")) == 2
    expect(page.locator("#recent tbody tr")).to_have_count(2)

    # Export what is shown: only bob's rows.
    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("ledger-") and download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as handle:
        exported = list(csv.DictReader(io.StringIO(handle.read())))
    assert len(exported) == 2
    assert {r["user"] for r in exported} == {"bob"}
    assert sorted(r["outcome"] for r in exported) == ["ok", "upstream_error"]
    assert sum(int(r["input tokens"] or 0) for r in exported) == 5000
    assert all(r["cost (USD)"] == "" for r in exported)

    # Back to everyone; the alias filter narrows differently.
    page.click("#clear-filters")
    page.wait_for_load_state()
    expect(tile(page, "requests")).to_have_attribute("data-value", "4")
    page.select_option("select[name=alias]", "sonnet")
    page.click("#filters button[type=submit]")
    page.wait_for_load_state()
    expect(tile(page, "requests")).to_have_attribute("data-value", "2")
    expect(tile(page, "cost_usd").locator(".value")).to_have_text("$0.75")

    # The recent exchanges link to the admin's page of each row.
    first = page.locator("#recent tbody tr a").first
    assert first.get_attribute("href").startswith("/admin/usage/ledgerentry/")
