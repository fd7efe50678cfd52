"""The provider fakes by name, for the standalone server and for tests that loop over providers."""

from __future__ import annotations

from typing import Any

from tests.fakes.anthropic import AnthropicFake
from tests.fakes.base import ProviderFake
from tests.fakes.bedrock import BedrockFake
from tests.fakes.gemini import GeminiFake
from tests.fakes.openai_chat import OllamaFake, OpenAIChatFake
from tests.fakes.openai_responses import OpenAIResponsesFake
from tests.fakes.server import FakeUpstream

PROVIDERS: dict[str, type[ProviderFake]] = {
    fake.name: fake
    for fake in (AnthropicFake, OpenAIChatFake, OpenAIResponsesFake, GeminiFake, OllamaFake, BedrockFake)
}


def make(provider: str, **options: Any) -> ProviderFake:
    """A fake for `provider` ("anthropic", "openai-chat", "openai-responses", "gemini", "ollama", "bedrock")."""
    return PROVIDERS[provider](**options)


def fake_upstream(provider: str, **options: Any) -> FakeUpstream[ProviderFake]:
    """An unstarted server for `provider`; use it as a context manager."""
    return FakeUpstream(make(provider, **options))
