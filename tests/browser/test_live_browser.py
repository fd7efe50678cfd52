"""/dashboard/live/ in a real browser: a slow streaming exchange through the real server appears while it is in
flight, with its clock ticking, and then in the finished list."""

from __future__ import annotations

import threading

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.conftest import add_route, log_in
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator(transactional_db) -> User:
    return User.objects.create_user("operator", password="operator-password", is_staff=True)


def test_non_staff_cannot_open_the_live_view(page, proxy, alice):
    log_in(page, "alice", "alice-password", "/dashboard/live/")
    # The 403 page, the same as the dashboard's, with a way back to her own page.
    expect(page.locator("#forbidden")).to_contain_text("This page is for staff.")
    assert page.locator("#live-status").count() == 0
    expect(page.locator("#back-to-my-page")).to_have_attribute("href", "/me/")


def test_an_exchange_shows_in_flight_then_finished(page, proxy, alice, alice_key, operator):
    with fake_upstream("openai-chat") as fake:
        add_route("slowup", "openai-chat", fake.url + "/v1", alias="slow-live-model", model="real-slow-model")
        # Six stream frames a second apart: several seconds in flight.
        fake.script(Reply(text="one two three four five six", chunks=6, chunk_delay=1.0, usage=Usage(21, 34)))
        proxy.sync()

        log_in(page, "operator", "operator-password", "/dashboard/live/")
        assert page.url.endswith("/dashboard/live/")
        expect(page.locator("#live-status")).to_have_text("live")

        outcome: dict[str, object] = {}

        def slow_request() -> None:
            body = {"model": "slow-live-model", "stream": True, "messages": [{"role": "user", "content": "count"}]}
            headers = {"authorization": f"Bearer {alice_key}"}
            with httpx.stream(
                "POST", proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
            ) as response:
                outcome["status"] = response.status_code
                outcome["body"] = response.read().decode()

        worker = threading.Thread(target=slow_request)
        worker.start()
        try:
            flying = page.locator("#in-flight tbody tr", has_text="slow-live-model")
            expect(flying).to_have_count(1)
            expect(flying).to_contain_text("alice")
            expect(flying).to_contain_text("slowup/real-slow-model")
            expect(flying).to_contain_text("openai-chat")
            elapsed = flying.locator("td.elapsed")
            first = elapsed.inner_text()
            page.wait_for_timeout(700)
            assert elapsed.inner_text() != first  # the clock ticks

            finished = page.locator("#finished tbody tr", has_text="slow-live-model")
            expect(finished).to_have_count(1, timeout=20_000)
            expect(flying).to_have_count(0)
            expect(finished.locator(".outcome")).to_have_text("ok")
            expect(finished).to_contain_text("alice")
            expect(finished).to_contain_text("34")  # output tokens, from the upstream's usage report
        finally:
            worker.join(timeout=60)
        assert outcome["status"] == 200
        assert str(outcome["body"]).rstrip().endswith("data: [DONE]")


def test_the_shown_times_follow_the_local_time_switch(browser, proxy, alice, alice_key, operator):
    """In a Tokyo browser (UTC+9): the rows already on the page are rewritten when the reader switches to local
    time and back, not only the column's label."""
    context = browser.new_context(base_url=proxy.url, timezone_id="Asia/Tokyo")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        with fake_upstream("openai-chat") as fake:
            add_route("quickup", "openai-chat", fake.url + "/v1", alias="quick-live-model", model="real-model")
            fake.script(Reply(text="done", usage=Usage(3, 4)))
            proxy.sync()
            log_in(page, "operator", "operator-password", "/dashboard/live/")
            expect(page.locator("#live-status")).to_have_text("live")
            body = {"model": "quick-live-model", "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(
                proxy.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {alice_key}"}
            )
            assert response.status_code == 200
            finished = page.locator("#finished tbody tr", has_text="quick-live-model")
            expect(finished).to_have_count(1, timeout=20_000)
            utc_text = finished.locator("td").first.inner_text()
            hours, rest = utc_text.split(":", 1)
            tokyo_text = f"{(int(hours) + 9) % 24:02d}:{rest}"

            page.locator("#local-time").check()
            expect(page.locator("th", has_text="Finished (local)")).to_have_count(1)
            expect(finished.locator("td").first).to_have_text(tokyo_text)
            page.locator("#local-time").uncheck()
            expect(page.locator("th", has_text="Finished (UTC)")).to_have_count(1)
            expect(finished.locator("td").first).to_have_text(utc_text)
    finally:
        context.close()
