"""Quick start from the environment, the way claude-code-proxy users configure it.

On a database with no upstream yet, provider keys in the environment become upstreams (referencing the
variable, never copying the secret) and PREFERRED_PROVIDER / BIG_MODEL / SMALL_MODEL become the
haiku → small, sonnet and opus → big aliases Claude Code needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from routing.models import ModelAlias, Upstream
from translation.dialect import Dialect


@dataclass(frozen=True)
class _Provider:
    upstream: str
    format: Dialect
    base_url: str
    key_env: str
    big_model: str
    small_model: str


def _providers(env: dict[str, str]) -> dict[str, _Provider]:
    found: dict[str, _Provider] = {}
    if env["OPENAI_API_KEY"]:
        base = env["OPENAI_BASE_URL"] or "https://api.openai.com/v1"
        found["openai"] = _Provider("openai", Dialect.OPENAI_CHAT, base, "OPENAI_API_KEY", "gpt-4.1", "gpt-4.1-mini")
    if env["ANTHROPIC_API_KEY"]:
        found["anthropic"] = _Provider(
            "anthropic", Dialect.ANTHROPIC, "https://api.anthropic.com", "ANTHROPIC_API_KEY", "", ""
        )
    if env["GEMINI_API_KEY"]:
        found["google"] = _Provider(
            "gemini",
            Dialect.GEMINI,
            "https://generativelanguage.googleapis.com",
            "GEMINI_API_KEY",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
        )
    if env["OLLAMA_BASE_URL"]:
        base = env["OLLAMA_BASE_URL"].rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        found["ollama"] = _Provider("ollama", Dialect.OPENAI_CHAT, base, "", "", "")
    if env["CHAT_BASE_URL"]:
        key_env = "CHAT_API_KEY" if env["CHAT_API_KEY"] else ""
        found["chat"] = _Provider("chat", Dialect.OPENAI_CHAT, env["CHAT_BASE_URL"], key_env, "", "")
    return found


def create_from_environment() -> list[str]:
    """Create the upstreams and aliases; returns what it did, one line each (nothing on a configured database)."""
    if Upstream.objects.exists():
        return []
    env = settings.QUICKSTART
    providers = _providers(env)
    if not providers:
        return []
    done: list[str] = []
    with transaction.atomic():
        created: dict[str, Upstream] = {}
        for key, provider in providers.items():
            created[key] = Upstream.objects.create(
                name=provider.upstream, format=provider.format, base_url=provider.base_url, api_key_env=provider.key_env
            )
            done.append(f"Created upstream {provider.upstream} ({provider.format.value}, {provider.base_url})")
        preferred = (env["PREFERRED_PROVIDER"] or "").lower() or next(iter(providers))
        if preferred == "gemini":
            preferred = "google"
        if preferred not in providers:
            done.append(f"PREFERRED_PROVIDER={preferred!r} has no key or URL in the environment; no aliases created")
            return done
        provider = providers[preferred]
        big = env["BIG_MODEL"] or provider.big_model
        small = env["SMALL_MODEL"] or provider.small_model or big
        if provider.format is not Dialect.ANTHROPIC and not big:
            done.append(f"Set BIG_MODEL (and SMALL_MODEL) to create the Claude aliases for {provider.upstream}")
            return done
        for pattern, model in (("*haiku*", small), ("*sonnet*", big), ("*opus*", big)):
            ModelAlias.objects.create(name=pattern, upstream=created[preferred], upstream_model=model)
            done.append(f"Created alias {pattern} → {provider.upstream}/{model or '(as requested)'}")
    return done
