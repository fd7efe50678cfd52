"""The API dialects the proxy speaks, on either side of an exchange."""

from __future__ import annotations

from enum import StrEnum


class Dialect(StrEnum):
    """A wire format. The values are the names operators use in config files and the admin."""

    ANTHROPIC = "anthropic"
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    GEMINI = "gemini"
    BEDROCK = "bedrock"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Dialect.ANTHROPIC: "Anthropic Messages",
    Dialect.OPENAI_CHAT: "OpenAI Chat Completions",
    Dialect.OPENAI_RESPONSES: "OpenAI Responses",
    Dialect.GEMINI: "Gemini generateContent",
    Dialect.BEDROCK: "AWS Bedrock Converse",
}
