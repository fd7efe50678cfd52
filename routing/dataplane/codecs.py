"""Which translation codec serves which dialect: the one table routing consults."""

from __future__ import annotations

from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock import CODEC as BEDROCK
from translation.codec import Codec
from translation.dialect import Dialect
from translation.gemini import CODEC as GEMINI
from translation.openai_chat import CODEC as OPENAI_CHAT
from translation.openai_responses import CODEC as OPENAI_RESPONSES

CODECS: dict[Dialect, Codec] = {
    codec.dialect: codec for codec in (ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES, GEMINI, BEDROCK)
}


def codec_for(dialect: Dialect) -> Codec:
    return CODECS[dialect]
