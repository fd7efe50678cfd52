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
    "verify_tls": "on",
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


# --- who may point an upstream somewhere, and which variables may be named as its credential ---------------


@pytest.fixture
def staff_editor(transactional_db) -> Client:
    """Staff who may change upstreams, but not a superuser."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("editor", password="editor-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_upstream", "change_upstream"]))
    client = Client()
    assert client.login(username="editor", password="editor-password")
    return client


def change_form(upstream: Upstream, **fields: str) -> dict[str, str]:
    form = {**UPSTREAM_FORM, "name": upstream.name, "aliases-TOTAL_FORMS": "0", "api_key": ""}
    form.update(fields)
    return form


def test_staff_who_are_not_superusers_cannot_redirect_an_upstream_or_its_credential(staff_editor):
    upstream = Upstream.objects.create(
        name="gem", format="gemini", base_url="https://generativelanguage.googleapis.com"
    )
    upstream.set_api_key("AIza-stored-secret")
    upstream.save()

    page = staff_editor.get(f"/admin/routing/upstream/{upstream.pk}/change/").content.decode()
    assert 'name="base_url"' not in page and 'name="api_key_env"' not in page and 'name="api_key"' not in page
    assert 'name="proxy_url"' not in page and 'name="verify_tls"' not in page and 'name="proxy_auth"' not in page
    assert "https://generativelanguage.googleapis.com" in page  # shown, read-only

    # The network decides who can read the traffic: an egress proxy of one's own, or TLS unverified, would show
    # the key as surely as a base URL of one's own.
    attack = {
        "base_url": "http://attacker.example",
        "api_key_env": "GEMINI_API_KEY",
        "proxy_url": "http://attacker:3128",
    }
    response = staff_editor.post(
        f"/admin/routing/upstream/{upstream.pk}/change/",
        change_form(upstream, **attack, verify_tls="", timeout="30", default_max_tokens="2048"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    upstream.refresh_from_db()
    assert (upstream.timeout, upstream.default_max_tokens) == (30, 2048)  # what staff may change, changed
    assert upstream.base_url == "https://generativelanguage.googleapis.com"
    assert upstream.api_key_env == "" and decrypt(upstream.api_key_encrypted) == "AIza-stored-secret"
    assert (upstream.proxy_url, upstream.verify_tls) == ("", True)
    assert staff_editor.get("/admin/routing/upstream/add/").status_code == 403


def test_a_superuser_may_change_the_base_url(operator):
    upstream = Upstream.objects.create(
        name="gem", format="gemini", base_url="https://generativelanguage.googleapis.com"
    )
    response = operator.post(
        f"/admin/routing/upstream/{upstream.pk}/change/", change_form(upstream, base_url="http://127.0.0.1:8001")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    upstream.refresh_from_db()
    assert upstream.base_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize("variable", ["SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "METRICS_TOKEN", "HOME"])
def test_the_proxys_own_settings_cannot_be_named_as_an_upstream_credential(operator, variable):
    response = operator.post("/admin/routing/upstream/add/", {**UPSTREAM_FORM, "api_key": "", "api_key_env": variable})
    assert response.status_code == 200
    assert "not a provider credential" in response.content.decode() or "does not look like a credential" in (
        response.content.decode()
    )
    assert not Upstream.objects.filter(name="gem").exists()


def test_a_stored_row_naming_secret_key_sends_no_credential(transactional_db, monkeypatch):
    """A row written before the rule (or by a raw update) still sends nothing upstream."""
    from routing.config.registry import load_snapshot

    monkeypatch.setenv("SECRET_KEY", "the-proxys-own-secret")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-from-env")
    upstream = Upstream.objects.create(name="gem", format="gemini", base_url="http://127.0.0.1:9")
    ModelAlias.objects.create(name="pro", upstream=upstream, upstream_model="gemini-2.5-pro")
    Upstream.objects.filter(pk=upstream.pk).update(api_key_env="SECRET_KEY")
    route = load_snapshot().resolve("pro")
    assert route is not None and route.upstream.credential is None

    Upstream.objects.filter(pk=upstream.pk).update(api_key_env="GEMINI_API_KEY")
    route = load_snapshot().resolve("pro")
    assert route is not None and route.upstream.credential == "AIza-from-env"
