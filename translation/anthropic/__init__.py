"""Anthropic Messages codec (`POST /v1/messages`), both directions, streaming included.

`TargetOptions.flags` this codec reads when encoding for an Anthropic upstream:
- `anthropic_version` (default "2023-06-01"): from "2026-10-21" on, the API has no temperature/top_p/top_k
  (they are dropped with a warning) and takes `{role: "system"}` messages inside `messages`.
- `anthropic_system_messages` (bool): keep mid-conversation system messages as `{role: "system"}` on an older
  version too (Claude Code's `mid-conversation-system-*` beta); otherwise they are folded into user turns.
"""

from translation.anthropic import request, response, stream
from translation.codec import Codec
from translation.dialect import Dialect

CODEC = Codec(Dialect.ANTHROPIC, request, response, stream)
"""This dialect's codec, checked against the contract in translation/codec.py."""

__all__ = ["CODEC"]
