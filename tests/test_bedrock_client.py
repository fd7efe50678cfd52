"""Bedrock as a client dialect (issue 14): boto3's bedrock-runtime client, pointed at the proxy with the proxy key as
its Bedrock API key, reaches upstreams of every format through converse, converse_stream, invoke_model and
invoke_model_with_response_stream; errors come back in Bedrock's shape and streams in AWS's event-stream framing,
which boto3 itself decodes.

boto3 sends a bearer token only over HTTPS (production reaches the proxy through TLS); these tests talk to it
over loopback HTTP, so they lift that one client-side check."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from routing.models import ModelAlias, Upstream
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, ToolCall, Usage
from usage.models import LedgerEntry

pytestmark = pytest.mark.e2e

BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}


@pytest.fixture
def runtime(proxy, alice_key, monkeypatch) -> Iterator:
    """A bedrock-runtime client of boto3 for the live proxy, authenticated with alice's proxy key."""

    def bearer_over_loopback(self, request):  # botocore's BearerAuth, less its https-only check
        request.headers["Authorization"] = f"Bearer {self.auth_token.token}"

    monkeypatch.setattr(botocore.auth.BearerAuth, "add_auth", bearer_over_loopback)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", alice_key)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = Config(retries={"total_max_attempts": 1}, read_timeout=30)
    yield boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=proxy.url, config=config)


def route(fmt: str, url: str, alias: str = "team-model") -> None:
    upstream = Upstream.objects.create(name=f"up-{fmt}", format=fmt, base_url=url + BASE_PATH[fmt])
    ModelAlias.objects.create(name=alias, upstream=upstream, upstream_model="real-model")


@pytest.mark.parametrize("fmt", ["anthropic", "openai-chat", "openai-responses", "gemini"])
def test_converse_and_its_stream_reach_every_upstream_format(proxy, runtime, fmt):
    with fake_upstream(fmt) as upstream:
        route(fmt, upstream.url)
        proxy.sync()
        usage = Usage(input=40, output=9)
        upstream.script(
            Reply(text="Hello from the upstream", usage=usage),
            Reply(text="Streamed hello", usage=usage),
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        )
        messages = [{"role": "user", "content": [{"text": "Hi"}]}]
        answer = runtime.converse(modelId="team-model", messages=messages, inferenceConfig={"maxTokens": 100})
        assert answer["output"]["message"]["content"][0]["text"] == "Hello from the upstream"
        assert answer["stopReason"] == "end_turn"
        assert answer["usage"]["outputTokens"] == 9

        streamed = runtime.converse_stream(modelId="team-model", messages=messages)
        events = list(streamed["stream"])
        text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
        assert text == "Streamed hello"
        assert events[0] == {"messageStart": {"role": "assistant"}}
        assert any("messageStop" in e for e in events) and "metadata" in events[-1]

        tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
        called = runtime.converse(modelId="team-model", messages=messages, toolConfig=tools)
        assert called["stopReason"] == "tool_use"
        assert called["output"]["message"]["content"][-1]["toolUse"]["input"] == {"city": "Paris"}
    proxy.drain()
    rows = LedgerEntry.objects.filter(upstream=f"up-{fmt}")
    assert rows.count() == 3 and set(rows.values_list("dialect", flat=True)) == {"bedrock"}


def test_invoke_model_with_the_anthropic_body_passes_through_to_anthropic(proxy, runtime):
    with fake_upstream("anthropic") as upstream:
        route("anthropic", upstream.url)
        proxy.sync()
        upstream.script(Reply(text="Invoked"), Reply(text="Invoked and streamed", reasoning="hmm"))
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "anthropic_beta": ["context-1m-2025-08-07"],
            "max_tokens": 2048,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        answer = runtime.invoke_model(modelId="team-model", body=json.dumps(body))
        message = json.loads(answer["body"].read())
        assert message["type"] == "message" and message["content"][0]["text"] == "Invoked"
        thinking = {**body, "thinking": {"type": "enabled", "budget_tokens": 1024}}
        streamed = runtime.invoke_model_with_response_stream(modelId="team-model", body=json.dumps(thinking))
        events = [json.loads(part["chunk"]["bytes"]) for part in streamed["body"]]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
        assert text == "Invoked and streamed"
        first, second = upstream.requests
        assert first.json["model"] == "real-model" and "anthropic_version" not in first.json
        assert first.headers["anthropic-beta"] == "context-1m-2025-08-07"
        assert second.json["stream"] is True and second.json["thinking"]["budget_tokens"] == 1024


def test_invoke_model_reaches_an_openai_upstream_translated(proxy, runtime):
    with fake_upstream("openai-chat") as upstream:
        route("openai-chat", upstream.url)
        proxy.sync()
        upstream.script(Reply(text="Translated"))
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        streamed = runtime.invoke_model_with_response_stream(modelId="team-model", body=json.dumps(body))
        events = [json.loads(part["chunk"]["bytes"]) for part in streamed["body"]]
        text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
        assert text == "Translated"


def test_errors_come_back_in_bedrocks_shape(proxy, runtime, alice_key):
    with fake_upstream("openai-chat") as upstream:
        route("openai-chat", upstream.url)
        proxy.sync()
        messages = [{"role": "user", "content": [{"text": "Hi"}]}]
        with pytest.raises(ClientError) as unknown:
            runtime.converse(modelId="no-such-model", messages=messages)
        assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

        upstream.script(Reply(error=Failure(429, "Rate limit reached")))
        with pytest.raises(ClientError) as limited:
            runtime.converse(modelId="team-model", messages=messages)
        assert limited.value.response["Error"]["Code"] == "ThrottlingException"
        assert "Rate limit reached" in limited.value.response["Error"]["Message"]

        upstream.script(Reply(text="half an answer", stream_error=Failure(500, "upstream broke")))
        streamed = runtime.converse_stream(modelId="team-model", messages=messages)
        with pytest.raises(Exception, match="upstream broke"):
            list(streamed["stream"])

    # Signed with AWS keys instead of the proxy key: told what to send.
    signed = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=proxy.url,
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(signature_version="v4", retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as refused:
        signed.converse(modelId="team-model", messages=messages)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert "send your proxy key as a Bedrock API key" in refused.value.response["Error"]["Message"]
