"""OpenAI Chat Completions codec (`POST /v1/chat/completions`), both directions, streaming included.

`TargetOptions.flags` this codec reads when encoding an upstream request:
- `echo_reasoning_content` (bool, default False): send reasoning text back as the non-standard
  `reasoning_content` on assistant messages that carry tool calls (DeepSeek/Kimi require it, pitfall 36).
  The older spelling `reasoning_content` is accepted too.
- `reasoning_model` (bool): treat the upstream model as an OpenAI reasoning model (send
  `max_completion_tokens`, drop temperature/top_p) whatever its name; default: by model name (o1/o3/o4/gpt-5).
- `max_tokens_field` ("max_tokens" | "max_completion_tokens"): force the output-limit field name.
- `reasoning_effort` (bool): force sending (or never sending) `reasoning_effort`; default: sent unless the
  model is a known non-reasoning OpenAI model (gpt-3.5/gpt-4*/chatgpt-*), which reject it.
- `developer_role` (bool): send DEVELOPER messages as `developer`; default: only for OpenAI model names
  (gpt-*, o1/o3/o4, chatgpt-*), `system` otherwise, since many OpenAI-compatible servers lack the role.
- `prompt_cache_breakpoints` (bool, default True): emit `prompt_cache_breakpoint` for IR cache hints.
- `custom_tools` (bool, default False): the upstream takes Chat `custom` (freeform) tools as they are (OpenAI).
  Otherwise a CUSTOM tool is a function taking one string `input`, the grammar in its description, and calls
  to it come back as CUSTOM calls (translation/custom_tools.py, pitfall 16).
"""

from translation.codec import Codec
from translation.dialect import Dialect
from translation.openai_chat import request, response, stream

CODEC = Codec(Dialect.OPENAI_CHAT, request, response, stream)
"""This dialect's codec, checked against the contract in translation/codec.py."""

__all__ = ["CODEC"]
