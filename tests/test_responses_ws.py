"""Responses over WebSocket (routing.responses_ws): the consumer in-process with Channels' communicator against
fake upstreams, then the official openai SDK's `client.responses.connect()` against the live server.

The frames follow Codex's WebSocket episode (tests/fixtures/captures/codex/episode_websocket.jsonl, captured from
the real CLI: see tests/fixtures/captures/README.md):
a `generate: false` warm-up with the developer message, then each turn as `response.create` with
`previous_response_id`, only the new input items and `store: false`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings

from llmproxy_site.asgi import application
from routing.models import ProxyKey
from routing.runtime.database import db_executor
from routing.runtime.live import live_config
from routing.runtime.worker import worker
from routing.upstream import client as upstream_module
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, ToolCall, Usage
from tests.fixtures import capture_records
from tests.inprocess import write_ledger
from tests.test_translation_matrix import BASE_PATH, tool_links

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
EXEC_TOOL = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
DEVELOPER = {
    "type": "message",
    "id": "msg_dev",
    "role": "developer",
    "content": [{"type": "input_text", "text": "You are Codex, a coding agent."}],
}
USER = {
    "type": "message",
    "id": "msg_user",
    "role": "user",
    "content": [{"type": "input_text", "text": "Run echo hello, then reply DONE"}],
}


def create(**fields: Any) -> dict[str, Any]:
    """A `response.create` frame shaped like Codex's."""
    frame = {
        "type": "response.create",
        "model": "m",
        "stream": True,
        "tools": [EXEC_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
    }
    frame.update(fields)
    return frame


@pytest.fixture
async def live(transactional_db: None) -> AsyncIterator[None]:
    """The in-process snapshot, reloaded from this test's data; its refresher stopped afterwards, before the test
    database is emptied (this fixture is set up after the database, so torn down before it)."""
    yield
    worker.halt()
    # Before the test database is emptied: let the writes started off the request path (stored responses, the
    # ledger's pass) reach the database thread, and wait for it to finish them, or the emptying TRUNCATE and
    # those writes deadlock on PostgreSQL. The ledger rows of this test's exchanges are written too: left
    # queued, they would land in the next test's database.
    await asyncio.sleep(0)
    await write_ledger()
    await asyncio.wrap_future(db_executor.submit(lambda: None))
    client = upstream_module._clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def reload() -> None:
    await live_config.reload()
    await live_config.ensure_started()


async def connect(key: str | None, path: str = "/v1/responses", **headers: str) -> WebsocketCommunicator:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    if key is not None:
        raw.append((b"authorization", f"Bearer {key}".encode()))
    raw.append((b"openai-beta", b"responses_websockets=2026-02-06"))
    return WebsocketCommunicator(application, path, headers=raw)


async def opened(key: str) -> WebsocketCommunicator:
    communicator = await connect(key)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def turn(communicator: WebsocketCommunicator, frame: dict[str, Any] | str) -> list[dict[str, Any]]:
    """Send one frame; the events up to the terminal one (or the lone error event)."""
    if isinstance(frame, str):
        await communicator.send_to(text_data=frame)
    else:
        await communicator.send_json_to(frame)
    events: list[dict[str, Any]] = []
    while True:
        event = await communicator.receive_json_from(timeout=10)
        events.append(event)
        if event["type"] in TERMINAL or (event["type"] == "error" and len(events) == 1):
            return events


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", events
    return events[-1]["response"]


@pytest.fixture
def key(transactional_db: None) -> str:
    user = User.objects.create_user("codex-user")
    return ProxyKey.issue(user, label="ws")[1]


@pytest.fixture(params=["anthropic", "openai-chat"])
def translated_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def translated_upstream(translated_format: str, transactional_db: None) -> Iterator[Any]:
    with fake_upstream(translated_format) as fake:
        add_route("up", translated_format, fake.url + BASE_PATH[translated_format], alias="m", model="real-model")
        yield fake


@pytest.fixture
def anthropic_upstream(transactional_db: None) -> Iterator[Any]:
    with fake_upstream("anthropic") as fake:
        add_route("up", "anthropic", fake.url, alias="m", model="real-model")
        yield fake


async def test_warm_up_answers_at_once_without_calling_the_upstream(live, key, anthropic_upstream):
    await reload()
    ws = await opened(key)
    events = await turn(ws, create(input=[DEVELOPER], generate=False))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.completed"]
    response = final(events)
    assert response["output"] == [] and response["id"].startswith("resp_")
    assert response["model"] == "m"
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    assert anthropic_upstream.request_count == 0
    await ws.disconnect()


async def test_two_turn_tool_continuation_with_previous_response_id(live, key, translated_format, translated_upstream):
    upstream = translated_upstream
    upstream.script(
        Reply(text="Running it.", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello"})], usage=Usage(30, 7)),
        Reply(text="DONE", usage=Usage(60, 2)),
    )
    await reload()
    ws = await opened(key)
    warm = final(await turn(ws, create(input=[DEVELOPER], generate=False)))

    events = await turn(ws, create(input=[USER], previous_response_id=warm["id"]))
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert "response.function_call_arguments.delta" in types and "response.output_item.done" in types
    first = final(events)
    call = next(item for item in first["output"] if item["type"] == "function_call")
    assert (call["name"], json.loads(call["arguments"])) == ("exec_command", {"cmd": "echo hello"})
    assert first["usage"]["output_tokens"] == 7
    sent = upstream.requests[-1].json
    assert "Codex" in json.dumps(sent), "the warm-up's developer message went upstream with the first turn"
    assert "previous_response_id" not in sent

    result = {"type": "function_call_output", "id": "fco_1", "call_id": call["call_id"], "output": "hello\n"}
    second = final(await turn(ws, create(input=[result], previous_response_id=first["id"])))
    assert [item["type"] for item in second["output"]] == ["message"]
    assert second["output"][0]["content"][0]["text"] == "DONE"
    assert second["id"] != first["id"]

    sent = upstream.requests[-1].json
    calls, results, found = tool_links(translated_format, sent)
    assert calls == results == [call["call_id"]], "the call from the history is answered by the new result"
    text = json.dumps(sent)
    assert "Codex" in text and "Run echo hello" in text and "Running it." in text
    assert found == [] and "hello" in text
    assert not upstream.errors
    await ws.disconnect()


async def test_stream_id_is_echoed_on_every_event(live, key, anthropic_upstream):
    anthropic_upstream.script(Reply(text="hi"))
    await reload()
    ws = await opened(key)
    events = await turn(ws, create(input="Hi", stream_id="lane-1"))
    assert {e.get("stream_id") for e in events} == {"lane-1"}
    await ws.disconnect()


async def test_errors_are_events_and_the_connection_stays_usable(live, key, anthropic_upstream):
    anthropic_upstream.script(Reply(error=Failure(429, "slow down", retry_after=3)), Reply(text="fine"))
    await reload()
    ws = await opened(key)

    (bad_json,) = await turn(ws, "{not json")
    assert bad_json["type"] == "error" and bad_json["status"] == 400
    assert bad_json["error"]["type"] == "invalid_request_error" and "JSON" in bad_json["error"]["message"]

    (unknown,) = await turn(ws, create(model="nope", input="Hi"))
    assert unknown["status"] == 404 and unknown["error"]["param"] == "model"

    (wrong_type,) = await turn(ws, {"type": "session.update"})
    assert wrong_type["status"] == 400 and wrong_type["error"]["param"] == "type"

    (limited,) = await turn(ws, create(input="Hi"))
    assert limited["status"] == 429 and limited["error"]["code"] == "rate_limit_exceeded"
    assert "slow down" in limited["error"]["message"]

    (missing,) = await turn(ws, create(input="Hi", previous_response_id="resp_unknown"))
    assert missing["status"] == 404
    assert missing["error"] == {
        "message": "Previous response with id 'resp_unknown' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }

    assert final(await turn(ws, create(input="Hi")))["output"][0]["content"][0]["text"] == "fine"
    await ws.disconnect()


async def test_a_broken_upstream_stream_ends_in_an_error_and_response_failed(live, key, anthropic_upstream):
    anthropic_upstream.script(Reply(text="partial answer", stream_error=Failure(529, "Overloaded")))
    await reload()
    ws = await opened(key)
    events = await turn(ws, create(input="Hi"))
    assert events[-1]["type"] == "response.failed"
    error = next(e for e in events if e["type"] == "error")
    assert isinstance(error["error"], dict) and error["error"]["message"]
    await ws.disconnect()


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer sk-llmp-wrong"}, {"x-api-key": "nope"}])
async def test_an_upgrade_without_a_valid_key_is_refused(live, key, anthropic_upstream, headers):
    await reload()
    communicator = await connect(None, **headers)
    connected, _ = await communicator.connect()
    assert not connected


async def test_x_api_key_is_accepted_too(live, key, anthropic_upstream):
    await reload()
    communicator = await connect(None, **{"x-api-key": key})
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


def revoke_every_key() -> None:
    for stored in ProxyKey.objects.all():
        stored.revoked_at = stored.created_at
        stored.save()


async def test_a_revoked_key_closes_the_connection_with_4008(live, key, anthropic_upstream):
    await reload()
    ws = await opened(key)
    await asyncio.to_thread(revoke_every_key)
    await live_config.reload()
    (error,) = await turn(ws, create(input="Hi"))
    assert error["status"] == 401
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4008}


async def test_an_oversized_message_closes_with_4009(live, key, anthropic_upstream):
    await reload()
    ws = await opened(key)
    with override_settings(MAX_REQUEST_BYTES=1000):
        (error,) = await turn(ws, create(input="x" * 2000))
        assert error["status"] == 413
        assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4009}


async def test_frames_beyond_the_connections_queue_bound_are_refused_and_the_connection_goes_on(
    live, key, anthropic_upstream
):
    """Frames are queued per lane while an earlier one runs; past WEBSOCKET_MAX_QUEUED_BYTES a frame is
    answered with an error event at once instead of being held."""
    await reload()
    anthropic_upstream.script(Reply(text="slow", latency=1.0), Reply(text="next"))
    ws = await opened(key)
    with override_settings(WEBSOCKET_MAX_QUEUED_BYTES=3000):
        await ws.send_json_to(create(input="a" * 1000))  # served (slowly)
        await ws.send_json_to(create(input="b" * 1000))  # waits behind it
        await ws.send_json_to(create(input="c" * 1500))  # would pass the bound: refused at once
        events: list[dict[str, Any]] = []
        while len([e for e in events if e["type"] in TERMINAL]) < 2:
            events.append(await ws.receive_json_from(timeout=10))
    (refused,) = [e for e in events if e["type"] == "error"]
    assert refused["status"] == 429
    assert "Too many messages waiting on this connection" in refused["error"]["message"]
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["response.completed"] * 2
    assert len(anthropic_upstream.requests) == 2  # the refused frame never went upstream
    await ws.disconnect()


def test_the_connection_history_is_bounded_in_bytes_oldest_first():
    from routing.dataplane.conversations import ConnectionHistory
    from translation.ir import Message, Role, TextPart

    history = ConnectionHistory(max_bytes=10_000)
    conversation: tuple[Message, ...] = ()
    for turn_number in range(30):  # one conversation growing by ~1 KB a turn: each turn costs only its growth
        conversation = (*conversation, Message(Role.USER, (TextPart("x" * 1000),)))
        history.remember(f"resp_{turn_number}", conversation, None)
    assert 9 <= len(history) <= 10 and history.size <= 10_000
    assert history.get("resp_29") == conversation and history.get("resp_0") is None

    warm_ups = ConnectionHistory(max_bytes=10_000)
    for n in range(30):  # unrelated 2 KB inputs (Codex warm-ups): each costs its whole size
        warm_ups.remember(f"warm_{n}", (Message(Role.USER, (TextPart(str(n) * 2000),)),), None)
    assert len(warm_ups) <= 5 and warm_ups.size <= 10_000 and warm_ups.get("warm_29") is not None


async def test_other_websocket_paths_are_refused(live, key):
    await reload()
    communicator = await connect(key, path="/v1/realtime")
    connected, _ = await communicator.connect()
    assert not connected


async def test_history_is_forgotten_when_the_connection_closes(live, key, anthropic_upstream):
    anthropic_upstream.script(Reply(text="first"), Reply(text="second"))
    await reload()
    ws = await opened(key)
    first = final(await turn(ws, create(input="Hi")))
    await ws.disconnect()

    again = await opened(key)
    (error,) = await turn(again, create(input="More", previous_response_id=first["id"]))
    assert error["error"]["code"] == "previous_response_not_found"
    assert anthropic_upstream.request_count == 1
    await again.disconnect()


async def test_a_client_that_goes_away_cancels_the_upstream_request(live, key, anthropic_upstream):
    anthropic_upstream.script(Reply(text="never finished", chunks=5, stall_after=2))
    await reload()
    ws = await opened(key)
    await ws.send_json_to(create(input="Hi"))
    assert (await ws.receive_json_from(timeout=10))["type"] == "response.created"
    await ws.disconnect()
    assert await asyncio.to_thread(anthropic_upstream.wait_for_disconnects, 1, 5)


async def test_several_responses_in_sequence_on_one_connection(live, key, anthropic_upstream):
    anthropic_upstream.script(*(Reply(text=f"answer {n}") for n in range(3)))
    await reload()
    ws = await opened(key)
    previous = None
    for n in range(3):
        fields = {"previous_response_id": previous} if previous else {}
        response = final(await turn(ws, create(input=f"question {n}", **fields)))
        assert response["output"][0]["content"][0]["text"] == f"answer {n}"
        previous = response["id"]
    text = json.dumps(anthropic_upstream.requests[-1].json["messages"])
    assert all(f"question {n}" in text and (n == 2 or f"answer {n}" in text) for n in range(3))
    await ws.disconnect()


# -- a Responses upstream -------------------------------------------------------------------------------------


@pytest.fixture
def responses_upstream(transactional_db: None) -> Iterator[Any]:
    with fake_upstream("openai-responses") as fake:
        add_route("up", "openai-responses", fake.url + "/v1", alias="m", model="real-model")
        yield fake


async def test_a_responses_upstream_gets_the_request_and_its_events_come_back(live, key, responses_upstream):
    responses_upstream.script(
        Reply(text="Running it.", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello"})]),
        Reply(text="DONE"),
    )
    await reload()
    ws = await opened(key)
    warm = final(await turn(ws, create(input=[DEVELOPER], generate=False)))
    first = final(await turn(ws, create(input=[USER], previous_response_id=warm["id"])))
    sent = responses_upstream.requests[-1]
    assert sent.json["model"] == "real-model" and sent.json["stream"] is True
    assert "type" not in sent.json and "generate" not in sent.json
    assert "responses_websockets" not in sent.headers.get("openai-beta", "")
    call = next(item for item in first["output"] if item["type"] == "function_call")

    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "hello\n"}
    second = final(await turn(ws, create(input=[result], previous_response_id=first["id"])))
    assert second["output"][-1]["content"][0]["text"] == "DONE"
    sent = responses_upstream.requests[-1].json
    # store:false means the upstream has nothing stored: the connection's history goes with the request.
    assert "previous_response_id" not in sent
    calls, results, _ = tool_links("openai-responses", sent)
    assert calls == results == [call["call_id"]]
    assert "Codex" in json.dumps(sent)
    await ws.disconnect()


async def test_an_id_unknown_here_goes_to_a_responses_upstream_as_sent(live, key, responses_upstream):
    responses_upstream.script(Reply(text="ok"))
    await reload()
    ws = await opened(key)
    final(await turn(ws, create(input="Hi", previous_response_id="resp_stored_upstream", store=True)))
    assert responses_upstream.requests[-1].json["previous_response_id"] == "resp_stored_upstream"
    await ws.disconnect()


# -- the official SDK against the live server ------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_openai_sdk_responses_connect_through_the_live_server(proxy, alice_key):
    with fake_upstream("anthropic") as upstream:
        add_route("up", "anthropic", upstream.url, alias="m", model="real-model")
        upstream.script(
            Reply(text="Running it.", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello"})]),
            Reply(text="DONE"),
        )
        proxy.sync()
        client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0)
        with client.responses.connect(max_retries=0) as connection:
            connection.response.create(model="m", input=[DEVELOPER], tools=[EXEC_TOOL], store=False, generate=False)
            warm = _sdk_final(connection)
            assert warm.status == "completed" and warm.output == []

            connection.response.create(
                model="m", input=[USER], tools=[EXEC_TOOL], store=False, previous_response_id=warm.id
            )
            first = _sdk_final(connection)
            call = next(item for item in first.output if item.type == "function_call")
            assert call.name == "exec_command" and json.loads(call.arguments) == {"cmd": "echo hello"}

            result = {"type": "function_call_output", "call_id": call.call_id, "output": "hello\n"}
            connection.response.create(
                model="m", input=[result], tools=[EXEC_TOOL], store=False, previous_response_id=first.id
            )
            second = _sdk_final(connection)
            assert second.output_text == "DONE"
        calls, results, _ = tool_links("anthropic", upstream.requests[-1].json)
        assert calls == results == [call.call_id]


def _sdk_final(connection: Any) -> Any:
    for event in connection:
        if event.type == "error":
            raise AssertionError(f"error event: {event}")
        if event.type in TERMINAL:
            return event.response
    raise AssertionError("the connection closed before the response finished")


# -- Codex's own frames ----------------------------------------------------------------------------------------

CODEX_EPISODE = "codex/episode_websocket.jsonl"


def codex_frames() -> list[dict[str, Any]]:
    return [r["body"] for r in capture_records(CODEX_EPISODE) if r["kind"] == "ws_message"]


async def test_codex_captured_episode_replays_against_a_translated_upstream(
    live, key, translated_format, translated_upstream
):
    """Codex 0.169's three frames as captured (warm-up, turn, tool result), our ids put in for the real ones."""
    warm_frame, turn_frame, result_frame = codex_frames()
    translated_upstream.script(
        Reply(text="", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello"})]), Reply(text="DONE")
    )
    await reload()
    ws = await opened(key)
    warm = final(await turn(ws, {**warm_frame, "model": "m"}))
    first = final(await turn(ws, {**turn_frame, "model": "m", "previous_response_id": warm["id"]}))
    call = next(item for item in first["output"] if item["type"] == "function_call")
    result = [{**result_frame["input"][0], "call_id": call["call_id"]}]
    second = final(await turn(ws, {**result_frame, "model": "m", "previous_response_id": first["id"], "input": result}))
    assert second["output"][-1]["content"][0]["text"] == "DONE"
    sent = translated_upstream.requests[-1].json
    calls, results, _ = tool_links(translated_format, sent)
    assert calls == results == [call["call_id"]]
    assert "You are Codex" in json.dumps(sent) and "skills_instructions" in json.dumps(sent)
    assert not translated_upstream.errors
    await ws.disconnect()
