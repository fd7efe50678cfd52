"""Google Vertex AI upstreams (issue 14): Gemini and Claude models through Vertex's own URLs with OAuth access tokens
minted from a service-account key, through the official SDKs, against a fake Vertex that accepts only the tokens
its fake token endpoint issued for the test's service account (and refuses them once expired)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from routing.config.configfile import ConfigFileError, export_config, import_config
from routing.models import ModelAlias, Upstream
from routing.upstream import vertex
from tests.fakes.script import Reply
from tests.fakes.server import FakeUpstream
from tests.fakes.vertex import VertexFake, service_account
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from usage.models import LedgerEntry

PROJECT, LOCATION = "llmproxy-test", "us-east5"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def cloud(monkeypatch) -> Iterator[FakeUpstream[VertexFake]]:
    """The fake Vertex, and an upstream `vx` whose service-account key is in GOOGLE_SERVICE_ACCOUNT_JSON."""
    account, public_key = service_account(PROJECT)
    fake = VertexFake(account, public_key, project=PROJECT, location=LOCATION)
    with FakeUpstream(fake) as server:
        fake.token_url = server.url + "/token"
        monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", json.dumps(account))
        yield server


def configure(server: FakeUpstream[VertexFake]) -> None:
    upstream = Upstream.objects.create(
        name="vx",
        format="vertex",
        base_url=server.url + "/v1",
        project=PROJECT,
        location=LOCATION,
        credentials_env="GOOGLE_SERVICE_ACCOUNT_JSON",
        token_url=server.handler.token_url,
    )
    ModelAlias.objects.create(name="claude-vx", upstream=upstream, upstream_model="claude-sonnet-4-5@20250929")
    ModelAlias.objects.create(name="gemini-vx", upstream=upstream, upstream_model="gemini-2.5-pro")


def test_claude_and_gemini_models_through_vertex_from_every_sdk(inproc, alice_key, cloud):
    configure(cloud)
    inproc.sync()
    fake = cloud.handler
    fake.anthropic.script(Reply(text="claude on vertex"), Reply(text="claude streamed"), Reply(text="for openai"))
    fake.gemini.script(Reply(text="gemini on vertex"), Reply(text="gemini for openai"))
    claude = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
    oai = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
    options = genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
    gemini = genai.Client(api_key=alice_key, http_options=options)

    # Same API on both sides: the Anthropic body goes through, model moved to the URL, version into the body.
    answer = claude.messages.create(model="claude-vx", max_tokens=50, messages=HI)
    assert answer.content[0].text == "claude on vertex"  # type: ignore[union-attr]
    with claude.messages.stream(model="claude-vx", max_tokens=50, messages=HI) as stream:
        assert stream.get_final_text() == "claude streamed"
    assert gemini.models.generate_content(model="gemini-vx", contents="Hi").text == "gemini on vertex"
    # Other APIs are translated for the model's own: OpenAI Chat to Anthropic's, and to Gemini's.
    assert oai.chat.completions.create(model="claude-vx", messages=HI).choices[0].message.content == "for openai"  # type: ignore[arg-type]
    streamed = oai.chat.completions.create(model="gemini-vx", messages=HI, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "gemini for openai"

    paths = [r.path for r in cloud.requests if r.path != "/token"]
    root = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
    assert paths == [
        f"{root}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
        f"{root}/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
        f"{root}/google/models/gemini-2.5-pro:generateContent",
        f"{root}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
        f"{root}/google/models/gemini-2.5-pro:streamGenerateContent",
    ]
    # One token for all of them, minted once, never the key itself on the wire.
    assert [r.path for r in cloud.requests].count("/token") == 1
    assert {r.headers["authorization"] for r in cloud.requests if r.path != "/token"} == {"Bearer ya29.fake-1"}
    assert not any("private_key" in r.body.decode(errors="replace") for r in cloud.requests if r.path != "/token")
    inproc.drain()
    rows = LedgerEntry.objects.filter(upstream="vx").order_by("started_at", "id")
    claude_model, gemini_model = "claude-sonnet-4-5@20250929", "gemini-2.5-pro"
    assert [(r.upstream_model, r.outcome) for r in rows] == [
        (claude_model, "ok"),
        (claude_model, "ok"),
        (gemini_model, "ok"),
        (claude_model, "ok"),
        (gemini_model, "ok"),
    ]
    assert all(r.output_tokens for r in rows)  # usage read from each publisher's own report


def test_an_expiring_token_is_refreshed_before_use(inproc, alice_key, cloud, monkeypatch):
    monkeypatch.setattr(vertex, "REFRESH_MARGIN", 0.5)
    cloud.handler.token_lifetime = 1
    configure(cloud)
    inproc.sync()
    claude = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
    claude.messages.create(model="claude-vx", max_tokens=20, messages=HI)
    time.sleep(1.2)  # the first token has expired at the fake
    claude.messages.create(model="claude-vx", max_tokens=20, messages=HI)
    used = [r.headers["authorization"] for r in cloud.requests if r.path != "/token"]
    assert used == ["Bearer ya29.fake-1", "Bearer ya29.fake-2"]
    assert cloud.handler.refused == []


def test_unusable_credentials_are_a_clear_502(inproc, alice_key, cloud, monkeypatch):
    configure(cloud)
    monkeypatch.delenv("GOOGLE_SERVICE_ACCOUNT_JSON")
    inproc.sync()
    claude = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
    with pytest.raises(anthropic.APIStatusError) as missing:
        claude.messages.create(model="claude-vx", max_tokens=20, messages=HI)
    assert missing.value.status_code == 502
    assert "GOOGLE_SERVICE_ACCOUNT_JSON is not set" in str(missing.value)

    # A key the token endpoint does not know (another account's): refused there, and said so.
    other, _ = service_account(PROJECT)
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", json.dumps(other))
    inproc.sync()
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude.messages.create(model="claude-vx", max_tokens=20, messages=HI)
    assert refused.value.status_code == 502 and "access token" in str(refused.value)
    assert "not signed by the service account's key" in cloud.handler.refused[-1]
    assert not [r for r in cloud.requests if r.path != "/token"]


@pytest.mark.django_db
def test_vertex_upstreams_in_the_config_file():
    text = """
upstreams:
  - name: vertex
    format: vertex
    project: my-project
    location: us-east5
    credentials_env: GOOGLE_SERVICE_ACCOUNT_JSON
aliases:
  - {name: opus, upstream: vertex, model: claude-opus-4-1@20250805}
"""
    import_config(text)
    upstream = Upstream.objects.get(name="vertex")
    assert (upstream.project, upstream.location, upstream.credentials_env, upstream.base_url) == (
        "my-project",
        "us-east5",
        "GOOGLE_SERVICE_ACCOUNT_JSON",
        "",
    )
    exported = export_config()
    assert "project: my-project" in exported and "location: us-east5" in exported
    assert not import_config(exported).updated
    with pytest.raises(ConfigFileError, match="'location' is required for a Vertex AI upstream"):
        import_config("upstreams:\n  - {name: v2, format: vertex, project: p}\n")
    with pytest.raises(ConfigFileError, match="one of the proxy's own settings"):
        import_config(
            "upstreams:\n  - {name: v2, format: vertex, project: p, location: l, credentials_env: SECRET_KEY}\n"
        )


def test_vertex_urls_follow_the_location():
    from translation.operation import Operation

    assert vertex.default_base_url("global") == "https://aiplatform.googleapis.com/v1"
    assert vertex.default_base_url("europe-west1") == "https://europe-west1-aiplatform.googleapis.com/v1"
    base = vertex.default_base_url("us-east5")
    assert vertex.endpoint_url(base, "p", "us-east5", Operation.COUNT_TOKENS, "claude-x", False) == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/"
        "count-tokens:rawPredict"
    )


@pytest.mark.django_db(transaction=True)
def test_the_upstream_check_reaches_vertex_with_a_token_and_says_why_it_cannot(cloud, monkeypatch):
    from tests.test_upstream_check import run_command

    configure(cloud)
    output, error = run_command("vx")
    assert error is None, output
    assert output.startswith("OK   vx: ") and "one-token request" in output
    assert "private_key" not in output

    monkeypatch.delenv("GOOGLE_SERVICE_ACCOUNT_JSON")
    output, error = run_command("vx")
    assert error is not None and "FAIL vx" in output
    assert "GOOGLE_SERVICE_ACCOUNT_JSON is not set" in output


def test_a_key_file_path_and_a_stored_key_work_too(inproc, alice_key, cloud, monkeypatch, tmp_path):
    account = json.loads(os.environ["GOOGLE_SERVICE_ACCOUNT_JSON"])
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", str(key_file))  # the variable holds the file's path
    configure(cloud)
    inproc.sync()
    claude = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
    assert claude.messages.create(model="claude-vx", max_tokens=20, messages=HI).content

    upstream = Upstream.objects.get(name="vx")
    upstream.credentials_env = ""
    upstream.set_api_key(json.dumps(account))  # pasted into the admin's key field: stored encrypted
    upstream.save()
    monkeypatch.delenv("GOOGLE_SERVICE_ACCOUNT_JSON")
    inproc.sync()
    assert claude.messages.create(model="claude-vx", max_tokens=20, messages=HI).content
    assert cloud.handler.refused == []
