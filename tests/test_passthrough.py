"""Same API on both sides: each official SDK through the proxy to a fake upstream of its own format.

Most tests run the proxy in-process (tests/inprocess.py): what goes upstream and what comes back is the
pipeline's work. Through a real daphne stay the ones where the server matters: a stream relayed as it arrives
(flushing, timing), a client disconnect cancelling the upstream request (a real socket closing), and the upstream
timeout (the production transport's read timeout).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from routing.models import ModelAlias, Upstream
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, ToolCall, Usage
from tests.inprocess import (
    Proxy,
    http,
    passwordless_alice,  # noqa: F401  (`alice` without a password: nobody logs in here)
    sdk_http_client,
)

UPSTREAM_KEY = "upstream-secret-key"
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}


@pytest.fixture
def upstream(request) -> Iterator:
    """A fake upstream of the test's `provider` behind alias `m` → upstream model `real-model`: in-process for a
    test that runs the proxy in-process, else a real server."""
    provider = request.param
    if "inproc" in request.fixturenames:
        fake_context = request.getfixturevalue("inproc").upstream(provider, api_key=UPSTREAM_KEY)
    else:
        fake_context = fake_upstream(provider, api_key=UPSTREAM_KEY)
    with fake_context as fake:
        upstream = add_route("up", provider, fake.url + BASE_PATH[provider], alias="m", model="real-model")
        upstream.set_api_key(UPSTREAM_KEY)
        upstream.save()
        yield fake


def providers(*names: str):
    return pytest.mark.parametrize("upstream", names, indirect=True)


def anthropic_client(proxy: Proxy, key: str, path: str = "") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=key, base_url=proxy.url + path, max_retries=0, http_client=sdk_http_client(proxy)
    )


def openai_client(proxy: Proxy, key: str, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=proxy.url + path, max_retries=0, http_client=sdk_http_client(proxy))


def gemini_client(proxy: Proxy, key: str, path: str = "", **options: str) -> genai.Client:
    http_options = genai_types.HttpOptions(base_url=proxy.url + path, httpx_client=sdk_http_client(proxy), **options)
    return genai.Client(api_key=key, http_options=http_options)


@providers("anthropic")
def test_anthropic_messages(inproc, alice_key, upstream):
    upstream.script(Reply(text="Hi there", usage=Usage(input=20, output=5, cache_read=4)))
    inproc.sync()
    message = anthropic_client(inproc, alice_key).messages.create(
        model="m", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text == "Hi there"
    assert message.model == "real-model"  # pass-through: the upstream's own answer
    assert message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == 4

    sent = upstream.requests[-1]
    assert sent.json["model"] == "real-model"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert alice_key not in str(dict(sent.headers))


@providers("anthropic")
def test_anthropic_stream_with_parallel_tools(inproc, alice_key, upstream):
    calls = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {"tz": "CET"})]
    upstream.script(Reply(text="Let me check.", tool_calls=calls, chunks=4))
    inproc.sync()
    with anthropic_client(inproc, alice_key).messages.stream(
        model="m", max_tokens=50, messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tools = [block for block in final.content if block.type == "tool_use"]
    assert [(t.name, t.input) for t in tools] == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


@providers("anthropic")
def test_anthropic_headers_and_unknown_fields_are_preserved(inproc, alice_key, upstream):
    upstream.handler.strict = False
    inproc.sync()
    response = http(inproc).post(
        inproc.url + "/v1/messages?beta=true",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01", "anthropic-beta": "context-1m-2025-08-07"},
        json={
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}],
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        },
    )
    assert response.status_code == 200
    sent = upstream.requests[-1]
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["context_management"] == {"edits": [{"type": "clear_thinking_20251015"}]}
    assert response.headers["x-llmproxy-upstream"] == "up/real-model"


@providers("openai-chat")
def test_chat_completions(inproc, alice_key, upstream):
    upstream.script(Reply(text="Bonjour", usage=Usage(input=30, output=7, cache_read=10)))
    inproc.sync()
    completion = openai_client(inproc, alice_key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hello"}]
    )
    assert completion.choices[0].message.content == "Bonjour"
    assert completion.usage.prompt_tokens == 30
    assert completion.usage.prompt_tokens_details.cached_tokens == 10
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


@providers("openai-chat")
def test_chat_stream_with_parallel_tools(inproc, alice_key, upstream):
    calls = [ToolCall("a", {"x": 1}), ToolCall("b", {"y": [1, 2]})]
    upstream.script(Reply(tool_calls=calls, chunks=3))
    inproc.sync()
    stream = openai_client(inproc, alice_key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True, stream_options={"include_usage": True}
    )
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                names[call.index] = names.get(call.index, "") + (call.function.name or "")
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert names == {0: "a", 1: "b"}
    assert {i: json.loads(a) for i, a in arguments.items()} == {0: {"x": 1}, 1: {"y": [1, 2]}}
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0


@providers("openai-responses")
def test_responses(inproc, alice_key, upstream):
    upstream.script(Reply(text="Réponse", usage=Usage(input=11, output=3, reasoning=1)))
    inproc.sync()
    response = openai_client(inproc, alice_key).responses.create(model="m", input="Hello")
    assert response.output_text == "Réponse"
    assert response.usage.output_tokens_details.reasoning_tokens == 1
    assert upstream.requests[-1].json["model"] == "real-model"


@providers("openai-responses")
def test_responses_stream(inproc, alice_key, upstream):
    upstream.script(Reply(text="streamed words here", tool_calls=[ToolCall("shell", {"cmd": "ls"})], chunks=3))
    inproc.sync()
    events = list(openai_client(inproc, alice_key).responses.create(model="m", input="Hello", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in types
    completed = events[-1].response
    assert completed.output_text == "streamed words here"
    call = next(item for item in completed.output if item.type == "function_call")
    assert (call.name, json.loads(call.arguments)) == ("shell", {"cmd": "ls"})


@providers("gemini")
def test_gemini_generate_content(inproc, alice_key, upstream):
    upstream.script(Reply(text="Hallo", usage=Usage(input=9, output=2)))
    inproc.sync()
    client = gemini_client(inproc, alice_key)  # kept in a variable: a collected Client closes its connection
    response = client.models.generate_content(model="m", contents="Hello")
    assert response.text == "Hallo"
    assert response.usage_metadata.candidates_token_count == 2
    sent = upstream.requests[-1]
    assert sent.path.endswith("/models/real-model:generateContent")
    assert sent.headers["x-goog-api-key"] == UPSTREAM_KEY


@providers("gemini")
def test_gemini_stream_on_v1beta(inproc, alice_key, upstream):
    upstream.script(Reply(text="one two three four", chunks=4))
    inproc.sync()
    client = gemini_client(inproc, alice_key, api_version="v1beta")
    pieces = [chunk.text for chunk in client.models.generate_content_stream(model="m", contents="Count")]
    assert "".join(p for p in pieces if p) == "one two three four"
    assert len(pieces) >= 4
    sent = upstream.requests[-1]
    assert (sent.path, sent.query) == ("/v1beta/models/real-model:streamGenerateContent", {"alt": "sse"})


@providers("anthropic")
def test_upstream_errors_keep_their_status_and_kind(inproc, alice_key, upstream):
    upstream.script(
        Reply(error=Failure(529, "Overloaded", type="overloaded_error")),
        Reply(error=Failure(429, "Slow down", type="rate_limit_error", retry_after=7)),
    )
    inproc.sync()
    client = anthropic_client(inproc, alice_key)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "7"


@providers("gemini")
def test_gemini_upstream_error_reaches_the_sdk(inproc, alice_key, upstream):
    upstream.script(Reply(error=Failure(400, "bad schema")))
    inproc.sync()
    client = gemini_client(inproc, alice_key)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="m", contents="x")
    assert caught.value.code == 400
    assert "bad schema" in str(caught.value)


def test_unreachable_upstream_is_502_in_the_dialect(inproc, alice_key):
    add_route("down", "openai-chat", "http://127.0.0.1:9/v1", alias="m")
    inproc.sync()
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(inproc, alice_key).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert "unreachable" in caught.value.message


@pytest.mark.e2e
@providers("openai-chat")
def test_upstream_timeout_is_504(proxy, alice_key, upstream):
    Upstream.objects.filter(name="up").update(timeout=0.5)
    Upstream.objects.get(name="up").save()  # save() changes the config token
    upstream.script(Reply(hang=True))
    proxy.sync()
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(proxy, alice_key).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 504


@pytest.mark.e2e
@providers("anthropic")
def test_stream_is_relayed_as_it_arrives(proxy, alice_key, upstream):
    upstream.script(Reply(text="a b c d e f", chunks=6, chunk_delay=0.25))
    proxy.sync()
    started = time.monotonic()
    arrivals = []
    with httpx.stream(
        "POST",
        proxy.url + "/v1/messages",
        headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
        json={"model": "m", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 6
    # Buffering would deliver every delta at the end; relayed, they arrive about 0.25 s apart.
    assert arrivals[-1] - arrivals[0] > 0.8


@pytest.mark.e2e
@providers("openai-chat")
def test_client_disconnect_cancels_the_upstream_request(proxy, alice_key, upstream):
    upstream.script(Reply(text="x " * 50, chunks=50, chunk_delay=0.2))
    proxy.sync()
    with httpx.stream(
        "POST",
        proxy.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {alice_key}"},
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    # 50 frames would take 10 s; the upstream connection must close within a second or two.
    assert upstream.wait_for_disconnects(1, timeout=3)


@providers("openai-chat")
def test_alias_edits_apply_to_the_next_request(inproc, alice_key, upstream):
    inproc.sync()
    client = openai_client(inproc, alice_key)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert upstream.requests[-1].json["model"] == "real-model"

    alias = ModelAlias.objects.get(name="m")
    alias.upstream_model = "other-model"
    alias.save()
    inproc.sync()
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert upstream.requests[-1].json["model"] == "other-model"

    alias.enabled = False
    alias.save()
    inproc.sync()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


@providers("openai-chat")
def test_direct_upstream_model_names(inproc, alice_key, upstream):
    inproc.sync()
    openai_client(inproc, alice_key).chat.completions.create(
        model="up/gpt-direct", messages=[{"role": "user", "content": "x"}]
    )
    assert upstream.requests[-1].json["model"] == "gpt-direct"


def test_forwarded_client_key_reaches_an_upstream_that_allows_it(inproc):
    with inproc.upstream("openai-chat", api_key="client-own-provider-key") as fake:
        add_route("byok", "openai-chat", fake.url + "/v1", alias="m", forward_client_key=True)
        inproc.sync()
        client = openai_client(inproc, "client-own-provider-key")
        completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert completion.choices[0].message.content
        assert fake.requests[-1].headers["authorization"] == "Bearer client-own-provider-key"


def test_azure_openai_deployment_url_key_header_and_api_version(inproc, alice_key):
    """Azure OpenAI: the deployment is in the URL, the key in `api-key`, the API version in the query."""
    with inproc.upstream("openai-chat", strict=False) as fake:
        add_route(
            "azure",
            "openai-chat",
            fake.url + "/openai/deployments/{model}",
            alias="m",
            model="gpt-4o-prod",
            auth_header="api-key",
            query_params={"api-version": "2025-04-01-preview"},
        )
        upstream = Upstream.objects.get(name="azure")
        upstream.set_api_key("azure-secret")
        upstream.save()
        inproc.sync()
        # The fake answers only /v1/chat/completions, so look at what was asked of it.
        http(inproc).post(
            inproc.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {alice_key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        sent = fake.requests[-1]
        assert sent.path == "/openai/deployments/gpt-4o-prod/chat/completions"
        assert sent.query == {"api-version": "2025-04-01-preview"}
        assert sent.headers["api-key"] == "azure-secret"
        assert "authorization" not in sent.headers


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_every_dialect_is_served_under_its_prefix(inproc, alice_key, upstream):
    """`/anthropic`, `/openai` and `/gemini` prefixes let a client be pointed without ambiguity."""
    inproc.sync()
    anthropic_prefixed = anthropic_client(inproc, alice_key, "/anthropic")
    message = anthropic_prefixed.messages.create(model="m", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert message.content[0].text
    assert [m.id for m in anthropic_prefixed.models.list().data] == ["m"]

    openai_prefixed = openai_client(inproc, alice_key, "/openai/v1")
    completion = openai_prefixed.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content
    assert openai_prefixed.responses.create(model="m", input="x").output_text
    assert [m.id for m in openai_prefixed.models.list()] == ["m"]

    gemini_prefixed = gemini_client(inproc, alice_key, "/gemini")
    assert gemini_prefixed.models.generate_content(model="m", contents="x").text
    assert [m.name for m in gemini_prefixed.models.list()] == ["models/m"]
