"""The Responses WebSocket through a real daphne and a real WebSocket client: the close codes a client sees
after an error (the application range, which daphne's WebSocket library lets a server send) and the frame
size limit, which daphne applies from the same MAX_REQUEST_BYTES as the data plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e

MAX_REQUEST_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def small_limit_server(django_db_setup, django_db_blocker) -> Iterator[ProxyServer]:
    with ProxyServer({"MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES)}) as server:
        yield server


@pytest.fixture
def server(small_limit_server: ProxyServer, alice_key: str) -> Iterator[ProxyServer]:
    with fake_upstream("anthropic") as upstream:
        add_route("up", "anthropic", upstream.url, alias="m", model="real-model")
        small_limit_server.sync()
        yield small_limit_server
        small_limit_server.drain()


def open_socket(server: ProxyServer, key: str) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + "/v1/responses"
    return connect(url, additional_headers={"authorization": f"Bearer {key}"}, max_size=None, open_timeout=10)


def create(text: str) -> str:
    return json.dumps({"type": "response.create", "model": "m", "input": text, "store": False})


def until_done(ws: ClientConnection) -> list[dict[str, Any]]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=20))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error"):
            return events


def test_a_frame_over_a_mebibyte_is_served(server, alice_key):
    with open_socket(server, alice_key) as ws:
        ws.send(create("x" * (2 * 1024 * 1024)))
        assert until_done(ws)[-1]["type"] == "response.completed"


def test_a_frame_over_the_limit_gets_its_error_then_a_4009_close(server, alice_key):
    with open_socket(server, alice_key) as ws:
        ws.send(create("x" * (MAX_REQUEST_BYTES + 1024)))
        (error,) = until_done(ws)
        assert error["status"] == 413
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009


def test_a_key_revoked_mid_connection_gets_its_error_then_a_4008_close(server, alice_key):
    with open_socket(server, alice_key) as ws:
        ws.send(create("hi"))
        assert until_done(ws)[-1]["type"] == "response.completed"
        for key in ProxyKey.objects.all():
            key.revoked_at = key.created_at
            key.save()
        server.sync()
        ws.send(create("again"))
        (error,) = until_done(ws)
        assert error["status"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
