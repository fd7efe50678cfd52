"""Ready-to-paste set-up for the clients a teammate points at this proxy (shown on /me/).

The coding-agent CLIs get what `manage.py claude|codex|gemini` sets (routing.launchers: one place for what each
needs); the SDKs get the base URL each expects and the proxy key as its API key. With a key just created the
snippets carry it; otherwise they read it from `$LLMPROXY_KEY`, the variable the Codex config names.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from routing.launchers import (
    BEDROCK_REGION,
    CODEX_KEY_VARIABLE,
    claude_launch,
    codex_config,
    gemini_connection,
    gemini_settings,
    root_url,
)

KEY_PLACEHOLDER = f"${CODEX_KEY_VARIABLE}"
# The model the SDK examples ask for when the person may use no exact alias (a pattern's name is no model).
MODEL_PLACEHOLDER = "MODEL"


@dataclass(frozen=True)
class Snippet:
    slug: str  # the element id on the page
    title: str
    where: str  # where it goes: "shell", "~/.codex/config.toml", …
    language: str
    text: str
    note: str = ""


def _shell_value(value: str, key: str | None) -> str:
    if key is None and value == KEY_PLACEHOLDER:
        return f'"{KEY_PLACEHOLDER}"'
    return shlex.quote(value)


def _exports(variables: Mapping[str, str], key: str | None) -> str:
    return "\n".join(f"export {name}={_shell_value(value, key)}" for name, value in variables.items())


def _python_key(key: str | None) -> str:
    return json.dumps(key) if key is not None else f'os.environ["{CODEX_KEY_VARIABLE}"]'


def client_snippets(url: str, key: str | None = None, model: str | None = None) -> list[Snippet]:
    """The set-up of each client for the proxy at `url` (its root), with `key` (None: `$LLMPROXY_KEY`) and
    `model` (an alias the person may use) in the SDK examples."""
    root = root_url(url)
    secret = key if key is not None else KEY_PLACEHOLDER
    example = json.dumps(model or MODEL_PLACEHOLDER)
    imports_os = "import os\n" if key is None else ""
    key_line = (
        f"export {CODEX_KEY_VARIABLE}={shlex.quote(key)}"
        if key is not None
        else f"# {CODEX_KEY_VARIABLE} holds your key (export {CODEX_KEY_VARIABLE}=sk-llmp-…)"
    )
    snippets = [
        Snippet(
            "setup-claude",
            "Claude Code",
            "shell",
            "bash",
            _exports(claude_launch(url, secret).set_env, key) + "\nclaude",
        ),
        Snippet("setup-codex-config", "Codex", "~/.codex/config.toml", "toml", codex_config(url, model=model).rstrip()),
        Snippet("setup-codex", "Codex", "shell", "bash", f"{key_line}\ncodex"),
        Snippet(
            "setup-gemini-settings",
            "Gemini CLI",
            "~/.gemini/settings.json (merged into yours)",
            "json",
            json.dumps(gemini_settings(), indent=2),
        ),
        Snippet(
            "setup-gemini", "Gemini CLI", "shell", "bash", _exports(gemini_connection(url, secret), key) + "\ngemini"
        ),
        Snippet(
            "setup-openai",
            "OpenAI SDK",
            "Python",
            "python",
            f"{imports_os}from openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(root + '/v1')}, api_key={_python_key(key)})\n"
            f'client.responses.create(model={example}, input="Hello")\n'
            f'client.chat.completions.create(model={example}, messages=[{{"role": "user", "content": "Hello"}}])',
        ),
        Snippet(
            "setup-anthropic",
            "Anthropic SDK",
            "Python",
            "python",
            f"{imports_os}from anthropic import Anthropic\n\n"
            f"client = Anthropic(base_url={json.dumps(root)}, api_key={_python_key(key)})\n"
            f"client.messages.create(model={example}, max_tokens=1024, "
            'messages=[{"role": "user", "content": "Hello"}])',
        ),
        Snippet(
            "setup-genai",
            "google-genai SDK",
            "Python",
            "python",
            f"{imports_os}from google import genai\nfrom google.genai import types\n\n"
            f"client = genai.Client(api_key={_python_key(key)}, "
            f"http_options=types.HttpOptions(base_url={json.dumps(root)}))\n"
            f'client.models.generate_content(model={example}, contents="Hello")',
        ),
        Snippet(
            "setup-boto3",
            "boto3 (Bedrock)",
            "Python",
            "python",
            "import os\nimport boto3\n\n"
            f'os.environ["AWS_BEARER_TOKEN_BEDROCK"] = {_python_key(key)}\n'
            f'client = boto3.client("bedrock-runtime", region_name="{BEDROCK_REGION}", '
            f"endpoint_url={json.dumps(root)})\n"
            f'client.converse(modelId={example}, messages=[{{"role": "user", "content": [{{"text": "Hello"}}]}}])',
            note=""
            if root.startswith("https://")
            else "boto3 sends the key only over HTTPS: use this proxy's https:// address when it has one.",
        ),
    ]
    return snippets
