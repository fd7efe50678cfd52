"""Different dialects on the two sides: decode the client's request, encode it for the upstream, and turn
the upstream's answer (whole or streamed, event by event) back into the client's dialect."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import httpx

from routing.asgi_io import SSE_CONTENT_TYPE, SSE_EXTRA_HEADERS, SSE_HEADERS, send_bytes, send_json
from routing.codecs import codec_for
from routing.context import Exchange, ExchangeError
from routing.relay import (
    broken_stream_error,
    build_upstream_request,
    is_event_stream,
    open_upstream,
    read_body,
    relay_passthrough,
    relayed_headers,
    upstream_error,
)
from routing.shaping import merge_extra_body, shape
from routing.upstream import Operation
from translation.codec import ClientContext, TargetOptions
from translation.ir import Request, StreamError, TranslationError, TranslationWarning
from translation.sse import SSEParser
from translation.streaming import response_events

logger = logging.getLogger(__name__)

# Anthropic requires max_tokens; when the client gave none, this is what an upstream of that dialect gets.
DEFAULT_MAX_OUTPUT_TOKENS = 8192


def _note(exchange: Exchange, warnings: tuple[TranslationWarning, ...] | list[TranslationWarning]) -> None:
    for warning in warnings:
        logger.info("dropped %s: %s (%s)", warning.feature, warning.detail, warning.path or "-")
    exchange.warnings.extend(w.feature for w in warnings)


async def forward_translated(exchange: Exchange, payload: dict[str, Any]) -> None:
    """Decode, shape and encode the request; relay the answer, translating it when the APIs differ.

    Also serves same-API requests whose alias rewrites them (see routing.shaping): they are re-encoded in
    their own dialect and the answer is relayed untouched.
    """
    endpoint = exchange.endpoint
    route = exchange.upstream_route
    upstream_format = route.upstream.format
    try:
        decoded = codec_for(endpoint.dialect).request.decode_request(payload, model=endpoint.model)
        client_request: Request = decoded.value
        if endpoint.stream is not None:
            client_request = dataclasses.replace(client_request, stream=endpoint.stream)
        shaped = shape(dataclasses.replace(client_request, model=route.upstream_model), route.shaping, upstream_format)
        target = TargetOptions(
            model=route.upstream_model,
            default_max_output_tokens=min(DEFAULT_MAX_OUTPUT_TOKENS, shaped.output_cap or DEFAULT_MAX_OUTPUT_TOKENS),
            max_output_tokens_cap=shaped.output_cap,
            flags=route.upstream.translation_flags,
        )
        encoded = codec_for(upstream_format).request.encode_request(shaped.request, target)
    except TranslationError as exc:
        raise ExchangeError(exc.to_api_error()) from exc
    _note(exchange, decoded.warnings)
    exchange.warnings.extend(shaped.warnings)
    _note(exchange, encoded.warnings)

    stream = client_request.stream
    body = merge_extra_body(encoded.value, route.shaping.extra_body)
    upstream_request = build_upstream_request(exchange, Operation.GENERATE, body, stream)
    if upstream_format is endpoint.dialect:
        await relay_passthrough(exchange, upstream_request, stream)
        return
    client = ClientContext(request=client_request, created=int(time.time()))
    upstream_ir = shaped.request
    response = await open_upstream(exchange, upstream_request)
    try:
        if response.status_code >= 400:
            content = await read_body(exchange, response)
            raise upstream_error(exchange, response.status_code, content, response.headers.get("retry-after"))
        if not is_event_stream(response):
            await _relay_translated_whole(exchange, response, upstream_ir, client)
        else:
            await _relay_translated_stream(exchange, response, upstream_ir, client)
    finally:
        await response.aclose()


async def _relay_translated_whole(
    exchange: Exchange, response: httpx.Response, upstream_ir: Request, client: ClientContext
) -> None:
    content = await read_body(exchange, response)
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise upstream_error(exchange, 502, content, None) from exc
    decoded = codec_for(exchange.upstream_route.upstream.format).response.decode_response(body, request=upstream_ir)
    _note(exchange, decoded.warnings)
    client_codec = codec_for(exchange.endpoint.dialect)
    if client.request.stream:
        # The upstream answered a stream request in one piece: replay it as the stream the client expects.
        encoder = client_codec.stream.StreamEncoder(client)
        frames = [wire.sse() for event in response_events(decoded.value) for wire in encoder.feed(event)]
        frames += [wire.sse() for wire in encoder.finish()]
        _note(exchange, encoder.warnings)
        exchange.response_started = True
        headers = SSE_EXTRA_HEADERS + relayed_headers(exchange, response)
        await send_bytes(exchange.send, 200, b"".join(frames), SSE_CONTENT_TYPE, headers)
        return
    encoded = client_codec.response.encode_response(decoded.value, client)
    _note(exchange, encoded.warnings)
    exchange.response_started = True
    await send_json(exchange.send, 200, encoded.value, relayed_headers(exchange, response))


async def _relay_translated_stream(
    exchange: Exchange, response: httpx.Response, upstream_ir: Request, client: ClientContext
) -> None:
    send = exchange.send
    parser = SSEParser()
    decoder = codec_for(exchange.upstream_route.upstream.format).stream.StreamDecoder(upstream_ir)
    encoder = codec_for(exchange.endpoint.dialect).stream.StreamEncoder(client)
    headers = SSE_HEADERS + relayed_headers(exchange, response)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    exchange.response_started = True

    async def emit(frames: list[bytes]) -> None:
        if frames:
            await send({"type": "http.response.body", "body": b"".join(frames), "more_body": True})

    try:
        async for chunk in response.aiter_bytes():
            frames = [
                wire.sse()
                for event in parser.feed(chunk)
                for ir_event in decoder.feed(event)
                for wire in encoder.feed(ir_event)
            ]
            await emit(frames)
        tail = [ir for event in parser.flush() for ir in decoder.feed(event)] + decoder.finish()
    except httpx.HTTPError as exc:
        tail = [StreamError(broken_stream_error(exchange, exc))]
    frames = [wire.sse() for ir_event in tail for wire in encoder.feed(ir_event)]
    frames += [wire.sse() for wire in encoder.finish()]
    await emit(frames)
    _note(exchange, decoder.warnings)
    _note(exchange, encoder.warnings)
    await send({"type": "http.response.body", "body": b""})
