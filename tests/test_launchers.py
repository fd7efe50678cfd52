"""The launchers' environment and configuration building, and the commands around it (no CLI needed)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from routing import launchers
from routing.launchers import (
    claude_launch,
    codex_config,
    codex_launch,
    find_cli,
    gemini_launch,
    gemini_settings,
    install_hint,
    root_url,
    server_url,
    wait_for_server_config,
)
from routing.models import ProxyKey, hash_key

URL = "http://127.0.0.1:8080"
KEY = "sk-llmp-0123456789abcdef"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("::1", "http://[::1]:8080"),
        ("proxy.internal", "http://proxy.internal:8080"),
    ],
)
def test_server_url_from_the_bind_address(host, url):
    assert server_url(host, 8080) == url


@pytest.mark.parametrize("given", [URL, URL + "/", URL + "/v1", URL + "/v1/"])
def test_root_url_drops_slash_and_v1(given):
    assert root_url(given) == URL


def test_claude_env_points_at_the_proxy_with_the_key_and_no_side_traffic():
    base = {"PATH": "/bin", "HOME": "/home/a", "ANTHROPIC_AUTH_TOKEN": "old", "CLAUDE_CODE_USE_BEDROCK": "1"}
    launch = claude_launch(URL + "/", KEY, args=["-p", "hi"], base_env=base)
    assert launch.argv == ["claude", "-p", "hi"]
    env = launch.env
    assert env["ANTHROPIC_BASE_URL"] == URL
    assert env["ANTHROPIC_API_KEY"] == KEY
    assert "ANTHROPIC_AUTH_TOKEN" not in env  # it would win over the key
    assert "CLAUDE_CODE_USE_BEDROCK" not in env
    for flag in ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER"):
        assert env[flag] == "1"
    assert env["PATH"] == "/bin"
    assert env["HOME"] == "/home/a"
    assert not any(name.endswith("_MODEL") for name in env)
    assert launch.files == {}
    assert base["ANTHROPIC_AUTH_TOKEN"] == "old"  # the given environment is not modified


def test_claude_bearer_and_model_pin_every_tier():
    launch = claude_launch(URL, KEY, model="local", bearer=True, base_env={"ANTHROPIC_API_KEY": "sk-ant-real"})
    env = launch.env
    assert env["ANTHROPIC_AUTH_TOKEN"] == KEY
    assert "ANTHROPIC_API_KEY" not in env
    for tier in ("ANTHROPIC_MODEL", *(f"ANTHROPIC_DEFAULT_{t}_MODEL" for t in ("HAIKU", "SONNET", "OPUS"))):
        assert env[tier] == "local"


def test_claude_in_bedrock_mode_takes_the_key_as_its_bedrock_api_key():
    base = {
        "AWS_PROFILE": "corp",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "ANTHROPIC_API_KEY": "sk-ant-real",
        "AWS_REGION": "eu-west-1",
    }
    env = claude_launch(URL + "/v1", KEY, model="team", bedrock=True, base_env=base).env
    assert env["CLAUDE_CODE_USE_BEDROCK"] == "1"
    assert env["ANTHROPIC_BEDROCK_BASE_URL"] == URL
    assert env["AWS_BEARER_TOKEN_BEDROCK"] == KEY
    assert env["AWS_REGION"] == "eu-west-1"
    # An AWS identity or an Anthropic key would be used instead of the proxy key.
    assert not {"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"} & set(env)
    assert env["ANTHROPIC_MODEL"] == "team"


def test_codex_config_is_valid_toml_for_the_responses_provider():
    config = tomllib.loads(codex_config(URL, model="gpt-5.5"))
    assert config["model"] == "gpt-5.5"
    assert config["model_provider"] == "proxy"
    assert config["check_for_update_on_startup"] is False
    assert config["analytics"] == {"enabled": False}
    assert config["features"] == {"plugins": False}
    provider = config["model_providers"]["proxy"]
    assert provider["base_url"] == URL + "/v1"
    assert provider["env_key"] == "LLMPROXY_KEY"
    assert provider["wire_api"] == "responses"
    assert provider["supports_websockets"] is False
    assert provider["request_max_retries"] == 2
    assert provider["stream_max_retries"] == 2


def test_codex_config_websocket_retries_and_default_model():
    config = tomllib.loads(codex_config(URL + "/v1/", websocket=True, retries=0))
    assert "model" not in config  # Codex's own default
    assert config["model_providers"]["proxy"]["base_url"] == URL + "/v1"
    assert config["model_providers"]["proxy"]["supports_websockets"] is True
    assert config["model_providers"]["proxy"]["request_max_retries"] == 0


def test_codex_config_escapes_strings():
    config = tomllib.loads(codex_config(URL, model='we"ird\\name'))
    assert config["model"] == 'we"ird\\name'


def test_codex_launch_isolates_codex_home(tmp_path):
    home = tmp_path / "codex-home"
    launch = codex_launch(URL, KEY, home, model="m", args=["exec", "hi"], base_env={"PATH": "/bin"})
    assert launch.argv == ["codex", "exec", "hi"]
    assert launch.env == {"PATH": "/bin", "CODEX_HOME": str(home), "LLMPROXY_KEY": KEY}
    assert list(launch.files) == [home / "config.toml"]
    assert tomllib.loads(launch.files[home / "config.toml"])["model"] == "m"


def test_gemini_settings_force_api_key_auth_and_keep_the_users_settings():
    settings = gemini_settings({"security": {"auth": {"selectedType": "oauth-personal"}, "x": 1}, "ui": {"a": 2}})
    assert settings["security"] == {"auth": {"selectedType": "gemini-api-key"}, "x": 1}
    assert settings["ui"] == {"a": 2}
    assert settings["telemetry"] == {"enabled": False}
    assert settings["privacy"] == {"usageStatisticsEnabled": False}
    assert settings["general"] == {"disableAutoUpdate": True, "disableUpdateNag": True}


def test_gemini_launch_uses_its_own_gemini_home(tmp_path):
    home = tmp_path / "gemini-home"
    base = {"HOME": "/home/a", "GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_API_KEY": "AIza-real"}
    launch = gemini_launch(URL + "/v1", KEY, home, args=["-p", "hi"], base_env=base)
    env = launch.env
    assert env["GOOGLE_GEMINI_BASE_URL"] == URL
    assert env["GEMINI_API_KEY"] == KEY
    assert env["GEMINI_CLI_HOME"] == str(home)
    assert env["HOME"] == "/home/a"  # the shell tool still runs in the user's own home
    assert "GOOGLE_GENAI_USE_VERTEXAI" not in env
    assert "GOOGLE_API_KEY" not in env
    assert "GEMINI_MODEL" not in env
    assert "GEMINI_CLI_TRUST_WORKSPACE" not in env  # trust is the user's decision unless asked for
    assert "GEMINI_CLI_TRUSTED_FOLDERS_PATH" not in env
    settings = json.loads(launch.files[home / ".gemini" / "settings.json"])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert launch.argv == ["gemini", "-p", "hi"]


def test_gemini_model_trust_and_trusted_folders():
    launch = gemini_launch(
        URL,
        KEY,
        Path("/tmp/gh"),
        model="gemini-x",
        trust_workspace=True,
        trusted_folders=Path("/home/a/.gemini/trustedFolders.json"),
        base_env={},
    )
    assert launch.env["GEMINI_MODEL"] == "gemini-x"
    assert launch.env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    assert launch.env["GEMINI_CLI_TRUSTED_FOLDERS_PATH"] == "/home/a/.gemini/trustedFolders.json"


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_find_cli_prefers_path_unless_the_prefix_was_chosen(tmp_path):
    on_path = _executable(tmp_path / "bin" / "claude")
    in_prefix = _executable(tmp_path / "prefix" / "node_modules" / ".bin" / "claude")
    path = str(tmp_path / "bin")
    assert find_cli("claude", path, tmp_path / "prefix") == str(on_path)
    assert find_cli("claude", path, tmp_path / "prefix", prefer_prefix=True) == str(in_prefix)
    assert find_cli("claude", str(tmp_path / "empty"), tmp_path / "prefix") == str(in_prefix)
    assert find_cli("codex", path, tmp_path / "prefix") is None


def test_install_hint_names_the_npm_package():
    assert "npm install -g @anthropic-ai/claude-code" in install_hint("claude")
    assert "npm install -g @openai/codex" in install_hint("codex")
    assert "npm install -g @google/gemini-cli" in install_hint("gemini")


# The commands, with os.execvpe replaced by a recorder.


@pytest.fixture
def exec_calls(monkeypatch, tmp_path) -> list[tuple[str, list[str], dict[str, str]]]:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execvpe", lambda program, argv, env: calls.append((program, argv, env)))
    monkeypatch.setattr(connections, "close_all", lambda: None)  # the test's own connection stays open
    monkeypatch.setattr(launchers, "wait_for_server_config", lambda url, timeout=3.0: True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("LLMPROXY_KEY", raising=False)
    for name in ("GEMINI_CLI_HOME", "GEMINI_CLI_TRUSTED_FOLDERS_PATH"):
        monkeypatch.delenv(name, raising=False)
    prefix = tmp_path / "clis"
    for name in ("claude", "codex", "gemini"):
        _executable(prefix / "node_modules" / ".bin" / name)
    monkeypatch.setenv("CLI_PREFIX", str(prefix))
    return calls


def run(command: str, *args: str) -> None:
    call_command(command, *args)


def test_claude_command_execs_the_cli_with_the_given_key(exec_calls, tmp_path):
    run("claude", "--key", KEY, "--url", "http://proxy:9000/", "--model", "m", "--", "-p", "hi", "--verbose")
    [(program, argv, env)] = exec_calls
    assert program == str(tmp_path / "clis" / "node_modules" / ".bin" / "claude")
    assert argv == [program, "-p", "hi", "--verbose"]
    assert env["ANTHROPIC_BASE_URL"] == "http://proxy:9000"
    assert env["ANTHROPIC_API_KEY"] == KEY
    assert env["ANTHROPIC_MODEL"] == "m"


def test_command_url_defaults_to_the_served_host_and_port(exec_calls, settings):
    settings.HOST, settings.PORT = "0.0.0.0", 8123
    run("claude", "--key", KEY)
    assert exec_calls[0][2]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8123"


def test_key_from_the_environment(exec_calls, monkeypatch):
    monkeypatch.setenv("LLMPROXY_KEY", "sk-llmp-from-env")
    run("claude", "--bearer")
    assert exec_calls[0][2]["ANTHROPIC_AUTH_TOKEN"] == "sk-llmp-from-env"


@pytest.mark.django_db
def test_without_a_key_a_new_one_is_issued_for_the_user(exec_calls, monkeypatch):
    monkeypatch.setenv("USER", "carol")
    run("claude")
    run("claude", "--user", "dave")
    carol, dave = User.objects.get(username="carol"), User.objects.get(username="dave")
    assert not carol.has_usable_password()
    keys = [call[2]["ANTHROPIC_API_KEY"] for call in exec_calls]
    assert keys[0] != keys[1]
    for user, key in zip((carol, dave), keys, strict=True):
        [issued] = ProxyKey.objects.filter(user=user)
        assert issued.label == "launcher"
        assert issued.key_hash == hash_key(key)


@pytest.mark.django_db
def test_an_existing_user_gets_another_key(exec_calls):
    user = User.objects.create_user("erin", password="pw")
    ProxyKey.issue(user, label="laptop")
    run("gemini", "--user", "erin")
    assert sorted(ProxyKey.objects.filter(user=user).values_list("label", flat=True)) == ["laptop", "launcher"]
    assert User.objects.get(username="erin").check_password("pw")


@pytest.mark.django_db
def test_the_launcher_key_is_reused_while_it_works(exec_calls, tmp_path):
    run("claude", "--user", "frank")
    run("codex", "--user", "frank")
    first, second = (call[2].get("ANTHROPIC_API_KEY") or call[2]["LLMPROXY_KEY"] for call in exec_calls)
    assert first == second
    assert ProxyKey.objects.filter(user__username="frank").count() == 1
    saved = tmp_path / "home" / ".cache" / "llmproxy" / "launcher-key-frank"
    assert saved.stat().st_mode & 0o777 == 0o600

    key = ProxyKey.objects.get(user__username="frank")
    key.revoked_at = key.created_at
    key.save()
    run("claude", "--user", "frank")
    assert exec_calls[-1][2]["ANTHROPIC_API_KEY"] != first
    assert ProxyKey.objects.filter(user__username="frank").count() == 2


def test_codex_command_writes_its_config_under_the_cache(exec_calls, tmp_path):
    run("codex", "--key", KEY, "--url", URL, "--websocket", "--model", "gpt-x", "--", "exec", "--json", "hi")
    [(_, argv, env)] = exec_calls
    home = tmp_path / "home" / ".cache" / "llmproxy" / "codex-home"
    assert env["CODEX_HOME"] == str(home)
    assert env["LLMPROXY_KEY"] == KEY
    assert argv[1:] == ["exec", "--json", "hi"]
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["model"] == "gpt-x"
    assert config["model_providers"]["proxy"]["supports_websockets"] is True
    assert (home / "config.toml").stat().st_mode & 0o077 == 0


def test_codex_home_option(exec_calls, tmp_path):
    run("codex", "--key", KEY, "--codex-home", str(tmp_path / "ch"))
    assert exec_calls[0][2]["CODEX_HOME"] == str(tmp_path / "ch")
    assert (tmp_path / "ch" / "config.toml").exists()


def test_gemini_command_keeps_the_users_settings_and_trust(exec_calls, tmp_path):
    own = tmp_path / "home" / ".gemini"
    own.mkdir(parents=True)
    (own / "settings.json").write_text(json.dumps({"ui": {"theme": "dark"}, "security": {"auth": {"x": 1}}}))
    run("gemini", "--key", KEY, "--url", URL, "--trust-workspace", "--", "-p", "hi", "--yolo")
    [(_, argv, env)] = exec_calls
    home = tmp_path / "home" / ".cache" / "llmproxy" / "gemini-home"
    assert env["GEMINI_CLI_HOME"] == str(home)
    assert env["GEMINI_CLI_TRUSTED_FOLDERS_PATH"] == str(own / "trustedFolders.json")
    settings: dict[str, Any] = json.loads((home / ".gemini" / "settings.json").read_text())
    assert settings["ui"] == {"theme": "dark"}
    assert settings["security"]["auth"] == {"x": 1, "selectedType": "gemini-api-key"}
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    assert argv[1:] == ["-p", "hi", "--yolo"]
    assert json.loads((own / "settings.json").read_text())["security"] == {"auth": {"x": 1}}  # not touched


def test_gemini_home_option(exec_calls, tmp_path):
    run("gemini", "--key", KEY, "--gemini-home", str(tmp_path / "gh"), "--model", "g")
    assert exec_calls[0][2]["GEMINI_CLI_HOME"] == str(tmp_path / "gh")
    assert exec_calls[0][2]["GEMINI_MODEL"] == "g"
    assert (tmp_path / "gh" / ".gemini" / "settings.json").exists()


def test_missing_cli_names_the_npm_command(exec_calls, monkeypatch, tmp_path):
    monkeypatch.setenv("CLI_PREFIX", str(tmp_path / "nothing"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(CommandError, match=r"npm install -g @openai/codex"):
        run("codex", "--key", KEY)
    assert exec_calls == []


def test_dry_run_prints_settings_and_masks_the_key(exec_calls, capsys):
    call_command("claude", "--key", KEY, "--dry-run", "--model", "m", "--", "-p", "hi there")
    out = capsys.readouterr().out
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8080" in out
    assert "claude -p 'hi there'" in out
    assert KEY not in out
    assert exec_calls == []


@pytest.mark.django_db
def test_waiting_for_an_unreachable_server_gives_up():
    from tests.liveserver import free_port

    assert wait_for_server_config(f"http://127.0.0.1:{free_port()}", timeout=0.3) is False


@pytest.mark.e2e
def test_waiting_for_the_server_to_load_a_new_key(proxy, alice):
    ProxyKey.issue(alice, label="launcher")
    assert wait_for_server_config(proxy.url, timeout=10) is True
