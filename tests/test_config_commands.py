"""Config as a file, keys from the command line, and first-start set-up."""

from __future__ import annotations

import io

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from routing.config.secrets import decrypt
from routing.models import ModelAlias, ProxyKey, Upstream, hash_key

CONFIG = """
upstreams:
  - {name: openai, format: openai-chat, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY,
     headers: {}, query: {}, timeout: 120}
  - {name: local, format: anthropic, base_url: "http://127.0.0.1:11434", api_key: "literal-secret-123"}
  - {name: azure, format: openai-chat, base_url: "https://x.openai.azure.com/openai/deployments/{model}",
     api_key_env: AZURE_KEY, auth_header: api-key, query: {api-version: "2025-04-01-preview"}}
aliases:
  - {name: "claude-*haiku*", upstream: openai, model: gpt-4.1-mini}
  - {name: big, upstream: local, model: qwen3, priority: 5}
"""


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_text(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return run("importconfig", str(path))


@pytest.mark.django_db
def test_import_creates_then_changes_nothing_the_second_time(tmp_path):
    first = import_text(tmp_path, CONFIG)
    assert "5 created, 0 updated, 0 unchanged" in first
    second = import_text(tmp_path, CONFIG)
    assert "0 created, 0 updated, 5 unchanged" in second

    openai = Upstream.objects.get(name="openai")
    assert (openai.format, openai.api_key_env, openai.timeout) == ("openai-chat", "OPENAI_API_KEY", 120.0)
    local = Upstream.objects.get(name="local")
    assert "literal-secret-123" not in local.api_key_encrypted
    assert decrypt(local.api_key_encrypted) == "literal-secret-123"
    azure = Upstream.objects.get(name="azure")
    assert azure.query_params == {"api-version": "2025-04-01-preview"}
    assert azure.auth_header == "api-key"
    alias = ModelAlias.objects.get(name="big")
    assert (alias.upstream.name, alias.upstream_model, alias.priority) == ("local", "qwen3", 5)


@pytest.mark.django_db
def test_import_updates_what_changed(tmp_path):
    import_text(tmp_path, CONFIG)
    report = import_text(tmp_path, CONFIG.replace("model: qwen3", "model: qwen3-coder"))
    assert "updated alias big" in report
    assert ModelAlias.objects.get(name="big").upstream_model == "qwen3-coder"


@pytest.mark.django_db
def test_export_round_trips_without_secrets(tmp_path):
    import_text(tmp_path, CONFIG)
    exported = run("exportconfig")
    assert "literal-secret-123" not in exported
    assert Upstream.objects.get(name="local").api_key_encrypted not in exported
    document = yaml.safe_load(exported)
    assert {u["name"] for u in document["upstreams"]} == {"openai", "local", "azure"}
    assert "api_key" not in next(u for u in document["upstreams"] if u["name"] == "local")

    # Reading the export back changes nothing, and keeps the stored key.
    report = import_text(tmp_path, exported)
    assert "0 created, 0 updated, 5 unchanged" in report
    assert decrypt(Upstream.objects.get(name="local").api_key_encrypted) == "literal-secret-123"


@pytest.mark.django_db
def test_secret_headers_and_query_parameters_are_not_exported_and_survive_a_round_trip(tmp_path):
    import_text(
        tmp_path,
        "upstreams:\n"
        "  - {name: gw, format: openai-chat, base_url: 'https://gw.example/v1',\n"
        "     headers: {Authorization: 'Bearer sk-gateway-secret-1', X-Org: acme},\n"
        "     query: {api-key: query-secret-2, api-version: '2025-04-01'}}\n",
    )
    exported = run("exportconfig")
    assert "sk-gateway-secret-1" not in exported and "query-secret-2" not in exported
    gateway = next(u for u in yaml.safe_load(exported)["upstreams"] if u["name"] == "gw")
    assert gateway["headers"]["X-Org"] == "acme" and gateway["query"]["api-version"] == "2025-04-01"

    import_text(tmp_path, exported)
    stored = Upstream.objects.get(name="gw")
    assert stored.headers == {"Authorization": "Bearer sk-gateway-secret-1", "X-Org": "acme"}
    assert stored.query_params == {"api-key": "query-secret-2", "api-version": "2025-04-01"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("upstreams: [{name: a, format: klingon, base_url: 'http://x'}]", "format must be one of"),
        ("upstreams: [{name: a, format: gemini}]", "'base_url' is required"),
        ("aliases: [{name: a, upstream: nowhere}]", "no upstream named 'nowhere'"),
        ("upstreams: [{name: a, format: gemini, base_url: 'http://x', colour: red}]", "unknown field(s) colour"),
        ("upstreams: [", "not valid YAML"),
        (
            "upstreams: [{name: a, format: gemini, base_url: 'http://x', api_key_env: SECRET_KEY}]",
            "SECRET_KEY is one of the proxy's own settings",
        ),
        (
            "upstreams: [{name: a, format: gemini, base_url: 'http://x', api_key_env: PATH}]",
            "PATH does not look like a credential variable",
        ),
        (
            "upstreams: [{name: a, format: gemini, base_url: 'http://x'}]\n"
            "aliases: [{name: s, upstream: a, scenarios: {thinking: {upstream: a, model: r}}}]",
            "line 2: aliases[0]: scenarios: unknown scenario 'thinking'",
        ),
        (
            "upstreams: [{name: a, format: gemini, base_url: 'http://x'}]\n"
            "aliases: [{name: s, upstream: a, scenarios: {long_context: {upstream: a, model: r}}}]",
            "above_tokens",
        ),
        (
            "upstreams: [{name: a, format: gemini, base_url: 'http://x'}]\n"
            "aliases: [{name: s, upstream: a, scenarios: {think: {upstream: b, model: r}}}]",
            "scenarios: no upstream named b",
        ),
        ("prefixes: [{path: team-a, aliases: [s]}]", "starts with /"),
        ("prefixes: [{path: /v1, aliases: [s]}]", "already a path of the proxy"),
        ("prefixes: [{path: /t, aliases: s}]", "aliases must be a list of names"),
        ("prefixes: [{path: /t, aliases: [s]}, {path: /t, aliases: [x]}]", "path '/t' appears twice"),
    ],
)
def test_import_rejects_bad_files_with_a_precise_message(tmp_path, text, message):
    with pytest.raises(CommandError) as caught:
        import_text(tmp_path, text)
    assert message in str(caught.value)
    assert not Upstream.objects.exists()


SCENARIO_CONFIG = """
upstreams:
  - {name: a, format: openai-chat, base_url: "http://127.0.0.1:1/v1"}
  - {name: b, format: anthropic, base_url: "http://127.0.0.1:2"}
aliases:
  - name: smart
    upstream: a
    model: m1
    scenarios:
      background: {upstream: a, model: small}
      think: {upstream: b, model: reasoner}
      long_context: {upstream: b, model: long, above_tokens: 60000}
      image: {upstream: b, model: vision}
      web_search: {upstream: b, model: searcher}
  - {name: "gpt-*", upstream: a}
prefixes:
  - {path: /team-a, aliases: [smart, "gpt-*"]}
  - {path: /team-b, aliases: [smart], enabled: false}
"""


@pytest.mark.django_db
def test_scenarios_and_prefixes_import_and_export_round_trip(tmp_path):
    from routing.models import PathPrefix

    assert "6 created" in import_text(tmp_path, SCENARIO_CONFIG)
    smart = ModelAlias.objects.get(name="smart")
    assert smart.scenarios["long_context"] == {"upstream": "b", "model": "long", "above_tokens": 60000}
    assert set(smart.scenarios) == {"long_context", "image", "web_search", "background", "think"}
    assert ModelAlias.objects.get(name="gpt-*").scenarios == {}
    assert {p.path: (p.aliases, p.enabled) for p in PathPrefix.objects.all()} == {
        "/team-a": (["smart", "gpt-*"], True),
        "/team-b": (["smart"], False),
    }

    exported = yaml.safe_load(run("exportconfig"))
    by_name = {a["name"]: a for a in exported["aliases"]}
    assert by_name["smart"]["scenarios"]["think"] == {"upstream": "b", "model": "reasoner"}
    assert list(by_name["smart"]["scenarios"]) == ["long_context", "image", "web_search", "background", "think"]
    assert "scenarios" not in by_name["gpt-*"]  # defaults are left out
    assert exported["prefixes"] == [
        {"path": "/team-a", "aliases": ["smart", "gpt-*"]},
        {"path": "/team-b", "aliases": ["smart"], "enabled": False},
    ]
    # The export reads back unchanged.
    again = import_text(tmp_path, yaml.safe_dump(exported))
    assert "0 created, 0 updated" in again


@pytest.mark.django_db
def test_check_validates_without_applying(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    assert "valid" in run("importconfig", "--check", str(path))
    assert not Upstream.objects.exists()


@pytest.mark.django_db
def test_createkey_prints_a_key_that_is_stored_only_as_a_hash():
    printed = run("createkey", "--user", "bob", "--label", "ci", "--create-user").strip()
    key = ProxyKey.objects.get(user__username="bob")
    assert printed.startswith(key.prefix)
    assert key.key_hash == hash_key(printed)
    assert key.label == "ci"
    assert printed not in (key.prefix, key.key_hash)


@pytest.mark.django_db
def test_createkey_refuses_an_unknown_user_without_create_user():
    with pytest.raises(CommandError, match="--create-user"):
        run("createkey", "--user", "nobody")


@pytest.mark.django_db
@override_settings(ADMIN_USERNAME="root", ADMIN_PASSWORD="")
def test_bootstrap_creates_an_admin_once_and_prints_its_password():
    output = run("bootstrap")
    password = output.split("password: ")[1].split()[0]
    assert User.objects.get(username="root").check_password(password)
    assert User.objects.get(username="root").is_superuser
    assert run("bootstrap") == ""


def quickstart_env(**values: str) -> dict[str, str]:
    names = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OLLAMA_BASE_URL"]
    names += ["CHAT_BASE_URL", "CHAT_API_KEY", "PREFERRED_PROVIDER", "BIG_MODEL", "SMALL_MODEL"]
    return {name: values.get(name, "") for name in names}


@pytest.mark.django_db
@override_settings(ADMIN_PASSWORD="x", QUICKSTART=quickstart_env(OPENAI_API_KEY="sk-real", SMALL_MODEL="gpt-4o-mini"))
def test_quickstart_creates_upstream_and_claude_aliases_from_the_environment():
    run("bootstrap")
    openai = Upstream.objects.get(name="openai")
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert not openai.api_key_encrypted
    aliases = {a.name: a.upstream_model for a in ModelAlias.objects.all()}
    assert aliases == {"*haiku*": "gpt-4o-mini", "*sonnet*": "gpt-4.1", "*opus*": "gpt-4.1"}
    # Only on an empty database: a second start leaves the operator's edits alone.
    ModelAlias.objects.all().delete()
    run("bootstrap")
    assert not ModelAlias.objects.exists()


@pytest.mark.django_db
@override_settings(
    ADMIN_PASSWORD="x",
    QUICKSTART=quickstart_env(
        GEMINI_API_KEY="g", OLLAMA_BASE_URL="http://127.0.0.1:11434", PREFERRED_PROVIDER="google"
    ),
)
def test_quickstart_honours_the_preferred_provider():
    run("bootstrap")
    assert Upstream.objects.get(name="ollama").base_url == "http://127.0.0.1:11434/v1"
    haiku = ModelAlias.objects.get(name="*haiku*")
    assert (haiku.upstream.name, haiku.upstream_model) == ("gemini", "gemini-2.5-flash")


@pytest.mark.e2e
def test_commands_configure_a_running_server_live(proxy, tmp_path):
    """Automation can start the server first and configure it after, from another process."""
    import subprocess
    import sys

    import httpx
    from django.db import connection

    from tests.fakes.providers import fake_upstream
    from tests.liveserver import ROOT, database_url

    env = {"DATABASE_URL": database_url(connection.settings_dict), "PATH": "/usr/bin:/bin"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    with fake_upstream("openai-chat") as fake:
        config = tmp_path / "live.yaml"
        config.write_text(
            f"upstreams:\n  - {{name: live, format: openai-chat, base_url: '{fake.url}/v1'}}\n"
            "aliases:\n  - {name: fast, upstream: live, model: small-model}\n"
        )
        subprocess.run([*manage, "importconfig", str(config)], env=env, cwd=ROOT, check=True, capture_output=True)
        key = subprocess.run(
            [*manage, "createkey", "--user", "robot", "--create-user"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        proxy.sync()
        response = httpx.post(
            proxy.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
        assert fake.requests[-1].json["model"] == "small-model"


@pytest.mark.django_db
def test_rotatesecrets_moves_stored_keys_to_the_newest_encryption_key(settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    upstream = Upstream(name="u", format="anthropic", base_url="http://127.0.0.1:9")
    upstream.set_api_key("sk-ant-secret")
    upstream.set_proxy_auth("egress:proxy-secret")  # an egress proxy's stored credentials rotate too
    upstream.save()

    settings.ENCRYPTION_KEYS = [new, old]  # the operator puts the new key first
    assert "re-encrypted 2 stored secret(s)" in run("rotatesecrets")
    settings.ENCRYPTION_KEYS = [new]  # and can then retire the old one
    assert decrypt(Upstream.objects.get(name="u").api_key_encrypted) == "sk-ant-secret"
    assert decrypt(Upstream.objects.get(name="u").proxy_auth_encrypted) == "egress:proxy-secret"


@pytest.mark.django_db
def test_an_alias_that_captures_bodies_imports_and_exports(tmp_path):
    import_text(tmp_path, CONFIG.replace("priority: 5}", "priority: 5, capture_bodies: true}"))
    assert ModelAlias.objects.get(name="big").capture_bodies is True
    assert ModelAlias.objects.get(name="claude-*haiku*").capture_bodies is False  # off unless asked
    exported = yaml.safe_load(run("exportconfig"))
    by_name = {a["name"]: a for a in exported["aliases"]}
    assert by_name["big"]["capture_bodies"] is True
    assert "capture_bodies" not in by_name["claude-*haiku*"]
    assert "0 created, 0 updated" in import_text(tmp_path, yaml.safe_dump(exported))
