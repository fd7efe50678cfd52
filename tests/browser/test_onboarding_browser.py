"""/me/ onboarding in a real browser at 1440 px and 390 px: a new key's client set-up (copied as shown, working
against the proxy), the models, budgets and failures, and nothing widening a phone's page."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from routing.models import ModelAlias, UserPolicy
from tests.browser.test_layout_browser import DESKTOP, PHONE, assert_fits_the_width, box, shot
from tests.conftest import add_route, log_in
from tests.test_account import entry
from usage.models import Outcome

pytestmark = pytest.mark.e2e


@pytest.fixture
def teammate(alice: User) -> User:
    upstream = add_route("up", "openai-chat", "http://127.0.0.1:9/v1", alias="team-model")
    ModelAlias.objects.create(name="other-model", upstream=upstream)
    UserPolicy.objects.create(user=alice, allowed_models=["team-*"], budget_usd=Decimal("1500"), requests_per_minute=60)
    entry(
        alice,
        0.01,
        requested_model="gpt-9",
        outcome=Outcome.CLIENT_ERROR,
        status=403,
        error_type="permission_error",
        error_message="The model list of user 'alice' does not allow gpt-9",
    )
    return alice


def test_a_new_key_comes_with_its_set_up_at_1440_px(page, proxy, teammate):
    page.set_viewport_size(DESKTOP)
    log_in(page, "alice", "alice-password", "/me/")
    page.fill("form.create input[name=label]", "laptop")
    page.click("form.create button[type=submit]")
    plaintext = page.input_value("#new-key-plaintext")
    shot(page, "me-onboarding-1440")

    claude = page.locator("#setup-claude-text")
    expect(claude).to_contain_text(f"export ANTHROPIC_BASE_URL={proxy.url}")
    expect(claude).to_contain_text(f"export ANTHROPIC_API_KEY={plaintext}")
    expect(page.locator("#setup-openai-text")).to_contain_text('model="team-model"')

    # A snippet's Copy button copies exactly what is shown.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#setup-codex-config button.copy-snippet")
    expect(page.locator("#setup-codex-config button.copy-snippet")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#setup-codex-config-text").text_content()
    assert f'base_url = "{proxy.url}/v1"' in copied

    # What the page says the key may use, it may use.
    expect(page.locator("#models ul.aliases code")).to_have_text(["team-model"])
    proxy.sync()
    listed = httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {plaintext}"}, timeout=10)
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()["data"]] == ["team-model"]

    budget = page.locator("#budgets tr.budget")
    expect(budget.locator("td.num").first).to_have_text("$1,500.00")
    expect(page.locator("#rate-limits tr.rate-limit td.num").first).to_have_text("60")
    expect(page.locator("#failures tr.failure")).to_have_count(1)
    expect(page.locator("#failures tr.failure")).to_contain_text("does not allow gpt-9")
    viewport = {"x": 0, "width": DESKTOP["width"]}
    for card in ("#setup", "#models", "#limits", "#failures"):
        found = box(page, card)
        assert found["x"] >= 0 and found["x"] + found["width"] <= viewport["width"], card


def test_the_set_up_fits_a_phone_at_390_px(page, proxy, teammate):
    page.set_viewport_size(PHONE)
    log_in(page, "alice", "alice-password", "/me/")
    page.click("form.create button[type=submit]")
    shot(page, "me-onboarding-390")
    assert_fits_the_width(page, PHONE["width"], "/me/ with a new key")
    # Long lines scroll inside their snippet.
    claude = page.locator("#setup-claude-text")
    assert claude.evaluate("e => e.scrollWidth > e.clientWidth")
    setup = box(page, "#setup")
    snippet = box(page, "#setup-claude-text")
    assert snippet["x"] >= setup["x"] and snippet["x"] + snippet["width"] <= setup["x"] + setup["width"] + 0.5
