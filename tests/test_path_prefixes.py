"""Operator-defined path prefixes (issue 13): /team-a serves the client APIs beneath it and reaches only its aliases;
the others answer the client API's own 404. Through the official SDKs and the Responses WebSocket, against
in-process fake upstreams; configured in the database and live without a restart."""

from __future__ import annotations

import anthropic
import openai
import pytest
from django.core.exceptions import ValidationError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from routing.dataplane.endpoints import prefix_path_problem, split_prefix
from routing.models import ModelAlias, PathPrefix, Upstream
from tests.fakes.providers import fake_upstream
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from tests.test_responses_ws import connect, create, final, key, live, reload, turn  # noqa: F401  (fixtures)
from usage.models import LedgerEntry

HI = [{"role": "user", "content": "Hi"}]


def configure(fake_url: str) -> None:
    upstream = Upstream.objects.create(name="chat", format="openai-chat", base_url=fake_url + "/v1")
    for name in ("smart", "gpt-4o", "gpt-4.1", "other"):
        ModelAlias.objects.create(name=name, upstream=upstream, upstream_model=f"{name}-upstream")
    PathPrefix.objects.create(path="/team-a", aliases=["smart", "gpt-*"])


def test_prefix_paths_are_checked():
    assert prefix_path_problem("/team-a") is None
    assert prefix_path_problem("/org/team.b_2") is None
    for bad in ("team-a", "/team-a/", "/", "/team a", "/v1", "/admin", "/openai/x"):
        assert prefix_path_problem(bad) is not None, bad
    assert split_prefix("/team-a/v1/messages", ["/team-a"]) == ("/team-a", "/v1/messages")
    assert split_prefix("/org/team/v1beta/models/x:generateContent", ["/org", "/org/team"]) == (
        "/org/team",
        "/v1beta/models/x:generateContent",
    )
    assert split_prefix("/team-a/admin/", ["/team-a"]) is None
    assert split_prefix("/team-ab/v1/messages", ["/team-a"]) is None


@pytest.mark.django_db
def test_the_admin_refuses_a_path_the_proxy_already_serves():
    with pytest.raises(ValidationError):
        PathPrefix(path="/v1", aliases=["smart"]).full_clean()
    PathPrefix(path="/team-a", aliases=["smart", "gpt-*"]).full_clean()


def test_a_prefix_reaches_its_aliases_from_every_sdk_and_only_those(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        configure(fake.url)
        inproc.sync()
        oai = openai.OpenAI(
            api_key=alice_key, base_url=inproc.url + "/team-a/v1", max_retries=0, http_client=inproc.client()
        )
        oai.chat.completions.create(model="smart", messages=HI)
        assert fake.requests[-1].json["model"] == "smart-upstream"
        oai.chat.completions.create(model="gpt-4o", messages=HI)  # through the pattern
        assert fake.requests[-1].json["model"] == "gpt-4o-upstream"
        oai.responses.create(model="gpt-4.1", input="Hi")
        assert fake.requests[-1].json["model"] == "gpt-4.1-upstream"
        with pytest.raises(openai.NotFoundError) as chat_refused:
            oai.chat.completions.create(model="other", messages=HI)
        assert "not configured" in chat_refused.value.message
        with pytest.raises(openai.NotFoundError):
            oai.responses.create(model="other", input="Hi")
        with pytest.raises(openai.NotFoundError):
            oai.chat.completions.create(model="chat/anything", messages=HI)  # nor a direct UPSTREAM/MODEL route
        assert sorted(m.id for m in oai.models.list()) == ["gpt-4.1", "gpt-4o", "smart"]
        with pytest.raises(openai.NotFoundError):
            oai.models.retrieve("other")

        claude = anthropic.Anthropic(
            api_key=alice_key, base_url=inproc.url + "/team-a", max_retries=0, http_client=inproc.client()
        )
        claude.messages.create(model="smart", max_tokens=50, messages=HI)
        assert fake.requests[-1].json["model"] == "smart-upstream"
        with pytest.raises(anthropic.NotFoundError) as messages_refused:
            claude.messages.create(model="other", max_tokens=50, messages=HI)
        assert messages_refused.value.body["error"]["type"] == "not_found_error"

        options = genai_types.HttpOptions(base_url=inproc.url + "/team-a", httpx_client=inproc.client())
        gemini = genai.Client(api_key=alice_key, http_options=options)
        gemini.models.generate_content(model="smart", contents="Hi")
        assert fake.requests[-1].json["model"] == "smart-upstream"
        with pytest.raises(genai_errors.ClientError) as gemini_refused:
            gemini.models.generate_content(model="other", contents="Hi")
        assert gemini_refused.value.code == 404
        assert sorted(m.name.removeprefix("models/") for m in gemini.models.list()) == ["gpt-4.1", "gpt-4o", "smart"]
        assert sorted(m.id for m in claude.models.list()) == ["gpt-4.1", "gpt-4o", "smart"]

        # Without the prefix every alias is reachable as before.
        root = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
        root.chat.completions.create(model="other", messages=HI)
        assert fake.requests[-1].json["model"] == "other-upstream"
        assert len(root.models.list().data) == 4

        inproc.drain()
        endpoints = set(LedgerEntry.objects.filter(outcome="ok").values_list("endpoint", flat=True))
        assert {"/team-a/v1/chat/completions", "/team-a/v1/responses", "/team-a/v1/messages"} <= endpoints


def test_prefixes_are_live_and_an_unknown_one_is_not_found(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        configure(fake.url)
        inproc.sync()
        body = {"model": "smart", "messages": HI}
        headers = {"authorization": f"Bearer {alice_key}"}
        assert inproc.http.post("/team-b/v1/chat/completions", json=body, headers=headers).status_code == 404
        PathPrefix.objects.create(path="/team-b", aliases=["other"])  # as the admin saves it: the token changes
        inproc.sync()
        assert inproc.http.post("/team-b/v1/chat/completions", json=body, headers=headers).status_code == 404
        answered = inproc.http.post("/team-b/v1/chat/completions", json={**body, "model": "other"}, headers=headers)
        assert answered.status_code == 200, answered.text
        prefix = PathPrefix.objects.get(path="/team-b")
        prefix.enabled = False
        prefix.save()
        inproc.sync()
        assert inproc.http.post("/team-b/v1/chat/completions", json=body, headers=headers).status_code == 404
        # The site's own pages are not data-plane paths under a prefix.
        assert inproc.http.get("/team-a/v1").status_code != 500


@pytest.fixture
def prefixed_upstream(transactional_db):
    with fake_upstream("openai-chat", strict=False) as fake:
        configure(fake.url)
        yield fake


async def test_the_responses_websocket_under_a_prefix(live, key, prefixed_upstream):  # noqa: F811
    fake = prefixed_upstream
    await reload()
    ws = await connect(key, path="/team-a/v1/responses")
    connected, _ = await ws.connect()
    assert connected
    frame = create(model="smart", input="Hi", tools=[], reasoning=None, include=[])
    final(await turn(ws, frame))
    assert fake.requests[-1].json["model"] == "smart-upstream"
    refused = await turn(ws, {**frame, "model": "other"})
    assert refused[-1]["type"] == "error" and refused[-1]["status"] == 404
    await ws.disconnect()

    unknown = await connect(key, path="/team-z/v1/responses")
    connected, _ = await unknown.connect()
    assert not connected
