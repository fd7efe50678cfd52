"""Token counting for every client API: the upstream's own count when its API has one, else an estimate.

Counting never answers 404: Anthropic `count_tokens`, Gemini `countTokens` and Responses `input_tokens` are
served for any upstream. A request whose upstream speaks the client's API is passed through (routing.dataplane.relay);
this module handles the rest, through the same upstream call (routing.dataplane.upstream_call).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from routing.dataplane.codecs import codec_for
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.upstream_call import build_upstream_request, open_upstream, read_body
from routing.upstream import bedrock
from translation import catalog
from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.estimate import estimate_input_tokens
from translation.ir import Request, TranslationError
from translation.operation import Operation

logger = logging.getLogger(__name__)


async def count_tokens(exchange: Exchange, payload: dict[str, Any]) -> None:
    endpoint = exchange.endpoint
    route = exchange.upstream_route
    try:
        request: Request = codec_for(endpoint.dialect).request.decode_request(payload, model=endpoint.model).value
    except TranslationError as exc:
        raise ExchangeError(exc.to_api_error()) from exc
    upstream_format = route.wire
    counted = None
    # Chat Completions has no counting endpoint, and Bedrock's takes another body: both are estimated.
    if upstream_format is not Dialect.OPENAI_CHAT and route.upstream.provider != bedrock.KIND:
        counted = await _upstream_count(exchange, dataclasses.replace(request, model=route.upstream_model))
    headers = []
    if counted is None:
        counted = estimate_input_tokens(request)
        headers.append((b"x-llmproxy-estimated", b"true"))
    await exchange.sink.json(200, catalog.token_count(endpoint.dialect, counted), headers)


async def _upstream_count(exchange: Exchange, request: Request) -> int | None:
    """The upstream's count, or None when it cannot give one (then the caller estimates)."""
    route = exchange.upstream_route
    dialect = route.wire
    try:
        target = TargetOptions(model=route.upstream_model, default_max_output_tokens=1024)
        encoded = codec_for(dialect).request.encode_request(request, target).value
    except TranslationError:
        return None
    body = catalog.token_count_request(dialect, encoded, route.upstream_model)
    upstream_request = build_upstream_request(exchange, Operation.COUNT_TOKENS, body, stream=False)
    try:
        response = await open_upstream(exchange, upstream_request)
        try:
            content = await read_body(exchange, response)
        finally:
            await response.aclose()
    except ExchangeError as exc:
        logger.info("upstream %s could not count tokens (%s); estimating", route.upstream.name, exc)
        return None
    if response.status_code != 200:
        logger.info("upstream %s answered %s to a token count; estimating", route.upstream.name, response.status_code)
        return None
    try:
        return catalog.read_token_count(dialect, json.loads(content))
    except ValueError:
        return None
