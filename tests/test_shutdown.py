"""A graceful stop of the server loses nothing it was keeping in memory for the database."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply
from tests.liveserver import ProxyServer
from usage.models import LedgerEntry

pytestmark = pytest.mark.e2e


def test_key_last_use_is_written_when_the_server_stops(transactional_db, alice):
    key, plaintext = ProxyKey.issue(alice, label="ci")
    server = ProxyServer()  # a server of its own: this test stops it
    try:
        server.sync()
        response = httpx.get(server.url + "/v1/models", headers={"authorization": f"Bearer {plaintext}"})
        assert response.status_code == 200
        key.refresh_from_db()
        assert key.last_used_at is None  # kept in memory, written in batches
    finally:
        server.stop()  # SIGTERM: daphne runs its shutdown triggers
    key.refresh_from_db()
    assert key.last_used_at is not None, server.output()


def _stream(url: str, key: str, client: httpx.Client, errors: list[Any] | None = None) -> Iterator[str]:
    """An OpenAI Chat stream's text pieces, as they arrive (its error events into `errors`)."""
    body = {"model": "slow-model", "stream": True, "messages": [{"role": "user", "content": "count"}]}
    headers = {"authorization": f"Bearer {key}"}
    with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[len("data: ") :])
                if "error" in event and errors is not None:
                    errors.append(event["error"])
                for choice in event.get("choices", []):
                    yield choice["delta"].get("content") or ""


def test_sigterm_drains_readiness_first_then_the_listener_then_running_streams(transactional_db, alice):
    """What a load balancer in front of a stopping replica sees (docs/deployment.md, "Graceful drain")."""
    key, plaintext = ProxyKey.issue(alice, label="ci")
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="slow-model", model="real-model")
        # The background passes come seldom: the ledger rows are written by the stop, or not at all.
        env = {"DRAIN_DELAY_SECONDS": "2", "SHUTDOWN_GRACE_SECONDS": "6", "CONFIG_REFRESH_INTERVAL": "60"}
        server = ProxyServer(env)
        try:
            server.sync()
            fake.script(Reply(text="one two three four five six", chunks=6, chunk_delay=0.6))  # ~3.6 s in all
            with httpx.Client(timeout=20) as streaming:
                pieces = _stream(server.url, plaintext, streaming)
                received = next(pieces)  # the stream has begun
                stopping = time.monotonic()
                server.process.send_signal(signal.SIGTERM)

                # At once: not ready (the balancer takes it out), yet alive (no restart) and still accepting.
                ready = _until(
                    lambda: httpx.get(server.url + "/health/ready", timeout=2), lambda r: r.status_code == 503
                )
                assert time.monotonic() - stopping < 1.0, server.output()
                assert ready.json()["status"] == "draining"
                assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200
                fake.script(Reply(text="served while draining"))
                during = httpx.post(
                    server.url + "/v1/chat/completions",
                    json={"model": "slow-model", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {plaintext}"},
                    timeout=10,
                )
                assert time.monotonic() - stopping < 2.0  # within the delay
                assert during.status_code == 200
                assert during.json()["choices"][0]["message"]["content"] == "served while draining"
                assert during.headers["connection"] == "close"  # the client's next request goes elsewhere

                # After the delay: refused, while the stream goes on to its end (within the grace).
                time.sleep(max(0.0, stopping + 2.5 - time.monotonic()))
                with pytest.raises(httpx.ConnectError):
                    httpx.get(server.url + "/healthz", timeout=2)
                assert server.process.poll() is None
                received += "".join(pieces)
            assert received == "one two three four five six"
            assert server.process.wait(timeout=15) == 0, server.output()
        finally:
            server.stop()
    rows = LedgerEntry.objects.filter(key=key)
    assert sorted(rows.values_list("outcome", "stream", "usage_partial")) == [("ok", False, False), ("ok", True, False)]


def test_a_stream_longer_than_the_grace_is_cut_and_recorded_as_cut_by_the_stop(transactional_db, alice):
    key, plaintext = ProxyKey.issue(alice, label="ci")
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="slow-model", model="real-model")
        server = ProxyServer({"DRAIN_DELAY_SECONDS": "0.5", "SHUTDOWN_GRACE_SECONDS": "1"})
        try:
            server.sync()
            fake.script(Reply(text="a b c d e f g h i j", chunks=10, chunk_delay=1.0))  # ~10 s
            with httpx.Client(timeout=20) as streaming:
                errors: list[Any] = []
                pieces = _stream(server.url, plaintext, streaming, errors)
                received = [next(pieces)]
                stopping = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                for piece in pieces:  # to the error event the stop sends past its grace
                    received.append(piece)
            took = time.monotonic() - stopping
            assert server.process.wait(timeout=15) == 0, server.output()
        finally:
            server.stop()
    assert 1.5 <= took < 4.0, took  # the delay, then the grace
    assert "".join(received).startswith("a ")  # sent 1 s after the SIGTERM, within the delay and the grace
    assert "".join(received) != "a b c d e f g h i j"
    assert errors == [
        {
            "message": "The server shut down before the answer was complete",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    ]
    (row,) = LedgerEntry.objects.filter(key=key)
    assert (row.outcome, row.stream, row.usage_partial) == ("cancelled", True, True)
    assert row.error_message == "The server shut down before the answer was complete"


def _until(ask: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + 5
    while True:
        answer = ask()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)
