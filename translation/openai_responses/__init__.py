"""The OpenAI Responses codec (`POST /v1/responses`, and its WebSocket mode): see translation/README.md."""

from translation.codec import Codec
from translation.dialect import Dialect
from translation.openai_responses import request, response, stream

CODEC = Codec(Dialect.OPENAI_RESPONSES, request, response, stream)
"""This dialect's codec, checked against the contract in translation/codec.py."""

__all__ = ["CODEC"]
