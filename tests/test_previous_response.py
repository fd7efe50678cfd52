"""`previous_response_id` over HTTP on a route to an upstream that keeps no state (routing.conversations).

Through the live server with the official openai SDK against a fake Anthropic upstream: a tool-call turn,
then its continuation naming the first response and sending only the tool result. Plus the Responses API's
own not-found error for unknown, expired, other keys' and `store: false` ids, and the store's limits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import openai
import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from routing.dataplane.conversations import continued
from routing.models import ProxyKey, StoredResponse
from routing.runtime.stored_responses import _read, _write
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, ToolCall, Usage
from tests.test_translation_matrix import tool_links
from translation.dialect import Dialect
from translation.ir import (
    Message,
    OpaqueSignature,
    ReasoningPart,
    Response,
    Role,
    SignatureKind,
    StopReason,
    TextPart,
    ToolCallPart,
)

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
]


@pytest.fixture
def anthropic(transactional_db: None) -> Iterator[Any]:
    with fake_upstream("anthropic") as fake:
        add_route("up", "anthropic", fake.url, alias="m", model="real-model")
        yield fake


def sdk(proxy: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=proxy.url + "/v1", max_retries=0)


def ask(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    if not stream:
        return client.responses.create(model="m", tools=TOOLS, **kwargs)
    for event in client.responses.create(model="m", tools=TOOLS, stream=True, **kwargs):
        if event.type == "response.completed":
            return event.response
    raise AssertionError("the stream ended without response.completed")


def wait_for_stored(count: int) -> None:
    deadline = time.monotonic() + 5
    while StoredResponse.objects.count() < count:
        assert time.monotonic() < deadline, "the server stored the response"
        time.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_call_continues_with_previous_response_id(proxy, alice_key, anthropic, stream):
    anthropic.script(
        Reply(text="Checking.", tool_calls=[ToolCall("get_weather", {"city": "Paris"})], usage=Usage(20, 6)),
        Reply(text="Sunny in Paris.", usage=Usage(40, 4)),
    )
    proxy.sync()
    client = sdk(proxy, alice_key)
    first = ask(client, stream, instructions="Be brief.", input="Weather in Paris?")
    call = next(item for item in first.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"city": "Paris"}

    result = {"type": "function_call_output", "call_id": call.call_id, "output": "22C and sunny"}
    second = ask(client, stream, instructions="Be brief.", input=[result], previous_response_id=first.id)
    assert second.output_text == "Sunny in Paris."
    assert second.previous_response_id == first.id, "the response echoes the id the client sent"

    sent = anthropic.requests[-1].json
    calls, results, found = tool_links("anthropic", sent)
    assert calls == results == [call.call_id]
    assert found == ["22C and sunny"]
    assert sent["system"] and "Be brief." in json.dumps(sent["system"])
    assert sent["messages"][0]["role"] == "user" and "Weather in Paris?" in json.dumps(sent["messages"][0])
    assert "Checking." in json.dumps(sent["messages"])
    assert "previous_response_id" not in sent

    # The chain goes on: a third turn from the second response sees everything.
    anthropic.script(Reply(text="You are welcome."))
    third = ask(client, stream, input="Thanks!", previous_response_id=second.id)
    assert third.output_text == "You are welcome."
    text = json.dumps(anthropic.requests[-1].json["messages"])
    assert all(s in text for s in ("Weather in Paris?", "22C and sunny", "Sunny in Paris.", "Thanks!"))


@pytest.mark.e2e
def test_an_unknown_id_gets_the_responses_not_found_error(proxy, alice_key, anthropic):
    proxy.sync()
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(proxy, alice_key).responses.create(model="m", input="Hi", previous_response_id="resp_nope")
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert anthropic.request_count == 0


@pytest.mark.e2e
def test_ids_are_per_key_store_false_is_not_kept_and_entries_expire(proxy, alice_key, anthropic):
    anthropic.script(Reply(text="one"), Reply(text="two"), Reply(text="three"), Reply(text="four"))
    bob_key = ProxyKey.issue(User.objects.create_user("bob"), label="bob")[1]
    proxy.sync()
    alice, bob = sdk(proxy, alice_key), sdk(proxy, bob_key)

    kept = alice.responses.create(model="m", input="Hi")
    wait_for_stored(1)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="m", input="More", previous_response_id=kept.id)

    not_kept = alice.responses.create(model="m", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="m", input="More", previous_response_id=not_kept.id)

    assert alice.responses.create(model="m", input="More", previous_response_id=kept.id).output_text == "three"
    wait_for_stored(2)
    StoredResponse.objects.filter(response_id=kept.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="m", input="Again", previous_response_id=kept.id)

    alice.responses.create(model="m", input="Hi")  # a write deletes what has expired
    deadline = time.monotonic() + 5
    while StoredResponse.objects.filter(response_id=kept.id).exists():
        assert time.monotonic() < deadline, "the expired entry was deleted on a later write"
        time.sleep(0.05)


# -- the store itself ----------------------------------------------------------------------------------------


def _answer(text: str, signature: OpaqueSignature | None = None) -> Response:
    parts = (
        ReasoningPart(text="thinking", signature=signature),
        TextPart(text),
        ToolCallPart.from_raw("toolu_1", "get_weather", '{"city":"Paris"}'),
    )
    return Response(id="msg_1", model="real-model", parts=parts, stop=StopReason.TOOL_USE)


@pytest.mark.django_db
def test_the_store_keeps_signed_reasoning_for_the_upstream_that_signed_it(alice_key):
    key = ProxyKey.objects.get()
    signature = OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "EqQBCkYIBxgCKkA=")
    conversation = (Message(Role.USER, (TextPart("Weather?"),)),)
    answer = _answer("Checking.", signature)
    _write(key.id, "resp_1", conversation, answer)
    assert _read(key.id, "resp_1") == continued(conversation, answer)
    assert _read(key.id, "resp_other") is None


@pytest.mark.django_db
def test_the_store_limits_entry_size_and_entries_per_key(alice_key):
    key = ProxyKey.objects.get()
    conversation = (Message(Role.USER, (TextPart("Weather?"),)),)
    with override_settings(RESPONSE_STORE_MAX_BYTES=100):
        _write(key.id, "resp_big", conversation, _answer("x" * 200))
    assert not StoredResponse.objects.exists()
    with override_settings(RESPONSE_STORE_MAX_PER_KEY=2):
        for n in range(3):
            _write(key.id, f"resp_{n}", conversation, _answer(f"answer {n}"))
    assert sorted(StoredResponse.objects.values_list("response_id", flat=True)) == ["resp_1", "resp_2"]
