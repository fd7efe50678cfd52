"""The data plane answers browsers on configured origins only, and never sets a cookie.

The CORS headers are the pipeline's work: those tests run the proxy in-process (tests/inprocess.py) with the
origins set in the settings, where a second server would have to start for them. The cookie test stays on the
real daphne: it logs in through Django's pages with a real session cookie, then uses the data plane with it; so
does the real browser (tests/browser/test_cors_browser.py, on `cors_server`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from routing.dataplane.cors import allowed_origins
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.inprocess import InProcessProxy, Proxy, http
from tests.liveserver import ProxyServer

APP = "https://app.example.com"
DEV = "http://localhost:5173"
EVIL = "https://evil.example.net"
SDK_HEADERS = (
    "authorization, content-type, x-api-key, anthropic-version, anthropic-dangerous-direct-browser-access, "
    "x-stainless-os, x-stainless-package-version, x-stainless-retry-count, openai-beta, x-goog-api-key"
)


def configure_origins(settings: Any, origins: list[str]) -> None:
    settings.CORS_ALLOWED_ORIGINS = origins
    allowed_origins.cache_clear()  # read once per process, as a server reads its environment once


@pytest.fixture
def cors_inproc(inproc: InProcessProxy, settings: Any) -> Iterator[InProcessProxy]:
    """The proxy with two allowed origins (one written with a trailing slash and capitals)."""
    configure_origins(settings, [f"{APP.upper()}/", DEV])
    yield inproc
    allowed_origins.cache_clear()  # before `settings` puts the configured origins back


@pytest.fixture(scope="module")
def cors_server(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    """A real server with the same two allowed origins, for a real browser (tests/browser/test_cors_browser.py)."""
    with ProxyServer(extra_env={"CORS_ALLOWED_ORIGINS": f"{APP.upper()}/,{DEV}"}) as server:
        yield server


@pytest.fixture
def cors_proxy(cors_server: ProxyServer, transactional_db: None) -> Iterator[ProxyServer]:
    yield cors_server
    cors_server.drain()


@pytest.fixture
def chat_route(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[None]:
    if "inproc" in request.fixturenames:
        fake_context = request.getfixturevalue("inproc").upstream("openai-chat")
    else:
        fake_context = fake_upstream("openai-chat")
    with fake_context as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        yield


def preflight(server: Proxy, origin: str, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": SDK_HEADERS + ", x-not-an-sdk-header",
    }
    return http(server).options(server.url + path, headers=headers, timeout=10)


def chat(server: Proxy, key: str, origin: str | None, stream: bool = False) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} | ({"origin": origin} if origin else {})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return http(server).post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_an_allowed_origin_gets_a_preflight_answer_for_the_sdk_headers(cors_inproc):
    for path in ("/v1/chat/completions", "/v1/messages", "/v1beta/models/m:generateContent", "/openai/v1/models"):
        response = preflight(cors_inproc, APP, path)
        assert response.status_code == 204, path
        assert response.headers["access-control-allow-origin"] == APP
        assert set(response.headers["access-control-allow-methods"].split(", ")) >= {"GET", "POST", "OPTIONS"}
        allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
        assert allowed == {h.strip() for h in SDK_HEADERS.split(",")}  # not the header no SDK sends
        assert int(response.headers["access-control-max-age"]) > 0
        assert "origin" in response.headers["vary"].lower()
        assert "set-cookie" not in response.headers
    assert preflight(cors_inproc, DEV).headers["access-control-allow-origin"] == DEV


def test_a_preflight_from_another_origin_is_refused_without_cors_headers(cors_inproc, settings):
    for origin in (EVIL, "https://app.example.com.evil.net"):
        response = preflight(cors_inproc, origin)
        assert response.status_code == 403
        assert cors_headers(response) == {}
    configure_origins(settings, [])
    response = preflight(cors_inproc, APP)
    assert response.status_code == 403
    assert cors_headers(response) == {}


def test_actual_answers_carry_the_origin_only_for_allowed_origins(cors_inproc, alice_key, chat_route):
    cors_inproc.sync()
    for stream in (False, True):
        allowed = chat(cors_inproc, alice_key, APP, stream)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in allowed.headers["access-control-expose-headers"]
        assert allowed.headers["vary"].lower() == "origin"

        refused = chat(cors_inproc, alice_key, EVIL, stream)
        assert refused.status_code == 200  # served (no cookie makes it a forgery risk), but unreadable by the page
        assert cors_headers(refused) == {}
        assert refused.headers["vary"].lower() == "origin"

    # Errors are readable by an allowed page too, or its SDK could not tell a bad key from a network failure.
    bad_key = chat(cors_inproc, "sk-llmp-not-a-key", APP)
    assert bad_key.status_code == 401
    assert bad_key.headers["access-control-allow-origin"] == APP
    models = http(cors_inproc).get(cors_inproc.url + "/v1/models", headers={"x-api-key": alice_key, "origin": APP})
    assert models.headers["access-control-allow-origin"] == APP


def test_without_configured_origins_nothing_cors_is_sent(inproc, alice_key, chat_route, settings):
    configure_origins(settings, [])
    inproc.sync()
    response = chat(inproc, alice_key, APP)
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "vary" not in response.headers


@pytest.mark.e2e
def test_the_data_plane_never_sets_a_cookie(proxy, alice, alice_key, chat_route):
    """Not even for a browser that carries the admin's session cookie."""
    proxy.sync()
    with httpx.Client(base_url=proxy.url, timeout=30) as browser:
        login = browser.get("/accounts/login/")
        assert "csrftoken" in login.cookies  # the Django side does set cookies…
        token = login.cookies["csrftoken"]
        logged_in = browser.post(
            "/accounts/login/",
            data={"username": "alice", "password": "alice-password", "csrfmiddlewaretoken": token},
            headers={"referer": proxy.url + "/accounts/login/"},
        )
        assert logged_in.status_code == 302 and "sessionid" in browser.cookies
        key = {"authorization": f"Bearer {alice_key}"}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answers = [
            browser.post("/v1/chat/completions", json=body, headers=key),
            browser.post("/v1/chat/completions", json={**body, "stream": True}, headers=key),
            browser.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"}),
            browser.get("/v1/models", headers=key),
            browser.get("/v1/not-an-endpoint", headers=key),
            browser.post("/v1/messages", content=b"{not json", headers=key),
            browser.options("/v1/messages", headers={"origin": APP, "access-control-request-method": "POST"}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 401, 200, 404, 400, 403]
    for answer in answers:  # …the data plane never does
        assert "set-cookie" not in answer.headers, answer.request.url
