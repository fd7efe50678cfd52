"""Limits a local model needs: a default output cap when the client sends none, and a context window that refuses an
oversized prompt with a 400 in the client's own dialect before anything reaches the upstream.

Set per upstream, per alias (the alias wins), through the official SDKs against in-process fakes."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from routing.config.shaping import Shaping, shape, with_upstream_limits
from routing.models import ModelAlias, Upstream
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from tests.test_responses_ws import create, final, key, live, opened, reload, turn  # noqa: F401  (fixtures)
from translation.dialect import Dialect
from translation.ir import Message, Request, Role, TextPart, TranslationError

LONG_PROMPT = "Please read this carefully. " * 400  # about 2,400 estimated tokens


def openai_client(inproc: InProcessProxy, proxy_key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=proxy_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())


def max_tokens_sent(body: dict) -> int | None:
    return body.get("max_tokens", body.get("max_completion_tokens"))


def local_upstream(fake_url: str, **fields) -> Upstream:
    return add_route("ollama", "openai-chat", fake_url + "/v1", alias="local", model="qwen3", **fields)


def test_an_upstreams_default_cap_reaches_it_when_the_client_sends_none(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url, default_max_tokens=1234)
        inproc.sync()
        client = openai_client(inproc, alice_key)

        # Codex: the Responses API without max_output_tokens, translated to a Chat upstream.
        client.responses.create(model="local", input="Hi")
        assert max_tokens_sent(fake.requests[-1].json) == 1234
        # Chat without max_tokens to a Chat upstream: decoded and re-encoded so the cap is there too.
        client.chat.completions.create(model="local", messages=[{"role": "user", "content": "Hi"}])
        assert max_tokens_sent(fake.requests[-1].json) == 1234
        # A client's own cap stays.
        client.chat.completions.create(model="local", max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
        assert max_tokens_sent(fake.requests[-1].json) == 50
        # Direct routes (UPSTREAM/MODEL) get the upstream's limits too.
        client.chat.completions.create(model="ollama/qwen3", messages=[{"role": "user", "content": "Hi"}])
        assert max_tokens_sent(fake.requests[-1].json) == 1234


def test_an_aliases_default_cap_wins_over_its_upstreams(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url, default_max_tokens=1234)
        ModelAlias.objects.filter(name="local").update(default_max_tokens=321)
        Upstream.objects.get(name="ollama").save()  # update() sends no signal: this reloads the route table
        inproc.sync()
        openai_client(inproc, alice_key).responses.create(model="local", input="Hi")
        assert max_tokens_sent(fake.requests[-1].json) == 321


def test_without_a_default_the_chat_upstream_gets_no_cap(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url)
        inproc.sync()
        openai_client(inproc, alice_key).responses.create(model="local", input="Hi")
        assert max_tokens_sent(fake.requests[-1].json) is None


def test_an_oversized_prompt_is_refused_in_each_clients_dialect_before_the_upstream(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url, context_window=1000)
        inproc.sync()

        with pytest.raises(openai.BadRequestError) as chat:
            openai_client(inproc, alice_key).chat.completions.create(
                model="local", messages=[{"role": "user", "content": LONG_PROMPT}]
            )
        assert chat.value.code == "context_length_exceeded"
        assert "context window is 1000 tokens" in chat.value.message

        with pytest.raises(openai.BadRequestError) as responses:
            openai_client(inproc, alice_key).responses.create(model="local", input=LONG_PROMPT)
        assert "context window is 1000 tokens" in responses.value.message

        claude = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
        with pytest.raises(anthropic.BadRequestError) as messages:
            claude.messages.create(model="local", max_tokens=100, messages=[{"role": "user", "content": LONG_PROMPT}])
        assert messages.value.body["error"]["type"] == "invalid_request_error"
        assert "context window is 1000 tokens" in messages.value.message

        options = genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
        gemini = genai.Client(api_key=alice_key, http_options=options)
        with pytest.raises(genai_errors.ClientError) as generate:
            gemini.models.generate_content(model="local", contents=LONG_PROMPT)
        assert generate.value.code == 400
        assert "context window is 1000 tokens" in str(generate.value.message)

        assert fake.requests == []  # nothing of it reached the model

        # A prompt that fits goes through, its output clamped to what the window leaves.
        openai_client(inproc, alice_key).chat.completions.create(
            model="local", max_tokens=5000, messages=[{"role": "user", "content": "Hi"}]
        )
        assert 0 < max_tokens_sent(fake.requests[-1].json) < 1000


def test_an_aliases_context_window_wins_over_its_upstreams(inproc, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url, context_window=1000)
        ModelAlias.objects.filter(name="local").update(context_window=100_000)
        Upstream.objects.get(name="ollama").save()
        inproc.sync()
        openai_client(inproc, alice_key).chat.completions.create(
            model="local", messages=[{"role": "user", "content": LONG_PROMPT}]
        )
        assert len(fake.requests) == 1


def request(text: str, max_output_tokens: int | None = None) -> Request:
    return Request(model="m", messages=(Message(Role.USER, (TextPart(text),)),), max_output_tokens=max_output_tokens)


def test_shaping_merges_upstream_limits_under_the_aliases():
    merged = with_upstream_limits(Shaping(default_max_tokens=10), Shaping(default_max_tokens=99, context_window=500))
    assert (merged.default_max_tokens, merged.context_window) == (10, 500)
    assert shape(request("hi"), merged, Dialect.OPENAI_CHAT).request.max_output_tokens == 10
    assert shape(request("hi", 7), merged, Dialect.OPENAI_CHAT).request.max_output_tokens == 7
    with pytest.raises(TranslationError) as refused:
        shape(request(LONG_PROMPT), merged, Dialect.OPENAI_CHAT)
    assert refused.value.feature == "context_length_exceeded"


@pytest.fixture
def limited_chat_upstream(transactional_db):
    with fake_upstream("openai-chat", strict=False) as fake:
        local_upstream(fake.url, default_max_tokens=500, context_window=1000)
        ModelAlias.objects.create(name="m", upstream=Upstream.objects.get(name="ollama"), upstream_model="qwen3")
        yield fake


async def test_codex_over_the_responses_websocket_gets_the_same_limits(live, key, limited_chat_upstream):  # noqa: F811
    fake = limited_chat_upstream
    await reload()
    ws = await opened(key)
    final(await turn(ws, create(input="Hi", tools=[], reasoning=None, include=[])))
    assert max_tokens_sent(fake.requests[-1].json) == 500

    refused = await turn(ws, create(input=LONG_PROMPT, tools=[], reasoning=None, include=[]))
    assert refused[-1]["type"] == "error" and refused[-1]["status"] == 400
    assert refused[-1]["error"]["code"] == "context_length_exceeded"
    assert len(fake.requests) == 1
    await ws.disconnect()
