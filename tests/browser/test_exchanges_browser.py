"""Real exchanges through the server, then the dashboard in a browser: the figures are the exchanges' own."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.conftest import add_route, log_in
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, Usage
from tests.test_ledger import wait_for_rows
from usage.models import ModelPrice

pytestmark = pytest.mark.e2e


def test_the_dashboard_shows_what_the_exchanges_used_and_cost(page, proxy, alice_key):
    User.objects.create_user("boss", password="boss-password", is_staff=True)
    ModelPrice.objects.create(
        model_pattern="real-model", input_per_mtok=2, output_per_mtok=10, cache_read_per_mtok=Decimal("0.2")
    )
    with fake_upstream("anthropic") as fake:
        add_route("up", "anthropic", fake.url, alias="m", model="real-model")
        proxy.sync()
        fake.script(
            Reply(text="streamed", usage=Usage(input=1000, output=200, cache_read=600)),
            Reply(text="whole", usage=Usage(input=500, output=100)),
            Reply(error=Failure(500)),
        )
        # A Chat client (translated) streaming, an Anthropic client (pass-through), and an upstream failure.
        chat = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
        assert "".join(
            c.choices[0].delta.content or ""
            for c in chat.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "x"}])
            if c.choices
        )
        messages = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
        messages.messages.create(model="m", max_tokens=20, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.InternalServerError):
            messages.messages.create(model="m", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    wait_for_rows(3)

    log_in(page, "boss", "boss-password", "/dashboard/")
    tiles = page.locator("#totals")
    expect(tiles.locator('[data-metric="requests"]').first).to_have_attribute("data-value", "3")
    expect(tiles.locator('[data-metric="errors"]').first).to_have_attribute("data-value", "1")
    # Input without the cached part: (1000 - 600) + 500; cache reads 600; output 200 + 100.
    expect(tiles.locator('[data-metric="input_tokens"]').first).to_have_attribute("data-value", "900")
    expect(tiles.locator('[data-metric="cache_read_tokens"]').first).to_have_attribute("data-value", "600")
    expect(tiles.locator('[data-metric="output_tokens"]').first).to_have_attribute("data-value", "300")
    # $2/M input, $10/M output, $0.20/M cache read: 900*2e-6 + 300*10e-6 + 600*0.2e-6 = 0.00492.
    cost = Decimal(tiles.locator('[data-metric="cost_usd"]').first.get_attribute("data-value"))
    assert cost == Decimal("0.00492")
    # The recent exchanges list all three with their outcome and status, newest first.
    outcomes = page.locator("#recent tbody tr td:nth-child(6)").all_inner_texts()
    assert [" ".join(o.split()) for o in outcomes] == ["Upstream error 500", "OK 200", "OK 200"]
    expect(page.locator("#recent tbody tr").nth(2).locator("td").nth(3)).to_have_text("OpenAI SDK (Python)")
