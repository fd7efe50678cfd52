"""AWS Bedrock upstreams (issue 14): Claude models through InvokeModel with the Messages body, other models through
Converse, streams in AWS's event-stream framing, every request SigV4-signed (or carrying a Bedrock API key).
Through the official SDKs against a fake Bedrock that recomputes each signature with botocore."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from routing.config.configfile import ConfigFileError, export_config, import_config
from routing.models import ModelAlias, Upstream
from tests.fakes.bedrock import BedrockFake
from tests.fakes.script import Failure, Reply, ToolCall, Usage
from tests.fakes.server import FakeUpstream
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from usage.models import LedgerEntry

ACCESS_KEY = ("AKIAFAKEFORTESTS0001", "fake/secret/key/for/the/bedrock/tests0001")
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def aws(monkeypatch) -> Iterator[FakeUpstream[BedrockFake]]:
    monkeypatch.setenv("TEST_AWS_ACCESS_KEY_ID", ACCESS_KEY[0])
    monkeypatch.setenv("TEST_AWS_SECRET_ACCESS_KEY", ACCESS_KEY[1])
    with FakeUpstream(BedrockFake(region="us-west-2", access_key=ACCESS_KEY)) as server:
        yield server


def configure(server: FakeUpstream[BedrockFake], **credentials: str) -> None:
    credentials = credentials or {
        "aws_access_key_id_env": "TEST_AWS_ACCESS_KEY_ID",
        "aws_secret_access_key_env": "TEST_AWS_SECRET_ACCESS_KEY",
    }
    upstream = Upstream.objects.create(
        name="br", format="bedrock", base_url=server.url, location="us-west-2", **credentials
    )
    ModelAlias.objects.create(name="claude-br", upstream=upstream, upstream_model=CLAUDE)
    ModelAlias.objects.create(name="nova", upstream=upstream, upstream_model=NOVA)


def clients(inproc: InProcessProxy, key: str) -> tuple[anthropic.Anthropic, openai.OpenAI, genai.Client]:
    claude = anthropic.Anthropic(api_key=key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
    oai = openai.OpenAI(api_key=key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
    options = genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
    return claude, oai, genai.Client(api_key=key, http_options=options)


def test_claude_through_invoke_model_with_its_body_passed_through(inproc, alice_key, aws):
    configure(aws)
    inproc.sync()
    fake = aws.handler
    fake.anthropic.script(Reply(text="claude on bedrock"), Reply(text="streamed", reasoning="thinking it over"))
    claude, _, _ = clients(inproc, alice_key)
    answer = claude.messages.create(
        model="claude-br", max_tokens=50, messages=HI, extra_headers={"anthropic-beta": "context-1m-2025-08-07"}
    )
    assert answer.content[0].text == "claude on bedrock"  # type: ignore[union-attr]
    with claude.messages.stream(
        model="claude-br", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 1024}, messages=HI
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert stream.get_final_text() == "streamed"
    first, second = aws.requests
    assert first.path == f"/model/{CLAUDE}/invoke"
    assert second.path == f"/model/{CLAUDE}/invoke-with-response-stream"
    assert first.json["anthropic_version"] == "bedrock-2023-05-31" and "model" not in first.json
    assert first.json["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert second.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}  # passed through untouched
    assert all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKE") for r in aws.requests)
    assert fake.refused == []
    inproc.drain()
    rows = LedgerEntry.objects.filter(upstream="br").order_by("started_at", "id")
    assert [(r.upstream_model, r.outcome, r.stream) for r in rows] == [(CLAUDE, "ok", False), (CLAUDE, "ok", True)]
    assert all(r.input_tokens is not None and r.output_tokens for r in rows)


def test_other_models_through_converse_from_every_sdk(inproc, alice_key, aws):
    configure(aws)
    inproc.sync()
    usage = Usage(input=100, output=20, cache_read=60, cache_write=10)
    aws.handler.script(
        Reply(text="nova answers", usage=usage),
        Reply(text="nova streams", usage=usage),
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Reply(text="for gemini"),
    )
    claude, oai, gemini = clients(inproc, alice_key)
    assert oai.chat.completions.create(model="nova", messages=HI).choices[0].message.content == "nova answers"  # type: ignore[arg-type]
    chunks = oai.chat.completions.create(model="nova", messages=HI, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "nova streams"
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    with claude.messages.stream(model="nova", max_tokens=50, messages=HI, tools=[tool]) as stream:  # type: ignore[list-item]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert gemini.models.generate_content(model="nova", contents="Hi").text == "for gemini"
    paths = [r.path.rsplit("/", 1)[1] for r in aws.requests]
    assert paths == ["converse", "converse-stream", "converse-stream", "converse"]
    assert aws.requests[2].json["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert aws.handler.refused == []
    inproc.drain()
    first = LedgerEntry.objects.filter(upstream="br").order_by("started_at", "id").first()
    assert first is not None
    assert (first.input_tokens, first.cache_read_tokens, first.cache_write_tokens, first.output_tokens) == (
        30,
        60,
        10,
        20,
    )


def test_a_bedrock_api_key_is_sent_as_a_bearer_token(inproc, alice_key, monkeypatch):
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk=")
    with FakeUpstream(BedrockFake(region="us-west-2", api_key="ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk=")) as server:
        configure(server, api_key_env="AWS_BEARER_TOKEN_BEDROCK")
        inproc.sync()
        _, oai, _ = clients(inproc, alice_key)
        assert oai.chat.completions.create(model="nova", messages=HI).choices[0].message.content  # type: ignore[arg-type]
        assert server.requests[0].headers["authorization"] == "Bearer ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk="


def test_a_wrong_secret_is_refused_by_the_signature_check(inproc, alice_key, aws, monkeypatch):
    monkeypatch.setenv("TEST_AWS_SECRET_ACCESS_KEY", "not-the-secret")
    configure(aws)
    inproc.sync()
    claude, _, _ = clients(inproc, alice_key)
    with pytest.raises(anthropic.PermissionDeniedError, match="signature"):
        claude.messages.create(model="nova", max_tokens=20, messages=HI)
    assert "signature we calculated does not match" in aws.handler.refused[0]


def test_bedrock_errors_and_stream_exceptions_reach_the_client_in_its_dialect(inproc, alice_key, aws):
    configure(aws)
    inproc.sync()
    aws.handler.script(
        Reply(error=Failure(429, "Too many requests, please wait before trying again.")),
        Reply(text="half an answer", stream_error=Failure(500, "The model stream failed")),
    )
    _, oai, _ = clients(inproc, alice_key)
    with pytest.raises(openai.RateLimitError, match="Too many requests"):
        oai.chat.completions.create(model="nova", messages=HI)  # type: ignore[arg-type]
    chunks = oai.chat.completions.create(model="nova", messages=HI, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="The model stream failed"):
        for _ in chunks:
            pass
    inproc.drain()
    outcomes = list(
        LedgerEntry.objects.filter(upstream="br").order_by("started_at", "id").values_list("status", flat=True)
    )
    assert outcomes[0] == 429 and outcomes[1] >= 500


@pytest.mark.django_db
def test_bedrock_upstreams_in_the_config_file():
    text = """
upstreams:
  - name: bedrock
    format: bedrock
    region: us-east-1
    aws_access_key_id_env: AWS_ACCESS_KEY_ID
    aws_secret_access_key_env: AWS_SECRET_ACCESS_KEY
  - {name: bedrock-key, format: bedrock, region: eu-west-1, api_key_env: AWS_BEARER_TOKEN_BEDROCK}
aliases:
  - {name: sonnet, upstream: bedrock, model: us.anthropic.claude-sonnet-4-5-20250929-v1:0}
"""
    import_config(text)
    upstream = Upstream.objects.get(name="bedrock")
    assert (upstream.location, upstream.aws_access_key_id_env, upstream.base_url) == (
        "us-east-1",
        "AWS_ACCESS_KEY_ID",
        "",
    )
    exported = export_config()
    assert "region: us-east-1" in exported and "region: eu-west-1" in exported
    assert not import_config(exported).updated
    with pytest.raises(ConfigFileError, match="'region' is required"):
        import_config("upstreams:\n  - {name: b2, format: bedrock}\n")
    with pytest.raises(ConfigFileError, match="name both"):
        import_config(
            "upstreams:\n  - {name: b2, format: bedrock, region: r, aws_access_key_id_env: AWS_ACCESS_KEY_ID}\n"
        )


@pytest.mark.django_db(transaction=True)
def test_the_upstream_check_signs_its_request_to_bedrock(aws, monkeypatch):
    from tests.test_upstream_check import run_command

    configure(aws)
    output, error = run_command("br")
    assert error is None, output
    assert output.startswith("OK   br: ") and "one-token request" in output
    assert aws.handler.refused == []

    monkeypatch.setenv("TEST_AWS_SECRET_ACCESS_KEY", "not-the-secret")
    output, error = run_command("br")
    assert error is not None and "FAIL br" in output and "signature" in output
    assert "not-the-secret" not in output


def test_an_invoke_stream_exception_becomes_the_anthropic_error_event():
    import json as jsonlib

    from routing.upstream.bedrock import InvokeStreamParser
    from translation.bedrock.eventstream import EventStreamParser, encode_message

    chunk = encode_message("chunk", jsonlib.dumps({"bytes": "eyJ0eXBlIjoicGluZyJ9"}).encode())  # {"type":"ping"}
    throttled = encode_message("throttlingException", b'{"message":"Too many tokens"}', "exception")
    events = InvokeStreamParser(EventStreamParser()).feed(chunk + throttled)
    assert [(e.event, jsonlib.loads(e.data)) for e in events] == [
        ("ping", {"type": "ping"}),
        ("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "Too many tokens"}}),
    ]
