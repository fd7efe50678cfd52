"""The dashboard's Budgets panel in a real browser at 1440 px and 390 px: every row's spend in view (not cut off by
its card or the screen), the meter drawn to the share spent, the page no wider than the phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User

from routing.models import GroupPolicy, KeyPolicy, ProxyKey, UserPolicy
from tests.browser.test_layout_browser import (
    DESKTOP,
    PHONE,
    SHOTS,
    assert_fits_the_width,
    assert_inside,
    box,
    shot,
)
from tests.conftest import log_in
from tests.test_dashboard_budgets import spend
from usage.models import LedgerEntry
from usage.rollups import apply_rollups

pytestmark = pytest.mark.e2e


def budgets_with_long_names() -> None:
    """Groups, users and keys with long names and budgets, spending from almost nothing to more than allowed."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for i, (budget, cost) in enumerate([("25000", "12345.678"), ("100", "85"), ("0.50", "0.00004"), ("10", "12")]):
        user = User.objects.create_user(f"teammate-with-a-long-name-{i}", password="x")
        key, _ = ProxyKey.issue(user, label=f"continuous-integration-runner-{i}")
        group = Group.objects.create(name=f"research-and-development-team-{i}")
        group.user_set.add(user)
        GroupPolicy.objects.create(group=group, budget_usd=Decimal(budget) * 2, budget_period="month")
        UserPolicy.objects.create(user=user, budget_usd=Decimal(budget), budget_period="week")
        KeyPolicy.objects.create(key=key, budget_usd=Decimal(budget), budget_period="day")
        rows.append(spend(user, key, today + timedelta(minutes=1), cost))
    apply_rollups(LedgerEntry.objects.bulk_create(rows))


def assert_spend_in_view(page, viewport: dict[str, float]) -> None:
    card = box(page, "#budgets")
    assert_inside(card, viewport, "budgets card")
    scroller = box(page, "#budgets .scroll")
    cells = page.locator("#budgets tbody td[data-column=cost]")
    assert cells.count() == 12
    for index in range(cells.count()):
        cell = cells.nth(index).bounding_box()
        assert cell is not None
        assert_inside(cell, scroller, f"spent cell {index}")
        assert_inside(cell, viewport, f"spent cell {index}")


def test_the_budgets_panel_at_1440_and_390_px(page, proxy):
    User.objects.create_user("boss", password="boss-password", is_staff=True)
    budgets_with_long_names()

    page.set_viewport_size(DESKTOP)
    log_in(page, "boss", "boss-password", "/dashboard/")
    page.locator("#budgets").scroll_into_view_if_needed()
    shot(page, "budgets-1440")
    if SHOTS:
        page.locator("#budgets").screenshot(path=f"{SHOTS}/budgets-panel-1440.png")
    assert_spend_in_view(page, {"x": 0, "width": DESKTOP["width"]})
    # The most used first; the meters drawn to the share, full (not wider) when overshot.
    states = page.eval_on_selector_all("#budgets tbody tr", "rows => rows.map(r => r.dataset.state)")
    assert states[:4] == ["exhausted", "exhausted", "warn", "warn"] and states[-3:] == ["ok"] * 3
    first = page.locator("#budgets tbody tr").first
    assert first.locator("td[data-column=used]").inner_text().strip() == "120 %"
    meter, fill = box(page, "#budgets tbody tr .budget-meter"), box(page, "#budgets tbody tr .budget-meter span")
    assert fill["width"] == pytest.approx(meter["width"], abs=0.5)
    small = page.locator("#budgets tbody tr").last
    assert small.locator("td[data-column=cost]").inner_text() == "< $0.0001"

    page.set_viewport_size(PHONE)
    page.reload()
    shot(page, "budgets-390")
    if SHOTS:
        page.locator("#budgets").screenshot(path=f"{SHOTS}/budgets-panel-390.png")
    assert_fits_the_width(page, PHONE["width"], "dashboard with budgets")
    assert_spend_in_view(page, {"x": 0, "width": PHONE["width"]})
    # The rest of a row is reached by scrolling the card's table, not the page.
    assert page.locator("#budgets .scroll").evaluate("e => e.scrollWidth > e.clientWidth")
