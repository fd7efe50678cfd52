"""The settings a fresh deployment gets without asking (llmproxy_site.settings): no debug pages anywhere,
Secure cookies everywhere but a browser talking to a loopback server directly, forwarded headers only from
configured proxies, and a real SECRET_KEY off loopback. Read in a fresh interpreter per environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name, None) for name in (
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "TRUSTED_PROXIES")}))
"""


def settings_under(**environment: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "HOST", "SECRET_KEY", "TRUSTED_PROXIES"}}
    env.update(environment, DJANGO_SETTINGS_MODULE="llmproxy_site.settings")
    done = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_a_loopback_server_shows_no_debug_pages_and_a_plain_http_browser_keeps_its_session():
    loaded = settings_under(HOST="127.0.0.1")
    assert loaded["DEBUG"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is False and loaded["SECURE_PROXY_SSL_HEADER"] is None


def test_behind_a_local_reverse_proxy_cookies_are_secure_and_the_scheme_comes_from_the_proxy():
    loaded = settings_under(HOST="127.0.0.1", TRUSTED_PROXIES="127.0.0.1")
    assert loaded["DEBUG"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is True and loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_public_address_needs_a_secret_key_and_gets_secure_cookies():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    # Empty rather than absent: a developer's .env (written by `make run`) must not fill it in.
    env.update(HOST="0.0.0.0", SECRET_KEY="", DJANGO_SETTINGS_MODULE="llmproxy_site.settings")
    refused = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr
    loaded = settings_under(HOST="0.0.0.0", SECRET_KEY="a-real-secret-key-of-some-length")
    assert loaded["DEBUG"] is False and loaded["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("value", ["1", "true"])
def test_debug_only_when_asked_for(value):
    assert settings_under(HOST="127.0.0.1", DEBUG=value)["DEBUG"] is True
