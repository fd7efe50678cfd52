"""Start a coding-agent CLI (Claude Code, Codex, Gemini CLI) against this proxy: `manage.py claude|codex|gemini`.

The environment and configuration each CLI needs are built by pure functions (`claude_launch`, `codex_launch`,
`gemini_launch`) that return a `Launch`: the program, its arguments, the environment and the files to write first.
`LauncherCommand` is the shared management command: it resolves the URL, the key (given, or a fresh one for the
current user) and the installed CLI, then replaces itself with the CLI (`os.execvpe`).
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import sys
import time
from argparse import ArgumentParser
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ROOT = Path(__file__).resolve().parent.parent
# Where the test set-up installs the pinned CLIs (tests/clis.py); also the default CLI_PREFIX.
DEFAULT_CLI_PREFIX = ROOT / ".cache" / "clis"

NPM_PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}

# Variables that would send a CLI somewhere other than the proxy, or authenticate it differently.
CLAUDE_CONFLICTING = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    # An AWS identity would be used instead of the Bedrock API key (the proxy key) in Bedrock mode.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
)
GEMINI_CONFLICTING = ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA", "GOOGLE_API_KEY")
CODEX_KEY_VARIABLE = "LLMPROXY_KEY"
# The region Claude Code and boto3 are given in Bedrock mode when none is set (the proxy ignores it).
BEDROCK_REGION = "us-east-1"


@dataclass(frozen=True)
class Launch:
    """What to run: `argv[0]` is the program name (resolved to a path by `find_cli`)."""

    argv: list[str]
    env: dict[str, str]  # the complete environment of the CLI
    files: dict[Path, str] = field(default_factory=dict)  # written (parents created) before the CLI starts
    set_env: dict[str, str] = field(default_factory=dict)  # the part of `env` the launcher chose, for display


def server_url(host: str, port: int) -> str:
    """The proxy's root URL for a client on this machine, from the HOST/PORT the server binds."""
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def root_url(url: str) -> str:
    """`url` without a trailing slash or an OpenAI-style `/v1` (clients add their own paths)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _environment(base: Mapping[str, str], remove: Sequence[str], chosen: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in remove}
    env.update(chosen)
    return env


def claude_launch(
    url: str,
    key: str,
    *,
    model: str | None = None,
    bearer: bool = False,
    bedrock: bool = False,
    args: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """Claude Code: the proxy as its Anthropic base URL, the proxy key as `x-api-key` (or `Authorization: Bearer`
    with `bearer`), every model tier pinned to `model` when given, and no traffic beyond the API. `bedrock`:
    Claude Code in Bedrock mode instead, the proxy as its Bedrock endpoint and the proxy key as its Bedrock API
    key (the bedrock-runtime paths the proxy serves)."""
    if bedrock:
        connection = {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": root_url(url),
            "AWS_BEARER_TOKEN_BEDROCK": key,
            "AWS_REGION": base_env.get("AWS_REGION", BEDROCK_REGION) if base_env else BEDROCK_REGION,
        }
    else:
        connection = {
            "ANTHROPIC_BASE_URL": root_url(url),
            ("ANTHROPIC_AUTH_TOKEN" if bearer else "ANTHROPIC_API_KEY"): key,
        }
    chosen = {
        **connection,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
    }
    if model:
        for variable in (
            "ANTHROPIC_MODEL",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL",
            "ANTHROPIC_DEFAULT_SONNET_MODEL",
            "ANTHROPIC_DEFAULT_OPUS_MODEL",
        ):
            chosen[variable] = model
    env = _environment(base_env if base_env is not None else {}, CLAUDE_CONFLICTING, chosen)
    return Launch(["claude", *args], env, set_env=chosen)


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def codex_config(url: str, *, model: str | None = None, websocket: bool = False, retries: int = 2) -> str:
    """`config.toml` for an isolated CODEX_HOME: a provider "proxy" on the Responses API, no update check,
    analytics or plugin catalog (each of which would reach the internet)."""
    base = root_url(url) + "/v1"  # Codex appends /responses
    lines = []
    if model:
        lines.append(f"model = {toml_string(model)}")
    lines += [
        'model_provider = "proxy"',
        "check_for_update_on_startup = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[features]",
        "plugins = false",
        "",
        "[model_providers.proxy]",
        'name = "llmproxy"',
        f"base_url = {toml_string(base)}",
        f"env_key = {toml_string(CODEX_KEY_VARIABLE)}",
        'wire_api = "responses"',
        f"supports_websockets = {'true' if websocket else 'false'}",
        f"request_max_retries = {retries}",
        f"stream_max_retries = {retries}",
    ]
    return "\n".join(lines) + "\n"


def codex_launch(
    url: str,
    key: str,
    codex_home: Path,
    *,
    model: str | None = None,
    websocket: bool = False,
    retries: int = 2,
    args: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """Codex: its own CODEX_HOME holding a config that points at the proxy; the key in LLMPROXY_KEY."""
    chosen = {"CODEX_HOME": str(codex_home), CODEX_KEY_VARIABLE: key}
    env = _environment(base_env if base_env is not None else {}, (), chosen)
    config = codex_config(url, model=model, websocket=websocket, retries=retries)
    return Launch(["codex", *args], env, files={codex_home / "config.toml": config}, set_env=chosen)


GEMINI_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested objects key by key."""
    out = dict(base)
    for name, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(name), Mapping):
            out[name] = merged(out[name], value)
        else:
            out[name] = value
    return out


def gemini_settings(existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """User settings for the Gemini CLI: API-key auth (with GOOGLE_GEMINI_BASE_URL set, 0.61 otherwise picks the
    "gateway" auth type and refuses to start headless), no usage statistics, telemetry or update checks.
    `existing` (the user's own ~/.gemini/settings.json) is kept where these do not say otherwise."""
    return merged(existing or {}, GEMINI_SETTINGS)


def gemini_connection(url: str, key: str) -> dict[str, str]:
    """The variables that point the Gemini CLI (and nothing else of its set-up) at the proxy with `key`."""
    return {"GOOGLE_GEMINI_BASE_URL": root_url(url), "GEMINI_API_KEY": key}


def gemini_launch(
    url: str,
    key: str,
    gemini_home: Path,
    *,
    model: str | None = None,
    trust_workspace: bool = False,
    user_settings: Mapping[str, Any] | None = None,
    trusted_folders: Path | None = None,
    args: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """Gemini CLI: the proxy as GOOGLE_GEMINI_BASE_URL, the key as GEMINI_API_KEY, and settings in a separate
    GEMINI_CLI_HOME (its `.gemini/settings.json`: the user's own settings plus ours) so ~/.gemini is left alone.
    GEMINI_CLI_SYSTEM_SETTINGS_PATH would be lighter, but 0.61 ignores a system settings file unless root owns it
    and every directory above it. `trusted_folders` keeps the user's folder-trust decisions; `trust_workspace`
    trusts the current folder for this session (needed for `--yolo` to run tools headless)."""
    chosen = {**gemini_connection(url, key), "GEMINI_CLI_HOME": str(gemini_home)}
    if trusted_folders is not None:
        chosen["GEMINI_CLI_TRUSTED_FOLDERS_PATH"] = str(trusted_folders)
    if model:
        chosen["GEMINI_MODEL"] = model
    if trust_workspace:
        chosen["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    env = _environment(base_env if base_env is not None else {}, GEMINI_CONFLICTING, chosen)
    settings_file = gemini_home / ".gemini" / "settings.json"
    content = json.dumps(gemini_settings(user_settings), indent=2) + "\n"
    return Launch(["gemini", *args], env, files={settings_file: content}, set_env=chosen)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def cache_dir(env: Mapping[str, str]) -> Path:
    """The launcher's own state directory (~/.cache/llmproxy, or under XDG_CACHE_HOME)."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "llmproxy"


def find_cli(name: str, path: str, prefix: Path, prefer_prefix: bool = False) -> str | None:
    """The executable `name` on `path` or in `prefix`/node_modules/.bin; the prefix first when it was chosen
    explicitly, else PATH first (a developer's own install wins over the test install)."""
    in_prefix = prefix / "node_modules" / ".bin" / name
    prefix_hit = str(in_prefix) if in_prefix.is_file() and os.access(in_prefix, os.X_OK) else None
    path_hit = shutil.which(name, path=path)
    return (prefix_hit or path_hit) if prefer_prefix else (path_hit or prefix_hit)


def install_hint(name: str) -> str:
    return (
        f"{name} is not installed: install it with `npm install -g {NPM_PACKAGES[name]}` "
        f"(or into a prefix given by CLI_PREFIX: `npm install --prefix $CLI_PREFIX {NPM_PACKAGES[name]}`)"
    )


def cli_prefix(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The configured CLI prefix, and whether it was configured (rather than the default)."""
    configured = getattr(settings, "CLI_PREFIX", "") or env.get("CLI_PREFIX", "")
    return (Path(configured), True) if configured else (DEFAULT_CLI_PREFIX, False)


def issue_launcher_key(username: str) -> str:
    """A fresh proxy key labelled "launcher" for `username`, created (without a password) if needed."""
    from django.contrib.auth import get_user_model

    from routing.models import ProxyKey

    users = get_user_model()
    user = users.objects.filter(username=username).first()
    if user is None:
        user = users.objects.create_user(username=username)
    _, plaintext = ProxyKey.issue(user, label="launcher")
    return plaintext


def launcher_key(username: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """(key, is_new): the launcher key this user was given before, while it still works, else a new one.

    The key is kept in the user's own cache directory (mode 0600), the way the CLIs keep their credentials,
    so that launching again does not pile up keys on the server.
    """
    from routing.models import ProxyKey, hash_key

    saved = cache_dir(env) / f"launcher-key-{username}"
    try:
        previous = saved.read_text().strip()
    except OSError:
        previous = ""
    if previous:
        key = ProxyKey.objects.filter(key_hash=hash_key(previous), user__username=username).first()
        if key is not None and key.is_active and key.user.is_active:
            return previous, False
    plaintext = issue_launcher_key(username)
    saved.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(plaintext + "\n")
    return plaintext, True


def wait_for_server_config(url: str, timeout: float = 3.0) -> bool:
    """Wait (briefly) until the server at `url` has loaded the configuration this database holds now, so that a
    key just issued works on the CLI's first request. False when it did not within `timeout` (another database,
    the server not running): the CLI is started anyway."""
    import httpx

    from routing.models import ConfigState

    expected = ConfigState.current_token()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(root_url(url) + "/health/ready", timeout=1.0).json().get("config_token") == expected:
                return True
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def current_username(env: Mapping[str, str]) -> str:
    return env.get("USER") or env.get("LOGNAME") or getpass.getuser()


def describe(launch: Launch, key: str) -> str:
    """The launch as shell lines (the key masked), for --dry-run."""
    lines = [f"# write {path}:\n{content}" for path, content in launch.files.items()]
    shown = {k: (v[:14] + "…" if v == key else v) for k, v in launch.set_env.items()}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items())
    lines.append(f"{exports} {shlex.join(launch.argv)}")
    return "\n".join(lines)


def write_files(files: Mapping[Path, str]) -> None:
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(content)
        temporary.chmod(0o600)
        temporary.replace(path)


class LauncherCommand(BaseCommand):
    """`manage.py NAME [options] [-- CLI ARGS]`; subclasses build the `Launch`."""

    cli: ClassVar[str]
    requires_system_checks: ClassVar[list[str]] = []  # type: ignore[misc]

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--model", help="Model alias every request asks for (default: the CLI's own)")
        parser.add_argument(
            "--key", default=None, help="Proxy key to use (default: $LLMPROXY_KEY, else a new key for --user)"
        )
        parser.add_argument("--user", default=None, help="Owner of the new key (default: $USER; created if needed)")
        parser.add_argument("--url", default=None, help="Proxy root URL (default: http://HOST:PORT from settings)")
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the settings and command instead of starting the CLI"
        )
        self.add_cli_arguments(parser)
        parser.add_argument("args", nargs="*", metavar="-- ARGS", help="Passed to the CLI unchanged")

    def add_cli_arguments(self, parser: ArgumentParser) -> None:
        pass

    def build(self, url: str, key: str, args: list[str], env: Mapping[str, str], options: dict[str, Any]) -> Launch:
        raise NotImplementedError

    def handle(self, *args: str, **options: Any) -> None:
        env = dict(os.environ)
        url = options["url"] or server_url(settings.HOST, settings.PORT)
        prefix, prefer_prefix = cli_prefix(env)
        program = find_cli(self.cli, env.get("PATH", os.defpath), prefix, prefer_prefix)
        if program is None and not options["dry_run"]:
            raise CommandError(install_hint(self.cli))
        key = options["key"] or env.get("LLMPROXY_KEY", "")
        if not key:
            username = options["user"] or current_username(env)
            if options["dry_run"]:
                key = "sk-llmp-(launcher key)"
                self.stderr.write(f"Would use the launcher key of {username} (label 'launcher').")
            else:
                key, is_new = launcher_key(username, env)
                if is_new:
                    wait_for_server_config(url)
                state = "a new" if is_new else "the saved"
                self.stderr.write(f"Using {state} launcher key of {username} (label 'launcher').")
        launch = self.build(url, key, list(args), env, options)
        if options["dry_run"]:
            self.stdout.write(describe(launch, key))
            return
        assert program is not None
        write_files(launch.files)
        self.stderr.write(f"Starting {program} against {url}")
        from django.db import connections

        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe(program, [program, *launch.argv[1:]], launch.env)
