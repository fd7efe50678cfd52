"""Model access lists per key, user and group (routing.access.policy), through the proxy with the official SDKs:
what is allowed goes through, what is not is a 403 in the client's own dialect naming the level that refused it,
and model listings show only what the key may use.

The proxy runs in-process (tests/inprocess.py); the refusal in every dialect stays on a real daphne, as it also
covers the Responses WebSocket over a real socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import Group, User
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from websockets.sync.client import connect as ws_connect

from routing.models import GroupPolicy, KeyPolicy, ModelAlias, ProxyKey, UserPolicy
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.inprocess import (
    Proxy,
    http,
    passwordless_alice,  # noqa: F401  (`alice` without a password: nobody logs in here)
    sdk_http_client,
)

MODELS = ["fast", "smart", "local"]


@pytest.fixture
def routes(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[None]:
    """One fake Chat upstream behind the aliases fast, smart, local and the pattern claude-*: in-process for a
    test that runs the proxy in-process, else a real server."""
    if "inproc" in request.fixturenames:
        fake_context = request.getfixturevalue("inproc").upstream("openai-chat")
    else:
        fake_context = fake_upstream("openai-chat")
    with fake_context as fake:
        upstream = add_route("up", "openai-chat", fake.url + "/v1", alias="fast", model="small-model")
        ModelAlias.objects.create(name="smart", upstream=upstream, upstream_model="big-model")
        ModelAlias.objects.create(name="local", upstream=upstream, upstream_model="local-model")
        ModelAlias.objects.create(name="claude-*", upstream=upstream, upstream_model="claude-model")
        yield


def openai_client(proxy: Proxy, key: str, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=proxy.url + path, max_retries=0, http_client=sdk_http_client(proxy))


def anthropic_client(proxy: Proxy, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=proxy.url, max_retries=0, http_client=sdk_http_client(proxy))


def gemini_client(proxy: Proxy, key: str) -> genai.Client:
    options = genai_types.HttpOptions(base_url=proxy.url, httpx_client=sdk_http_client(proxy))
    return genai.Client(api_key=key, http_options=options)


def chat(proxy: Proxy, key: str, model: str) -> str:
    client = openai_client(proxy, key)
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return completion.choices[0].message.content or ""


def refused(proxy: Proxy, key: str, model: str) -> str:
    """The 403 message an OpenAI SDK client gets for `model`."""
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(proxy, key, model)
    return caught.value.body["message"]


def listed(proxy: Proxy, key: str) -> list[str]:
    return [m.id for m in openai_client(proxy, key).models.list()]


def key_of(user: User) -> ProxyKey:
    return ProxyKey.objects.get(user=user)


def test_no_list_anywhere_allows_every_model(inproc, alice_key, routes):
    inproc.sync()
    for model in [*MODELS, "claude-3-5-haiku", "up/anything"]:
        assert chat(inproc, alice_key, model)
    assert listed(inproc, alice_key) == sorted(MODELS)


def test_a_key_list_allows_names_and_patterns_and_refuses_the_rest(inproc, alice, alice_key, routes):
    KeyPolicy.objects.create(key=key_of(alice), allowed_models=["fast", "claude-*haiku*"])
    inproc.sync()
    assert chat(inproc, alice_key, "fast")
    assert chat(inproc, alice_key, "claude-3-5-haiku")
    assert chat(inproc, alice_key, "claude-3-5-haiku-20241022")  # compared as resolution compares: undated
    message = refused(inproc, alice_key, "smart")
    assert message == "Model 'smart' is not allowed for key 'laptop' (allowed: fast, claude-*haiku*)"
    assert "key 'laptop'" in refused(inproc, alice_key, "claude-sonnet-4-5")
    assert "key 'laptop'" in refused(inproc, alice_key, "up/anything")  # direct routes are models too
    assert listed(inproc, alice_key) == ["fast"]


def test_a_direct_route_is_allowed_by_its_upstream_prefix(inproc, alice, alice_key, routes):
    KeyPolicy.objects.create(key=key_of(alice), allowed_models=["up/*"])
    inproc.sync()
    assert chat(inproc, alice_key, "up/anything")
    refused(inproc, alice_key, "fast")
    assert listed(inproc, alice_key) == []


def test_an_alias_pattern_name_in_a_list_allows_what_the_pattern_serves(inproc, alice, alice_key, routes):
    UserPolicy.objects.create(user=alice, allowed_models=["claude-*"])
    inproc.sync()
    assert chat(inproc, alice_key, "claude-opus-4-1")
    assert "user 'alice'" in refused(inproc, alice_key, "fast")


def test_key_and_user_lists_both_apply(inproc, alice, alice_key, routes):
    UserPolicy.objects.create(user=alice, allowed_models=["fast", "smart"])
    KeyPolicy.objects.create(key=key_of(alice), allowed_models=["smart", "local"])
    inproc.sync()
    assert chat(inproc, alice_key, "smart")
    assert "key 'laptop'" in refused(inproc, alice_key, "fast")  # the user may, this key may not
    assert "user 'alice'" in refused(inproc, alice_key, "local")  # this key may, the user may not
    assert listed(inproc, alice_key) == ["smart"]
    # Another key of the same user has only the user's list.
    _, other = ProxyKey.issue(alice, label="ci")
    inproc.sync()
    assert chat(inproc, other, "fast")
    assert listed(inproc, other) == ["fast", "smart"]


def test_any_group_with_a_list_allows_and_groups_without_one_take_no_part(inproc, alice, alice_key, routes):
    research, ops, everyone = (Group.objects.create(name=n) for n in ("research", "ops", "everyone"))
    GroupPolicy.objects.create(group=research, allowed_models=["fast"])
    GroupPolicy.objects.create(group=ops, allowed_models=["smart"])
    GroupPolicy.objects.create(group=everyone, budget_usd=100)  # a policy, but no list
    alice.groups.add(research, everyone)
    inproc.sync()
    assert chat(inproc, alice_key, "fast")
    assert refused(inproc, alice_key, "smart") == "Model 'smart' is not allowed for group 'research' (allowed: fast)"
    assert listed(inproc, alice_key) == ["fast"]

    alice.groups.add(ops)  # membership alone changes what the key may do, on the next request
    inproc.sync()
    assert chat(inproc, alice_key, "smart")
    assert "groups 'research', 'ops'" in refused(inproc, alice_key, "local")
    assert listed(inproc, alice_key) == ["fast", "smart"]

    alice.groups.remove(research, ops)
    inproc.sync()
    assert chat(inproc, alice_key, "local")  # only a group without a list is left: no restriction


def test_emptying_a_list_lifts_the_restriction_live(inproc, alice, alice_key, routes):
    policy = KeyPolicy.objects.create(key=key_of(alice), allowed_models=["fast"])
    inproc.sync()
    refused(inproc, alice_key, "smart")
    policy.allowed_models = []
    policy.save()
    inproc.sync()
    assert chat(inproc, alice_key, "smart")


@pytest.mark.e2e
def test_refusals_are_403_in_each_client_dialect(proxy, alice, alice_key, routes):
    KeyPolicy.objects.create(key=key_of(alice), allowed_models=["fast"])
    proxy.sync()
    expected = "Model 'smart' is not allowed for key 'laptop' (allowed: fast)"

    with pytest.raises(anthropic.PermissionDeniedError) as anthropic_caught:
        anthropic_client(proxy, alice_key).messages.create(
            model="smart", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert anthropic_caught.value.status_code == 403
    assert anthropic_caught.value.body == {"type": "error", "error": {"type": "permission_error", "message": expected}}

    with pytest.raises(openai.PermissionDeniedError) as chat_caught:
        chat(proxy, alice_key, "smart")
    assert chat_caught.value.body == {"message": expected, "type": "permission_error", "param": "model", "code": None}

    with pytest.raises(openai.PermissionDeniedError) as responses_caught:
        openai_client(proxy, alice_key).responses.create(model="smart", input="hi")
    assert responses_caught.value.body["message"] == expected

    gemini = gemini_client(proxy, alice_key)
    with pytest.raises(genai_errors.ClientError) as gemini_caught:
        gemini.models.generate_content(model="smart", contents="hi")
    assert gemini_caught.value.code == 403
    assert gemini_caught.value.status == "PERMISSION_DENIED"
    assert gemini_caught.value.message == expected

    # Token counting names a model too.
    counting = httpx.post(
        proxy.url + "/v1/messages/count_tokens",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
        json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert counting.status_code == 403
    assert counting.json()["error"]["type"] == "permission_error"

    # Over the Responses WebSocket: an error event, and the connection stays usable.
    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "smart", "input": "hi"}))
        event = json.loads(ws.recv())
        assert (event["type"], event["status"]) == ("error", 403)
        assert event["error"]["message"] == expected
        ws.send(json.dumps({"type": "response.create", "model": "fast", "input": "hi"}))
        while (event := json.loads(ws.recv()))["type"] != "response.completed":
            assert event["type"] != "error", event


def test_model_listings_of_every_dialect_show_only_allowed_models(inproc, alice, alice_key, routes):
    UserPolicy.objects.create(user=alice, allowed_models=["smart", "loc*"])
    inproc.sync()
    assert listed(inproc, alice_key) == ["local", "smart"]
    assert [m.id for m in anthropic_client(inproc, alice_key).models.list().data] == ["local", "smart"]
    gemini = gemini_client(inproc, alice_key)
    assert [m.name for m in gemini.models.list()] == ["models/local", "models/smart"]

    headers = {"authorization": f"Bearer {alice_key}"}
    assert http(inproc).get(inproc.url + "/openai/v1/models/smart", headers=headers).json()["id"] == "smart"
    one = http(inproc).get(inproc.url + "/openai/v1/models/fast", headers=headers)
    assert one.status_code == 403
    assert one.json()["error"]["type"] == "permission_error"
    gemini_one = http(inproc).get(inproc.url + "/v1beta/models/fast", headers={"x-goog-api-key": alice_key})
    assert (gemini_one.status_code, gemini_one.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
