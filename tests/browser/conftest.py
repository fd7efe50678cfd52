"""Browser tests: Debian's chromium driven by Playwright (`make test` installs it; Playwright's own browser
download cannot work offline)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.liveserver import ProxyServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test module. While Playwright's sync API is open its asyncio loop counts as running in
    this thread, so Django refuses synchronous ORM calls and pytest-asyncio cannot start its own loop: closed
    at the end of the module, it leaves the tests that run after these alone."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own ORM calls are synchronous and never run on Playwright's loop."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def page(browser: Any, proxy: ProxyServer) -> Iterator[Any]:
    """A fresh browser tab (own cookies) pointed at the live server."""
    context = browser.new_context(base_url=proxy.url)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()
