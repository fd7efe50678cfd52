"""What goes upstream for a generation, decided once per exchange: the client's body as it came (same API on
both sides, only `model` and credentials rewritten), or decoded, shaped and re-encoded for the upstream.

Same API but an alias that rewrites requests (routing.config.shaping), or a Responses conversation the proxy expands
from its own store: the request is re-encoded in its own dialect and the answer relayed untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from routing.config.shaping import merge_extra_body, shape
from routing.dataplane.codecs import codec_for
from routing.dataplane.exchange import Exchange, ExchangeError
from routing.dataplane.upstream_call import build_upstream_request
from translation.codec import TargetOptions
from translation.dialect import Dialect
from translation.ir import Message, Request, TranslationError, TranslationWarning, extras_for
from translation.openai_chat import wire as chat_wire
from translation.operation import Operation

# Anthropic requires max_tokens; when the client gave none, this is what an upstream of that dialect gets.
DEFAULT_MAX_OUTPUT_TOKENS = 8192

# Leftovers of objects the IR does model (Gemini's systemInstruction role, nested config fields the codec
# already accounted for): not features of their own.
_MODELLED_CONTAINERS = frozenset({"systemInstruction", "generationConfig", "toolConfig"})
# Fields the client's own stream encoder honours whatever the upstream: not lost in translation.
_CLIENT_SIDE_FIELDS = {Dialect.OPENAI_CHAT: chat_wire.CLIENT_SIDE_FIELDS}


@dataclass(frozen=True, slots=True)
class Plan:
    request: httpx.Request
    stream: bool
    translate_answer: bool  # the upstream speaks another API: its answer is decoded and re-encoded
    client_request: Request | None  # decoded client request (None: passed through without decoding)
    upstream_ir: Request | None  # what was encoded for the upstream
    conversation: tuple[Message, ...]  # history (previous_response_id expanded) + the client's messages
    hide_usage_chunk: bool = False  # the proxy asked a Chat upstream for a usage chunk the client did not


def note(exchange: Exchange, warnings: Sequence[TranslationWarning]) -> None:
    exchange.warnings.extend(w.feature for w in warnings)


def decode_client_request(exchange: Exchange, payload: Mapping[str, Any], *, noted: bool = True) -> Request:
    """The client's request in IR, decoded once per exchange (a scenario's choice and every attempt's plan read
    the same decode). `noted`: add its warnings to the exchange's (each attempt notes its own)."""
    decoded = exchange.client_request
    if decoded is None:
        endpoint = exchange.endpoint
        try:
            result = codec_for(endpoint.dialect).request.decode_request(payload, model=endpoint.model)
        except TranslationError as exc:
            raise ExchangeError(exc.to_api_error()) from exc
        request: Request = result.value
        if endpoint.stream is not None:
            request = dataclasses.replace(request, stream=endpoint.stream)
        decoded = exchange.client_request = (request, tuple(result.warnings))
    if noted:
        note(exchange, decoded[1])
    return decoded[0]


def plan_generation(
    exchange: Exchange, payload: dict[str, Any], history: tuple[Message, ...] | None, *, keep_conversation: bool
) -> Plan:
    """`history`: the conversation `previous_response_id` names, when the proxy keeps it (None: nothing to
    expand). `keep_conversation`: the answer will be remembered for a later continuation, so the
    conversation must be known in IR even when the body passes through."""
    route = exchange.upstream_route
    dialect = exchange.endpoint.dialect
    same_api = route.wire is dialect
    if same_api and history is None and not route.shaping.rewrites_requests:
        stream = exchange.endpoint.stream if exchange.endpoint.stream is not None else payload.get("stream") is True
        client_request = decode_client_request(exchange, payload) if keep_conversation else None
        if dialect is not Dialect.GEMINI:
            payload["model"] = route.upstream_model
        # Without it the ledger would see no usage; the client still gets only the chunks it asked for.
        hide_usage_chunk = dialect is Dialect.OPENAI_CHAT and chat_wire.usage_not_requested(payload)
        if hide_usage_chunk:
            chat_wire.with_usage_requested(payload)
        request = build_upstream_request(exchange, Operation.GENERATE, payload, stream)
        conversation = client_request.messages if client_request is not None else ()
        return Plan(request, stream, False, client_request, None, conversation, hide_usage_chunk)
    return _translated(exchange, payload, history or ())


def _unmapped_fields(request: Request, dialect: Dialect, warned: set[str]) -> list[str]:
    """Top-level fields of the client's API that no other API has (Claude Code's `context_management`,
    Codex's `store` and `include`): they cannot go upstream, so each is announced as `unmapped:<field>`."""
    skipped = warned | _MODELLED_CONTAINERS | _CLIENT_SIDE_FIELDS.get(dialect, frozenset())
    return [f"unmapped:{name}" for name in extras_for(request.extras, dialect) if name not in skipped]


def _flags(configured: Mapping[str, Any], *, same_api: bool) -> Mapping[str, Any]:
    """A client re-encoded in its own API keeps its native freeform tools: its answer is relayed untouched,
    so nothing would turn wrapped calls back (translation/custom_tools.py)."""
    return {"custom_tools": True, **configured} if same_api else configured


def _translated(exchange: Exchange, payload: dict[str, Any], history: Sequence[Message]) -> Plan:
    """Decode, shape and encode. `history` goes before the client's messages and the id is not sent (the
    upstream would not know it)."""
    endpoint = exchange.endpoint
    route = exchange.upstream_route
    upstream_format = route.wire
    same_api = upstream_format is endpoint.dialect
    decode_warnings = len(exchange.warnings)
    client_request = decode_client_request(exchange, payload)
    conversation = (*history, *client_request.messages)
    outgoing = dataclasses.replace(client_request, model=route.upstream_model)
    if history:
        outgoing = dataclasses.replace(outgoing, messages=conversation, previous_response_id=None)
    try:
        shaped = shape(outgoing, route.shaping, upstream_format)
        target = TargetOptions(
            model=route.upstream_model,
            default_max_output_tokens=min(DEFAULT_MAX_OUTPUT_TOKENS, shaped.output_cap or DEFAULT_MAX_OUTPUT_TOKENS),
            max_output_tokens_cap=shaped.output_cap,
            flags=_flags(route.upstream.translation_flags, same_api=same_api),
        )
        encoded = codec_for(upstream_format).request.encode_request(shaped.request, target)
    except TranslationError as exc:
        raise ExchangeError(exc.to_api_error()) from exc
    if not same_api:
        warned = set(exchange.warnings[decode_warnings:])
        exchange.warnings.extend(_unmapped_fields(client_request, endpoint.dialect, warned))
    exchange.warnings.extend(shaped.warnings)
    note(exchange, encoded.warnings)
    body = merge_extra_body(encoded.value, route.shaping.extra_body)
    request = build_upstream_request(exchange, Operation.GENERATE, body, client_request.stream)
    return Plan(request, client_request.stream, not same_api, client_request, shaped.request, conversation)
