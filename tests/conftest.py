from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from routing.models import ModelAlias, ProxyKey, Upstream
from tests.liveserver import ProxyServer


@pytest.fixture(scope="session")
def proxy_server(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    """One real server process for the session, reading the test database."""
    server = ProxyServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(proxy_server: ProxyServer, transactional_db: None) -> ProxyServer:
    """The live server, with this test's data committed where the server can see it."""
    return proxy_server


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
