"""The upstream form in a real browser: it says whether the credential is usable, and its Test connection and
Fetch models buttons call the upstream (the key never on the page) and make aliases of the models ticked."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from routing.models import ModelAlias, Upstream
from tests.conftest import log_in
from tests.fakes.providers import fake_upstream

pytestmark = pytest.mark.e2e

KEY = "sk-browser-upstream-key-0123456789"


def test_test_connection_and_fetch_models_from_the_upstream_form(page, proxy, monkeypatch):
    User.objects.create_superuser("root", password="root-password")
    monkeypatch.delenv("BROWSER_GONE_API_KEY", raising=False)
    with fake_upstream("openai-chat", api_key=KEY) as fake:
        upstream = Upstream(name="chat", format="openai-chat", base_url=fake.url + "/v1")
        upstream.set_api_key(KEY)
        upstream.save()
        Upstream.objects.create(
            name="envless", format="openai-chat", base_url=fake.url + "/v1", api_key_env="BROWSER_GONE_API_KEY"
        )
        model = fake.handler.models[0]

        log_in(page, "root", "root-password", "/admin/routing/upstream/")
        expect(page.locator("#site-name")).to_contain_text("llmproxy administration")
        expect(page.locator("a.proxy-dashboard-link")).to_have_attribute("href", "/dashboard/")
        expect(page.locator("tr", has_text="envless").locator(".credential-missing")).to_contain_text(
            "$BROWSER_GONE_API_KEY NOT SET"
        )

        page.goto(f"/admin/routing/upstream/{upstream.pk}/change/")
        expect(page.locator(".field-credential_status")).to_contain_text("stored key set")
        page.click("text=Test connection")
        expect(page.locator(".upstream-check h2")).to_contain_text("chat: OK")
        expect(page.locator(".model-count")).to_contain_text(f"{len(fake.handler.models)} offered")
        assert KEY not in page.content()

        page.click(".model-count a.upstream-fetch-models")
        page.check(f'input[name=model][value="{upstream.pk}:{model}"]')
        page.click("text=Create aliases for the ticked models")
        expect(page.locator(".messagelist")).to_contain_text(f"Created 1 alias(es): {model}")
        assert KEY not in page.content()
    alias = ModelAlias.objects.get(name=model)
    assert (alias.upstream_id, alias.upstream_model) == (upstream.pk, model)
