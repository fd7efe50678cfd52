"""AWS Bedrock Converse codec (`POST /model/{modelId}/converse` and `/converse-stream`), both directions,
streaming included.

Modules: `request.py`, `response.py`, `stream.py` (the contract in translation/README.md); `content.py` (content
blocks both ways), `tools.py` (toolConfig), `reasoning.py` (additionalModelRequestFields per model family),
`errors.py` (stream exceptions), `wire.py` (stop reasons, usage, cache points, signatures, ids), and
`eventstream.py`: the binary AWS event-stream framing of `converse-stream` (`EventStreamParser`, the SSEParser of
this dialect, and `encode_wire_event` / `encode_message`, what `WireEvent.sse()` is for the others).

Choices:
- The model id is the URL path, as with Gemini: `decode_request(body, model=…)`, and `encode_request` writes none.
- `TargetOptions.flags["bedrock_model_family"]` ("anthropic", "nova", "openai") says how to ask for reasoning in
  `additionalModelRequestFields` when the model id does not tell (application inference profile ARNs).
- Reasoning signatures are Bedrock's own (`SignatureKind.BEDROCK_SIGNATURE` / `BEDROCK_REDACTED`): Claude's
  signatures are only sent back to Bedrock, and reasoning signed elsewhere is dropped from Bedrock history.
- Usage: `inputTokens` excludes the cache buckets, as Anthropic's (`Usage.from_bedrock`).
- Errors: `translation.errors.error_body(Dialect.BEDROCK, …)` is `{"message": …}`; the exception name goes in the
  `x-amzn-ErrorType` header (`translation.errors.error_headers`).
"""

from translation.bedrock import request, response, stream
from translation.codec import Codec
from translation.dialect import Dialect

CODEC = Codec(Dialect.BEDROCK, request, response, stream)
"""This dialect's codec, checked against the contract in translation/codec.py."""

__all__ = ["CODEC"]
