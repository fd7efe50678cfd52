"""The staff live view: who may open it, what a page receives, and a publisher that stays silent when nobody
watches or nothing changed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from websockets.sync.client import connect as websockets_connect

from llmproxy_site.asgi import application as websocket_application
from routing.models import ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply
from tests.liveserver import ProxyServer
from translation.errors import ApiError, ErrorKind
from translation.usage import Usage
from usage import ledger, live
from usage.ledger import ExchangeRecord
from usage.live import publish_live, publisher

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture
async def clean_live(monkeypatch) -> AsyncIterator[Any]:
    """This process's ledger state emptied for the test, the publisher reset, the in-memory layer flushed."""
    monkeypatch.setattr(ledger, "in_flight", {})
    monkeypatch.setattr(ledger, "recent", deque(maxlen=ledger.RECENT_MAX))
    monkeypatch.setattr(ledger, "_pending", deque(maxlen=ledger.MAX_PENDING))
    layer = get_channel_layer()
    await publisher.stop()
    await layer.flush()
    yield layer
    await publisher.stop()
    await layer.flush()


async def page_channel(layer) -> str:
    """A channel in the pages' group, standing in for an open page."""
    channel = await layer.new_channel()
    await layer.group_add(live.GROUP, channel)
    return channel


async def received(layer, channel: str, wait: float = 0.2) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), timeout=wait))
        except TimeoutError:
            return messages


def exchange(user: str = "alice", model: str = "claude-sonnet-4-5") -> ExchangeRecord:
    record = ExchangeRecord("anthropic", "/v1/messages", client_program="Claude Code")
    record.key_id, record.user_id, record.username = 7, 1, user
    record.requested_model, record.alias = model, "claude-*"
    record.upstream, record.upstream_model = "anthropic", model
    record.stream = True
    return record


# --- the publisher ----------------------------------------------------------------------------------------


async def test_nothing_is_sent_while_nobody_watches(clean_live):
    channel = await page_channel(clean_live)
    ledger.begin_exchange(exchange())
    await publish_live()
    await publish_live()
    assert await received(clean_live, channel) == []


async def test_one_message_per_change_and_none_when_unchanged(clean_live):
    channel = await page_channel(clean_live)
    publisher.watched(new_viewer=True)

    await publish_live()  # a new viewer gets the state at once, even an empty one
    (first,) = await received(clean_live, channel)
    assert first["type"] == "live.state"
    assert first["state"]["in_flight"] == [] and first["state"]["recent"] == []
    for _ in range(5):
        await publish_live()
    assert await received(clean_live, channel) == []

    record = exchange()
    ledger.begin_exchange(record)
    await publish_live()
    await publish_live()
    (started,) = await received(clean_live, channel)
    (item,) = started["state"]["in_flight"]
    assert item["user"] == "alice" and item["model"] == "claude-sonnet-4-5" and item["stream"] is True

    record.output_started()  # the first token: the page shows it is generating
    await publish_live()
    assert len(await received(clean_live, channel)) == 1
    await publish_live()
    assert await received(clean_live, channel) == []

    record.add_usage(Usage(input_tokens=10, output_tokens=42))
    ledger.record_exchange(record)
    await publish_live()
    await publish_live()
    (finished,) = await received(clean_live, channel)
    state = finished["state"]
    assert state["in_flight"] == []
    (done,) = state["recent"]
    assert done["id"] == record.id
    assert done["outcome"] == "ok" and done["output_tokens"] == 42 and done["input_tokens"] == 10
    assert done["duration_ms"] >= 0 and done["ttft_ms"] is not None


async def test_the_state_is_republished_periodically_while_watched(clean_live, monkeypatch):
    channel = await page_channel(clean_live)
    publisher.watched()
    await publish_live()
    assert len(await received(clean_live, channel)) == 1
    await publish_live()
    assert await received(clean_live, channel) == []
    monkeypatch.setattr(publisher, "last_sent", time.monotonic() - live.REPUBLISH_SECONDS)
    await publish_live()
    assert len(await received(clean_live, channel)) == 1

    # The page went away (no heartbeat within the TTL): silence, even when something changes.
    monkeypatch.setattr(publisher, "watched_until", time.monotonic() - 1)
    ledger.begin_exchange(exchange())
    await publish_live()
    assert await received(clean_live, channel) == []


async def test_a_page_announcing_itself_through_the_layer_wakes_the_publisher(clean_live):
    """Pages of other processes reach this process's publisher only through the channel layer."""
    channel = await page_channel(clean_live)
    await publish_live()  # starts this process's listener; nobody watches yet
    await asyncio.sleep(0.05)
    assert await received(clean_live, channel, wait=0.05) == []
    await clean_live.group_send(live.PUBLISHERS_GROUP, {"type": "live.watch", "new": True})
    await asyncio.sleep(0.05)
    assert publisher.watched_until > time.monotonic()
    await publish_live()
    (message,) = await received(clean_live, channel)
    assert message["state"]["process"] == live.process_id()


async def test_an_unreachable_layer_pauses_publishing_instead_of_failing_every_tick(clean_live, monkeypatch, caplog):
    calls = []

    async def broken(group, message):
        calls.append(group)
        raise ConnectionError("redis is down")

    monkeypatch.setattr(clean_live, "group_send", broken)
    publisher.watched(new_viewer=True)
    for _ in range(5):
        await publish_live()  # never raises into the routing layer's loop
    assert calls == [live.GROUP]
    assert "cannot publish" in caplog.text
    monkeypatch.setattr(publisher, "_send_failed", time.monotonic() - live.LISTENER_RETRY_SECONDS)
    await publish_live()
    assert calls == [live.GROUP, live.GROUP]


async def test_failures_and_errors_are_described_without_secrets(clean_live):
    record = exchange()
    ledger.begin_exchange(record)
    record.failed(ApiError(ErrorKind.RATE_LIMITED, "Slow down"), 429, from_upstream=True)
    ledger.record_exchange(record)
    state = live.current_state()
    (item,) = state["recent"]
    assert item["outcome"] == "upstream_error" and item["status"] == 429
    assert "Slow down" in item["error"]
    assert "key" not in " ".join(state["recent"][0])  # no key id, prefix or secret among the fields


# --- the consumer -----------------------------------------------------------------------------------------


def _session_cookie(user: User | None) -> bytes:
    if user is None:
        return b""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_page(user: User | None, origin: tuple[bytes, bytes] | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"cookie", await sync_to_async(_session_cookie)(user))]
    if origin is not None:
        headers.append(origin)
    return WebsocketCommunicator(websocket_application, live.WS_PATH, headers=headers)


@pytest.fixture
def staff(transactional_db) -> User:
    return User.objects.create_user("operator", password="operator-password", is_staff=True)


@pytest.fixture
def member(transactional_db) -> User:
    return User.objects.create_user("member", password="member-password")


@pytest.mark.parametrize("who", ["anonymous", "member"])
async def test_only_staff_may_open_the_live_socket(clean_live, member, who):
    communicator = await open_page(member if who == "member" else None)
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused_even_for_staff(clean_live, staff):
    for origin in [(b"origin", b"https://evil.example"), None]:
        communicator = await open_page(staff, origin=origin)
        connected, _ = await communicator.connect()
        assert not connected
        await communicator.disconnect()


async def test_staff_get_the_state_at_once_and_every_change(clean_live, staff):
    running = exchange(user="alice", model="gpt-5")
    ledger.begin_exchange(running)

    communicator = await open_page(staff)
    connected, _ = await communicator.connect()
    assert connected
    state = await communicator.receive_json_from(timeout=2)
    assert state["type"] == "state"
    assert state["process"] == live.process_id()
    assert [item["id"] for item in state["in_flight"]] == [running.id]
    assert state["in_flight"][0]["model"] == "gpt-5"
    assert abs(state["sent_at"] - time.time()) < 5

    # The page made this process's publisher start sending: its first tick sends what it has (other pages may
    # not have it), later ticks only changes.
    await publish_live()
    first = await communicator.receive_json_from(timeout=2)
    assert [item["id"] for item in first["in_flight"]] == [running.id]
    await publish_live()
    assert await communicator.receive_nothing(timeout=0.2)
    second = exchange(user="bob")
    ledger.begin_exchange(second)
    await publish_live()
    again = await communicator.receive_json_from(timeout=2)
    assert {item["user"] for item in again["in_flight"]} == {"alice", "bob"}
    await publish_live()
    assert await communicator.receive_nothing(timeout=0.2)

    ledger.record_exchange(running)
    await publish_live()
    finished = await communicator.receive_json_from(timeout=2)
    assert [item["user"] for item in finished["in_flight"]] == ["bob"]
    assert finished["recent"][0]["id"] == running.id
    assert finished["recent"][0]["user"] == "alice"

    await communicator.disconnect()


async def test_the_responses_websocket_path_is_not_behind_the_session(clean_live, staff):
    """The Responses-over-WebSocket path still takes a proxy key, not a session: a staff cookie is refused."""
    communicator = WebsocketCommunicator(
        websocket_application, "/v1/responses", headers=[(b"cookie", await sync_to_async(_session_cookie)(staff))]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


# --- the page ---------------------------------------------------------------------------------------------


def test_the_page_is_for_staff_only(staff, member):
    assert Client().get("/dashboard/live/")["Location"].startswith("/accounts/login/")
    members = Client()
    members.force_login(member)
    assert members.get("/dashboard/live/").status_code == 403  # the 403 page, with a way back to /me/
    operators = Client()
    operators.force_login(staff)
    page = operators.get("/dashboard/live/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f'data-ws-path="{live.WS_PATH}"' in text
    assert "usage/live.js" in text


# --- several processes through Redis ----------------------------------------------------------------------

# The Redis every developer and CI machine runs (docs/configuration.md); database 14 keeps these tests'
# channel-layer keys apart from anything else on it.
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
def redis_url() -> str:
    host, port = TEST_REDIS.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis at {TEST_REDIS} is not reachable ({exc}); these machines run one on 127.0.0.1:6379")
    return TEST_REDIS


def states(ws, until, timeout: float = 15.0) -> dict[str, Any]:
    """Read states from the page's socket until `until(state)`; returns that state."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the expected state never arrived")
        try:
            state = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            continue
        if until(state):
            return state


@pytest.mark.e2e
def test_a_page_on_one_process_sees_the_exchanges_of_another_through_redis(transactional_db, redis_url, alice):
    _, plaintext = ProxyKey.issue(alice)
    operator = User.objects.create_user("operator", password="operator-password", is_staff=True)
    servers = [ProxyServer(extra_env={"REDIS_URL": redis_url}) for _ in range(2)]
    try:
        with fake_upstream("openai-chat") as fake:
            add_route("up", "openai-chat", fake.url + "/v1", alias="redis-model", model="real-model")
            fake.script(Reply(text="a"), Reply(text="one two three four", chunks=4, chunk_delay=0.7))
            headers = {"authorization": f"Bearer {plaintext}"}
            body = {"model": "redis-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            for server in servers:
                server.sync()
            # The second process has been serving already (its background loop runs, as on any busy server).
            assert httpx.post(servers[1].url + "/v1/chat/completions", json=body, headers=headers).status_code == 200

            cookie = f"sessionid={_session_cookie(operator).decode().split('=', 1)[1]}"
            page_url = servers[0].url.replace("http://", "ws://") + live.WS_PATH
            with websockets_connect(page_url, additional_headers={"Cookie": cookie, "Origin": servers[0].url}) as ws:
                own = states(ws, lambda state: True)  # the page's own process, at once
                # The other process answers the page's announcement, or its next heartbeat when its listener was
                # not yet in the group (it had only just started).
                other = states(ws, lambda s: s["process"] != own["process"])
                assert other["recent"][0]["model"] == "redis-model"
                worker = threading.Thread(
                    target=lambda: httpx.post(servers[1].url + "/v1/chat/completions", json=body, headers=headers)
                )
                worker.start()
                flying = states(ws, lambda s: s["process"] != own["process"] and s["in_flight"])
                assert flying["in_flight"][0]["model"] == "redis-model"
                assert flying["in_flight"][0]["user"] == "alice"
                done = states(ws, lambda s: s["process"] == flying["process"] and not s["in_flight"])
                assert [item["model"] for item in done["recent"][:2]] == ["redis-model", "redis-model"]
                assert done["recent"][0]["outcome"] == "ok"
                worker.join(timeout=30)
    finally:
        for server in servers:
            server.stop()
