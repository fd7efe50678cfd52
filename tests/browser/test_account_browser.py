"""/me/ in a real browser against the real server: create a key, see it once, use it, revoke it."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import log_in

pytestmark = pytest.mark.e2e


def test_create_copy_use_and_revoke_a_key(page, proxy, alice):
    log_in(page, "alice", "alice-password", "/me/")
    assert page.url.endswith("/me/")
    expect(page.locator("text=You have no keys yet.")).to_be_visible()

    page.fill("form.create input[name=label]", "browser key")
    page.click("form.create button[type=submit]")
    plaintext = page.input_value("#new-key-plaintext")
    assert plaintext.startswith("sk-llmp-")
    prefix = plaintext[:14]
    row = page.locator(f'tr.key-row[data-prefix="{prefix}"]')
    expect(row.locator(".status")).to_have_text("active")
    expect(row.locator("input[name=label]")).to_have_value("browser key")

    # The copy button puts the key on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-key")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext

    # The key works through the proxy.
    proxy.sync()
    headers = {"authorization": f"Bearer {plaintext}"}
    assert httpx.get(proxy.url + "/v1/models", headers=headers, timeout=10).status_code == 200

    # Shown once: a reload no longer has it.
    page.reload()
    expect(page.locator("#new-key-plaintext")).to_have_count(0)
    assert plaintext not in page.content()
    expect(row.locator("code")).to_have_text(f"{prefix}…")

    # Rename, then revoke (after confirming).
    row.locator("input[name=label]").fill("old browser key")
    row.locator("form.inline:not(.revoke) button").click()
    expect(page.locator(".messages")).to_contain_text("relabelled")
    expect(row.locator("input[name=label]")).to_have_value("old browser key")

    page.once("dialog", lambda dialog: dialog.dismiss())
    row.locator("form.revoke button").click()
    expect(row.locator(".status")).to_have_text("active")  # dismissed: nothing happened

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("form.revoke button").click()
    expect(row.locator(".status")).to_have_text("revoked")
    expect(row.locator("form.revoke")).to_have_count(0)

    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers=headers, timeout=10).status_code == 401
