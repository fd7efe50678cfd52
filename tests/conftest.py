from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from routing.models import ModelAlias, ProxyKey, Upstream
from tests.liveserver import ProxyServer


@pytest.fixture(scope="session", autouse=True)
def _close_in_process_db_thread(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """In-process consumer tests use the pipeline's database thread; its connection must be closed before
    the test database is dropped, or PostgreSQL refuses to drop a database that is still in use."""
    yield
    from django.db import connection, connections

    from routing.runtime.database import db_executor

    db_executor.submit(connections.close_all).result(timeout=10)
    if connection.vendor == "postgresql":
        # Connections other threads of this process opened (the thread pools sync_to_async and database_sync_to_async
        # run ORM calls on in the consumer tests) are closed only when those threads end: after the test database
        # should have been dropped. End their sessions so that it can be.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a test and all its fixtures: every exchange it served in this process has its ledger row written
    (the in-process harnesses see to it: tests.inprocess.write_ledger). A row left queued would be written by the
    next test that drains, into that test's database; it is dropped here instead, and the test that left it
    fails."""
    result = yield
    from usage import ledger

    running, queued = len(ledger.in_flight), ledger.pending_count()
    if running or queued:
        ledger.in_flight.clear()
        ledger._pending.clear()
        pytest.fail(f"this test left {running} exchanges running and {queued} ledger rows unwritten", pytrace=False)
    return result


@pytest.fixture(scope="session")
def proxy_server(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    """One real server process for the session, reading the test database."""
    with ProxyServer() as server:
        yield server


@pytest.fixture
def proxy(proxy_server: ProxyServer, transactional_db: None) -> Iterator[ProxyServer]:
    """The live server, with this test's data committed where the server can see it."""
    yield proxy_server
    # Before the test database is emptied: let the server finish the writes it does off the request path
    # (stored responses, key usage), or the emptying TRUNCATE and those writes deadlock on PostgreSQL.
    proxy_server.drain()


@pytest.fixture
def alice(transactional_db: None) -> User:
    return User.objects.create_user("alice", password="alice-password")


@pytest.fixture
def alice_key(alice: User) -> str:
    _, plaintext = ProxyKey.issue(alice, label="laptop")
    return plaintext


def add_route(name: str, fmt: str, base_url: str, alias: str, model: str = "", **upstream_fields: object) -> Upstream:
    upstream = Upstream.objects.create(name=name, format=fmt, base_url=base_url, **upstream_fields)
    ModelAlias.objects.create(name=alias, upstream=upstream, upstream_model=model)
    return upstream


# --- browser tests (fixtures in tests/browser/conftest.py) -------------------------------------------------


def log_in(page: Any, username: str, password: str, next_path: str = "/") -> None:
    """Through the real login form, as a person would."""
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("[type=submit]")
    page.wait_for_load_state()


# --- in-process proxy (tests/inprocess.py) -----------------------------------------------------------------


@pytest.fixture
def inproc(transactional_db: None) -> Iterator[Any]:
    """The proxy's ASGI app in this process with in-process fake upstreams (`inproc.upstream(provider)`), for
    tests that need the pipeline but not a real server. Data is committed: the app reads it on its database
    thread, as a server would."""
    from tests.inprocess import InProcessProxy

    proxy = InProcessProxy()
    try:
        yield proxy
    finally:
        proxy.stop()
