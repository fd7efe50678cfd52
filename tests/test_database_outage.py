"""A PostgreSQL server that hangs (paused: connections open, nothing answered) does not hang the proxy.

The server under test reaches PostgreSQL through a TCP relay the test can pause, which is what a stopped or
overloaded database looks like from the client side: no refusal, no error, just silence. While it is
paused, a key with rate limits is still served (the limit check gives up after LIMITS_CHECK_TIMEOUT and
admits), and `/health/ready` answers 503 within READINESS_DB_TIMEOUT, saying only "database unavailable" to
a caller without the metrics token.

PostgreSQL only: SQLite is a local file with no connection to hang (its lock waits are bounded by its own
`timeout` option).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import connection

from routing.models import KeyPolicy, ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from tests.liveserver import ProxyServer, database_url

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "operator-scrape-token"


class PausableRelay:
    """A TCP relay on loopback; `pause()` stops moving bytes in both directions (connections stay open)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.running = threading.Event()
        self.running.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def close(self) -> None:
        self.running.set()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.running.wait()  # a paused server accepts nothing new either (the kernel queues it)
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                self.running.wait()
                sink.sendall(chunk)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def relayed_server(django_db_setup, django_db_blocker) -> Iterator[tuple[ProxyServer, PausableRelay]]:
    if connection.vendor != "postgresql":
        pytest.skip("a database server to pause: run the suite with DATABASE_URL=postgres://…")
    parts = urlsplit(database_url(connection.settings_dict))
    relay = PausableRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    relayed = urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{relay.port}"))
    server = ProxyServer(
        {
            "DATABASE_URL": relayed,
            "REDIS_URL": "",  # rate-limit counters in the database
            "LIMITS_CHECK_TIMEOUT": "1",
            "READINESS_DB_TIMEOUT": "1",
            "METRICS_TOKEN": METRICS_TOKEN,
        }
    )
    try:
        yield server, relay
    finally:
        relay.resume()
        server.stop()
        relay.close()


def test_a_hung_database_neither_hangs_limited_keys_nor_the_readiness_probe(relayed_server, alice, alice_key):
    server, relay = relayed_server
    with fake_upstream("openai-chat", default=Reply(text="ok", usage=Usage(input=3, output=2))) as upstream:
        add_route("up", "openai-chat", upstream.url + "/v1", alias="m", model="real-model")
        KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice), requests_per_minute=100, concurrent_streams=5)
        operator = {"authorization": f"Bearer {METRICS_TOKEN}"}
        server.sync()
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        auth = {"authorization": f"Bearer {alice_key}"}
        assert httpx.post(server.url + "/v1/chat/completions", json=chat, headers=auth, timeout=10).status_code == 200

        relay.pause()
        try:
            started = time.monotonic()
            answer = httpx.post(server.url + "/v1/chat/completions", json=chat, headers=auth, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == "ok"
            assert time.monotonic() - started < 5  # the 1 s limit check, not the database's silence

            started = time.monotonic()
            again = httpx.post(server.url + "/v1/chat/completions", json=chat, headers=auth, timeout=30)
            assert again.status_code == 200 and time.monotonic() - started < 1  # admitted at once meanwhile

            started = time.monotonic()
            ready = httpx.get(server.url + "/health/ready", timeout=30)
            assert ready.status_code == 503 and time.monotonic() - started < 5
            assert ready.json()["problems"] == ["database unavailable"]  # nothing more to an anonymous caller
            detailed = httpx.get(server.url + "/health/ready", headers=operator, timeout=30).json()
            assert detailed["problems"][0].startswith("database unavailable: no answer within 1 s")
        finally:
            relay.resume()
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/health/ready", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the server did not recover once the database answered again"
            time.sleep(0.2)
