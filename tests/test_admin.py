"""Operators edit upstreams, aliases and keys in the admin; secrets never come back out of it."""

from __future__ import annotations

import re

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from routing.config.secrets import decrypt
from routing.models import ModelAlias, ProxyKey, Upstream, hash_key


@pytest.fixture
def operator(transactional_db) -> Client:
    User.objects.create_superuser("operator", password="operator-password")
    client = Client()
    assert client.login(username="operator", password="operator-password")
    return client


UPSTREAM_FORM = {
    "name": "gem",
    "format": "gemini",
    "base_url": "http://127.0.0.1:9",
    "enabled": "on",
    "api_key_env": "",
    "api_key": "AIza-stored-secret",
    "auth_header": "auto",
    "headers": "{}",
    "query_params": "{}",
    "timeout": "600",
    "connect_timeout": "10",
    "allow_direct_models": "on",
    "aliases-TOTAL_FORMS": "1",
    "aliases-INITIAL_FORMS": "0",
    "aliases-MIN_NUM_FORMS": "0",
    "aliases-MAX_NUM_FORMS": "1000",
    "aliases-0-name": "pro",
    "aliases-0-upstream_model": "gemini-2.5-pro",
    "aliases-0-priority": "100",
    "aliases-0-enabled": "on",
}


def test_a_stored_key_is_encrypted_and_never_rendered_back(operator):
    response = operator.post("/admin/routing/upstream/add/", UPSTREAM_FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    upstream = Upstream.objects.get(name="gem")
    assert decrypt(upstream.api_key_encrypted) == "AIza-stored-secret"
    assert ModelAlias.objects.get(name="pro").upstream == upstream

    for page in ("/admin/routing/upstream/", f"/admin/routing/upstream/{upstream.pk}/change/"):
        html = operator.get(page).content.decode()
        assert "AIza-stored-secret" not in html
        assert upstream.api_key_encrypted not in html


def test_saving_without_a_new_key_keeps_the_stored_one(operator):
    operator.post("/admin/routing/upstream/add/", UPSTREAM_FORM)
    upstream = Upstream.objects.get(name="gem")
    alias = ModelAlias.objects.get(name="pro")
    form = dict(UPSTREAM_FORM, api_key="", base_url="http://127.0.0.1:10")
    form.update({"aliases-INITIAL_FORMS": "1", "aliases-0-id": str(alias.pk), "aliases-0-upstream": str(upstream.pk)})
    response = operator.post(f"/admin/routing/upstream/{upstream.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    upstream.refresh_from_db()
    assert upstream.base_url == "http://127.0.0.1:10"
    assert decrypt(upstream.api_key_encrypted) == "AIza-stored-secret"


def test_a_full_endpoint_url_is_refused(operator):
    form = dict(UPSTREAM_FORM, base_url="https://api.openai.com/v1/chat/completions")
    response = operator.post("/admin/routing/upstream/add/", form)
    assert response.status_code == 200
    assert "not a full endpoint URL" in response.content.decode()
    assert not Upstream.objects.exists()


def test_a_key_made_in_the_admin_is_shown_once_and_works_at_once(operator, proxy):
    owner = User.objects.create_user("bob")
    response = operator.post(
        "/admin/routing/proxykey/add/",
        {"user": str(owner.pk), "label": "ci", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    shown = re.search(r"(sk-llmp-[A-Za-z0-9_\-]+)", response.content.decode())
    assert shown, "the new key is shown on the page after saving"
    plaintext = shown.group(1)
    key = ProxyKey.objects.get(user=owner)
    assert key.key_hash == hash_key(plaintext)

    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {plaintext}"}).status_code == 200
    # The key's own page shows only its prefix.
    assert plaintext not in operator.get(f"/admin/routing/proxykey/{key.pk}/change/").content.decode()

    operator.post("/admin/routing/proxykey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {plaintext}"}).status_code == 401
