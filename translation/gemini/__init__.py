"""Gemini generateContent codec (`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`).

Modules: `request.py`, `response.py`, `stream.py` (the contract in translation/README.md); `parts.py` (content parts
both ways), `tools.py` (declarations and toolConfig), `config.py` (generationConfig), `schema.py` (JSON Schema <->
Gemini Schema), `wire.py` (roles, finish reasons, usage, signatures, ids).

Choices:
- Tool parameters go upstream as `parametersJsonSchema` (the full JSON Schema, what the Gemini CLI itself sends), and
  structured output as `responseJsonSchema`. `TargetOptions.flags["gemini_schema_subset"] = True` sends the
  OpenAPI-subset `parameters` / `responseSchema` instead, sanitised by `schema.to_gemini_schema` (pitfall 13).
- `TargetOptions.flags["gemini_dummy_thought_signature"] = True` puts the documented dummy
  `skip_thought_signature_validator` on the first functionCall of a model turn that carries no Gemini signature
  (history that came from another model; pitfall 35). Never on by default.
- Ids: the Gemini decoders synthesise `call_<n>` (requests) / `call_<responseId>_<n>` (responses) when a
  functionCall has none and mark them `syntheticId` in the part's extras, so a Gemini encoder leaves them out again.
- Gemini thoughts (`thought: true`) are thought summaries: they decode to `ReasoningPart(summary=True)`. Unsigned
  reasoning is not sent back to Gemini (it ignores thought text in history; only signatures matter).
"""

from translation.codec import Codec
from translation.dialect import Dialect
from translation.gemini import request, response, stream

CODEC = Codec(Dialect.GEMINI, request, response, stream)
"""This dialect's codec, checked against the contract in translation/codec.py."""

__all__ = ["CODEC"]
