"""The pages' layout in a real browser at a desktop width (1440 px) and a phone width (390 px): cost columns stay
in view, the nav wraps, wide tables scroll inside their cards instead of widening the page."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from routing.models import ProxyKey
from tests.conftest import log_in
from usage.models import LedgerEntry, Outcome
from usage.rollups import apply_rollups

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("LAYOUT_SCREENSHOTS", "")


def busy_ledger() -> None:
    """A team with long names: keys with labels, long model names, every outcome."""
    now = datetime.now(UTC)
    rows = []
    for i in range(6):
        user = User.objects.create_user(f"teammate-with-a-long-name-{i}", password="x")
        key, _ = ProxyKey.issue(user, label=f"continuous-integration-runner-{i}")
        for j in range(4):
            started = now - timedelta(minutes=30 * (i * 4 + j) + 5)
            rows.append(
                LedgerEntry(
                    started_at=started,
                    finished_at=started + timedelta(seconds=3),
                    user=user,
                    key=key,
                    dialect="anthropic",
                    endpoint="/v1/messages",
                    client_program=["Claude Code", "Codex", "Gemini CLI", "OpenAI SDK (Python)"][j],
                    client_session=f"0f6e3a2c-55d1-4c8e-9a43-teammate-{i}-session-{j}",
                    requested_model=f"claude-sonnet-4-5-20250929-thinking-{j}",
                    alias=f"team-alias-for-long-context-work-{j}",
                    upstream="anthropic-production-account",
                    upstream_model=f"claude-sonnet-4-5-20250929-thinking-{j}",
                    outcome=[Outcome.OK, Outcome.OK, Outcome.UPSTREAM_ERROR, Outcome.CANCELLED][j],
                    status=[200, 200, 502, 200][j],
                    input_tokens=123_456_789,
                    output_tokens=9_876_543,
                    cache_read_tokens=55_555_555,
                    cache_write_tokens=4_444_444,
                    cost_usd=Decimal("12345.678") if j != 1 else None,
                    price_source="genai-prices",
                    duration_ms=123_456,
                    ttft_ms=4567,
                    tokens_per_second=87.6,
                )
            )
    created = LedgerEntry.objects.bulk_create(rows)
    apply_rollups(created)


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, selector
    return found


def assert_inside(inner: dict[str, float], outer: dict[str, float], what: str) -> None:
    assert inner["x"] >= outer["x"] - 0.5, what
    assert inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5, (what, inner, outer)


def shot(page: Any, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_cost_is_in_view_at_1440_px(page, proxy):
    User.objects.create_superuser("boss", password="boss-password")
    busy_ledger()
    page.set_viewport_size(DESKTOP)
    log_in(page, "boss", "boss-password", "/dashboard/")
    shot(page, "dashboard-1440")
    viewport = {"x": 0, "width": DESKTOP["width"]}
    for card in ("by-user", "by-key", "by-alias", "by-upstream_model", "by-client_program"):
        card_box = box(page, f"#{card}")
        assert_inside(card_box, viewport, card)
        scroller = box(page, f"#{card} .scroll")
        cells = page.locator(f"#{card} tbody td[data-column=cost]")
        assert cells.count() >= 4, card
        for index in range(cells.count()):
            cell = cells.nth(index).bounding_box()
            assert cell is not None
            assert_inside(cell, scroller, f"{card} cost cell {index}")
            assert_inside(cell, card_box, f"{card} cost cell {index}")

    # The admin's ledger list: outcome, tokens and cost in view beside the filter sidebar.
    page.goto("/admin/usage/ledgerentry/")
    shot(page, "admin-ledger-1440")
    results = box(page, "#changelist .results")
    for column in ("outcome", "tokens", "cost"):
        cell = box(page, f"#result_list tbody td[class*=field-{column}]")
        assert_inside(cell, results, f"admin {column}")
        assert_inside(cell, viewport, f"admin {column}")


def assert_fits_the_width(page: Any, width: int, what: str) -> None:
    """Nothing widens the page: no horizontal scrolling of the page itself, every card and nav item in view."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width, what
    viewport = {"x": 0, "width": width}
    for selector in (".nav > *", ".card", ".tile"):
        items = page.locator(selector)
        for index in range(items.count()):
            found = items.nth(index).bounding_box()
            if found is not None and found["width"]:
                assert_inside(found, viewport, f"{what}: {selector} #{index}")


def test_pages_fit_a_phone_at_390_px(page, proxy):
    User.objects.create_user("boss", password="boss-password", is_staff=True)
    busy_ledger()
    page.set_viewport_size(PHONE)
    log_in(page, "boss", "boss-password", "/dashboard/")
    shot(page, "dashboard-390")
    assert_fits_the_width(page, PHONE["width"], "dashboard")
    # The nav wraps onto more lines instead of running off the screen.
    nav = box(page, ".nav")
    assert nav["height"] > box(page, ".nav .brand")["height"] * 1.5
    # Wide tables scroll inside their cards; the breakdowns' cost column is in view without scrolling.
    for card in ("speed", "recent", "by-key"):
        scroller = page.locator(f"#{card} .scroll").first
        assert scroller.evaluate("e => e.scrollWidth > e.clientWidth"), card
        assert_inside(box(page, f"#{card} .scroll"), box(page, f"#{card}"), card)
    for card in ("by-user", "by-key", "by-alias"):
        assert_inside(box(page, f"#{card} tbody td[data-column=cost]"), box(page, f"#{card} .scroll"), card)

    for path in ("/me/", "/dashboard/live/", "/dashboard/sessions/", "/me/sessions/"):
        page.goto(path)
        shot(page, f"{path.strip('/').replace('/', '-')}-390")
        assert_fits_the_width(page, PHONE["width"], path)
    # The sessions table scrolls in its card, the cost column in view.
    page.goto("/dashboard/sessions/")
    assert page.locator("#sessions tbody tr").count() == 24  # a session per user and client
    assert page.locator("#sessions .scroll").evaluate("e => e.scrollWidth > e.clientWidth")
    assert_inside(box(page, "#sessions tbody td[data-column=cost]"), box(page, "#sessions .scroll"), "sessions cost")


def test_a_teammate_on_a_staff_page_gets_a_styled_403_with_a_way_back(page, proxy):
    User.objects.create_user("carol", password="carol-password")
    page.set_viewport_size(PHONE)
    log_in(page, "carol", "carol-password", "/me/")
    response = page.goto("/dashboard/")
    assert response is not None and response.status == 403
    shot(page, "403-390")
    assert page.locator(".topbar").count() == 1  # the site's own page, not a bare "403 Forbidden"
    assert "for staff" in page.locator("main").inner_text()
    page.click("#back-to-my-page")
    page.wait_for_load_state()
    assert page.url.endswith("/me/")
