"""Which translation codec serves which dialect: the one table routing consults."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from translation.dialect import Dialect

_FOLDERS = {
    Dialect.ANTHROPIC: "anthropic",
    Dialect.OPENAI_CHAT: "openai_chat",
    Dialect.OPENAI_RESPONSES: "openai_responses",
    Dialect.GEMINI: "gemini",
}


@dataclass(frozen=True, slots=True)
class Codec:
    """A dialect's `request`, `response` and `stream` modules (the contract in translation/README.md)."""

    request: ModuleType
    response: ModuleType
    stream: ModuleType


def _load(dialect: Dialect) -> Codec:
    folder = _FOLDERS[dialect]
    modules = (importlib.import_module(f"translation.{folder}.{name}") for name in ("request", "response", "stream"))
    return Codec(*modules)


_codecs: dict[Dialect, Codec] = {}


def codec_for(dialect: Dialect) -> Codec:
    codec = _codecs.get(dialect)
    if codec is None:
        codec = _codecs[dialect] = _load(dialect)
    return codec
