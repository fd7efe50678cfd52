"""Captures in a browser: an operator turns them on for a key in the admin, the key's exchange goes through the
proxy, and the ledger row in the admin shows what was kept (redacted) beside the row."""

from __future__ import annotations

import anthropic
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from routing.models import ProxyKey
from tests.conftest import add_route, log_in
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply
from tests.test_captures import wait_for_captures
from tests.test_ledger import wait_for_rows

pytestmark = pytest.mark.e2e

PASTED = "sk-ant-api03-pastedIntoThePrompt1234"


def test_an_operator_turns_captures_on_for_a_key_and_reads_them_on_the_ledger_row(page, proxy, alice_key):
    User.objects.create_superuser("root", password="root-password")
    key = ProxyKey.objects.get()
    log_in(page, "root", "root-password", f"/admin/routing/proxykey/{key.pk}/change/")
    checkbox = page.locator("#id_capture_bodies")
    expect(checkbox).not_to_be_checked()  # off by default
    checkbox.check()
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        proxy.sync()
        fake.script(Reply(text="Kept for debugging"))
        client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
        with client.messages.stream(
            model="m", max_tokens=20, messages=[{"role": "user", "content": f"look: {PASTED}"}]
        ) as events:
            assert "".join(events.text_stream) == "Kept for debugging"
    wait_for_rows(1)  # the ledger row and its capture are written by two jobs, in either order
    wait_for_captures(1)

    page.goto("/admin/usage/ledgerentry/")
    marked = page.locator("#result_list a:has(.capture-mark)")
    expect(marked).to_have_count(1)
    marked.click()
    capture = page.locator(".capture")
    expect(capture.locator("h3")).to_have_text(
        [
            "Request from the client",
            "Request sent upstream" + f" {fake.url}/v1/chat/completions",
            "Answer from the upstream status 200",
            "Answer to the client status 200",
        ]
    )
    client_request = capture.locator('[data-part="client_request"] pre.capture-body')
    expect(client_request).to_contain_text('"content": "look: [redacted]"')  # pretty-printed, redacted
    expect(capture.locator('[data-part="client_response"] pre.capture-body')).to_contain_text("event: message_start")
    expect(page.locator("body")).not_to_contain_text(PASTED)
    expect(page.locator("body")).not_to_contain_text(alice_key)
