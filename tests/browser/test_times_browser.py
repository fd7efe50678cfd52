"""Times on the pages follow one rule: UTC, labelled, unless the reader ticks "Local time", which the browser
remembers. The browser here runs in Tokyo (UTC+9, no daylight saving), so the two readings differ by nine hours."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from routing.models import ProxyKey
from tests.conftest import log_in
from tests.liveserver import ProxyServer
from usage.models import LedgerEntry, Outcome
from usage.rollups import apply_rollups

pytestmark = pytest.mark.e2e

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def tokyo_page(browser: Any, proxy: ProxyServer) -> Iterator[Any]:
    context = browser.new_context(base_url=proxy.url, timezone_id="Asia/Tokyo")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_times_are_utc_and_labelled_until_the_reader_asks_for_local_time(tokyo_page: Any, proxy: ProxyServer) -> None:
    boss = User.objects.create_user("boss", password="boss-password", is_staff=True)
    key, _ = ProxyKey.issue(boss, label="laptop")
    started = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    row = LedgerEntry(
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        user=boss,
        key=key,
        dialect="anthropic",
        endpoint="/v1/messages",
        outcome=Outcome.OK,
        status=200,
        duration_ms=2000,
        alias="sonnet",
        upstream_model="claude-sonnet-4",
    )
    apply_rollups(LedgerEntry.objects.bulk_create([row]))
    in_utc = started.strftime("%Y-%m-%d %H:%M:%S")
    in_tokyo = started.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")
    page = tokyo_page

    log_in(page, "boss", "boss-password", "/dashboard/")
    recent = page.locator("table", has_text="Started (")
    expect(recent.locator("th", has_text="Started (UTC)")).to_have_count(1)
    expect(recent.locator("tbody tr").first).to_contain_text(in_utc)

    page.locator("#local-time").check()
    expect(page.locator("th", has_text="Started (local)")).to_have_count(1)
    expect(recent.locator("tbody tr").first).to_contain_text(in_tokyo)

    # Remembered by the browser: the account page (key created "now") and the live view read local time too.
    page.goto("/me/")
    expect(page.locator("#local-time")).to_be_checked()
    created = ProxyKey.objects.get(pk=key.pk).created_at.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M")
    expect(page.locator("th", has_text="Created (local)")).to_have_count(1)
    expect(page.locator("tr", has_text=key.prefix)).to_contain_text(created)
    page.goto("/dashboard/live/")
    expect(page.locator("th", has_text="Finished (local)")).to_have_count(1)

    page.locator("#local-time").uncheck()
    expect(page.locator("th", has_text="Finished (UTC)")).to_have_count(1)
    page.goto("/dashboard/")
    expect(page.locator("table", has_text="Started (UTC)").locator("tbody tr").first).to_contain_text(in_utc)
