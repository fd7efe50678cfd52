"""A real browser enforces the data plane's CORS answers: a page on an allowed origin calls the proxy as an SDK
would (preflight included) and reads the answer; the same page on another origin reads nothing."""

from __future__ import annotations

import pytest

from tests.test_cors import DEV, chat_route, cors_proxy, cors_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


PAGE = "<!doctype html><title>app</title>"
FETCH = """async ([url, key]) => {
    try {
        const response = await fetch(url + "/v1/chat/completions", {
            method: "POST",
            headers: {"authorization": "Bearer " + key, "content-type": "application/json",
                      "x-stainless-os": "Linux"},
            body: JSON.stringify({model: "m", messages: [{role: "user", content: "hi"}]}),
        });
        return {status: response.status, id: response.headers.get("x-request-id"), body: await response.json()};
    } catch (error) {
        return {failed: String(error)};
    }
}"""


def test_a_real_browser_reads_answers_only_on_an_allowed_origin(browser, cors_proxy, alice_key, chat_route):  # noqa: F811
    cors_proxy.sync()
    results = {}
    for origin in (DEV, "http://localhost:5174"):
        # The page is served by Playwright, so Chromium does not count it as local: without this permission its
        # Local Network Access check would block any call to 127.0.0.1 before CORS is even considered.
        context = browser.new_context(permissions=["local-network-access"])
        page = context.new_page()
        page.route(f"{origin}/", lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE))
        page.goto(f"{origin}/")
        results[origin] = page.evaluate(FETCH, [cors_proxy.url, alice_key])
        context.close()
    allowed = results[DEV]
    assert allowed.get("status") == 200, results
    assert allowed["body"]["choices"][0]["message"]["content"]
    assert allowed["id"]  # an exposed header
    assert "failed" in results["http://localhost:5174"]
