"""Token counting answers in every client API, for every upstream: its own count, or a marked estimate.

The proxy runs in-process (tests/inprocess.py): counting is the pipeline's work, nothing here depends on a server.
"""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import add_route
from tests.inprocess import (
    InProcessProxy,
    http,
    passwordless_alice,  # noqa: F401  (`alice` without a password: nobody logs in here)
)

BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}
TOOLS = [{"name": "Bash", "description": "Run a shell command " * 20, "input_schema": {"type": "object"}}]


def count_anthropic(proxy: InProcessProxy, key, **body):
    return http(proxy).post(
        proxy.url + "/v1/messages/count_tokens?beta=true",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "m", "messages": [{"role": "user", "content": "Hello there"}], **body},
    )


@pytest.mark.parametrize(
    ("upstream_format", "counted_by_upstream", "upstream_path"),
    [
        ("anthropic", True, "/v1/messages/count_tokens"),
        ("gemini", True, "/v1beta/models/real-model:countTokens"),
        ("openai-responses", True, "/v1/responses/input_tokens"),
        ("openai-chat", False, None),
    ],
)
def test_anthropic_count_tokens_for_every_upstream(
    inproc, alice_key, upstream_format, counted_by_upstream, upstream_path
):
    with inproc.upstream(upstream_format) as fake:
        add_route("up", upstream_format, fake.url + BASE_PATH[upstream_format], alias="m", model="real-model")
        inproc.sync()
        response = count_anthropic(inproc, alice_key)
        assert response.status_code == 200, response.text
        assert response.json()["input_tokens"] > 0
        if counted_by_upstream:
            assert fake.requests[-1].path == upstream_path
            assert "x-llmproxy-estimated" not in response.headers
        else:
            assert fake.request_count == 0
            assert response.headers["x-llmproxy-estimated"] == "true"


def test_the_estimate_counts_system_and_tools(inproc, alice_key):
    with inproc.upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m")
        inproc.sync()
        bare = count_anthropic(inproc, alice_key).json()["input_tokens"]
        with_tools = count_anthropic(inproc, alice_key, system="You are helpful. " * 50, tools=TOOLS).json()
        assert with_tools["input_tokens"] > bare + 300


def test_gemini_and_responses_clients_can_count_against_other_upstreams(inproc, alice_key):
    with inproc.upstream("anthropic") as fake:
        add_route("up", "anthropic", fake.url, alias="m", model="real-model")
        inproc.sync()
        client = genai.Client(
            api_key=alice_key, http_options=genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
        )
        assert client.models.count_tokens(model="m", contents="How many tokens is this?").total_tokens > 0
        assert fake.requests[-1].path == "/v1/messages/count_tokens"

        response = http(inproc).post(
            inproc.url + "/v1/responses/input_tokens",
            headers={"authorization": f"Bearer {alice_key}"},
            json={"model": "m", "input": "How many tokens is this?"},
        )
        assert response.status_code == 200
        assert response.json()["object"] == "response.input_tokens"
        assert response.json()["input_tokens"] > 0


def test_an_upstream_that_cannot_count_gets_an_estimate_instead_of_an_error(inproc, alice_key):
    add_route("down", "anthropic", "http://127.0.0.1:9", alias="m")
    inproc.sync()
    client = genai.Client(
        api_key=alice_key, http_options=genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
    )
    assert client.models.count_tokens(model="m", contents="Hello").total_tokens > 0
