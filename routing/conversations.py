"""Responses conversation state for upstreams that keep none: what `previous_response_id` refers to.

A Responses client continues a conversation by naming the previous response and sending only the new input
items. A Responses upstream resolves that itself; Anthropic, Chat and Gemini upstreams cannot, so the proxy
keeps, per response id, the whole conversation that went upstream plus the answer, and puts it in front of
the new input before translating (`routing.translated.prepare_translated(history=…)`).

Two stores, one shape (translation IR, so signed reasoning and Gemini thought signatures go back to the
upstream that issued them, byte for byte):

- `ConnectionHistory`: in memory, for one Responses WebSocket connection (Codex's WebSocket mode sends
  `store: false` and relies on the connection's state). Forgotten when the connection closes.
- The database (`StoredResponse`), for HTTP: per proxy key, written after each answer whose request did not
  say `store: false`, on the database thread without waiting for it; entries expire after
  `RESPONSE_STORE_TTL` seconds, entries over `RESPONSE_STORE_MAX_BYTES` are not kept, and a key keeps at most
  `RESPONSE_STORE_MAX_PER_KEY` (the oldest go first). Expired rows are deleted on the next write.

An unknown, expired or other key's id gets the Responses API's own not-found error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from routing.context import Exchange, ExchangeError
from routing.live import run_db
from routing.models import StoredResponse
from routing.translated import OnResponse
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.ir import Message, Part, Response, Role
from translation.ir.serde import from_json, to_json

logger = logging.getLogger(__name__)

# Entries one WebSocket connection keeps (Codex continues from the latest response; a bound keeps a
# connection that never closes from growing without end).
CONNECTION_HISTORY_LIMIT = 256
# A miss is looked up once more after this long: another worker process may still be writing the entry.
RETRY_MISS_AFTER = 0.3


def not_found(response_id: str) -> ApiError:
    """What OpenAI answers for an unknown `previous_response_id` (404 invalid_request_error)."""
    return ApiError(
        ErrorKind.NOT_FOUND,
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def continued(conversation: Sequence[Message], response: Response | None) -> tuple[Message, ...]:
    """The history a continuation of `response` starts from: what went upstream, then the answer."""
    if response is None or not response.parts:
        return tuple(conversation)
    return (*conversation, Message(Role.ASSISTANT, response.parts))


class ConnectionHistory:
    """Response id -> the conversation up to and including that response, for one connection."""

    def __init__(self, limit: int = CONNECTION_HISTORY_LIMIT) -> None:
        self._limit = limit
        self._entries: OrderedDict[str, tuple[Message, ...]] = OrderedDict()

    def get(self, response_id: str) -> tuple[Message, ...] | None:
        return self._entries.get(response_id)

    def remember(self, response_id: str, conversation: Sequence[Message], response: Response | None) -> None:
        self._entries[response_id] = continued(conversation, response)
        self._entries.move_to_end(response_id)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# -- the database store (HTTP) -------------------------------------------------------------------------------


def _write(key_id: int, response_id: str, conversation: tuple[Message, ...], response: Response) -> None:
    conversation_json = to_json(conversation)
    output_json = to_json(response.parts)
    size = len(json.dumps(conversation_json)) + len(json.dumps(output_json))
    now = timezone.now()
    StoredResponse.objects.filter(expires_at__lte=now).delete()
    if size > settings.RESPONSE_STORE_MAX_BYTES:
        logger.warning(
            "response %s not stored for previous_response_id: %d bytes is over RESPONSE_STORE_MAX_BYTES",
            response_id,
            size,
        )
        return
    StoredResponse.objects.update_or_create(
        key_id=key_id,
        response_id=response_id,
        defaults={
            "expires_at": now + timedelta(seconds=settings.RESPONSE_STORE_TTL),
            "size": size,
            "conversation": conversation_json,
            "output": output_json,
        },
    )
    surplus = list(
        StoredResponse.objects.filter(key_id=key_id)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)[settings.RESPONSE_STORE_MAX_PER_KEY :]
    )
    if surplus:
        StoredResponse.objects.filter(id__in=surplus).delete()


def _read(key_id: int, response_id: str) -> tuple[Message, ...] | None:
    row = (
        StoredResponse.objects.filter(key_id=key_id, response_id=response_id, expires_at__gt=timezone.now())
        .values_list("conversation", "output")
        .first()
    )
    if row is None:
        return None
    conversation: list[Any] = row[0]
    output: list[Any] = row[1]
    messages = tuple(from_json(Message, m) for m in conversation)
    parts: tuple[Part, ...] = tuple(from_json(Part, p) for p in output)
    return (*messages, Message(Role.ASSISTANT, parts)) if parts else messages


_pending_writes: set[asyncio.Future[None]] = set()


def save(key_id: int, response_id: str, conversation: tuple[Message, ...], response: Response) -> None:
    """Queue the write on the database thread and return at once (the answer is not held up by it).

    The database thread runs one job at a time in order, so a lookup this process makes later sees the row.
    """
    future = asyncio.ensure_future(run_db(lambda: _write(key_id, response_id, conversation, response)))
    _pending_writes.add(future)
    future.add_done_callback(_write_done)


def _write_done(future: asyncio.Future[None]) -> None:
    _pending_writes.discard(future)
    if not future.cancelled() and future.exception() is not None:
        logger.error("storing a response for previous_response_id failed", exc_info=future.exception())


async def load(key_id: int, response_id: str) -> tuple[Message, ...] | None:
    history = await run_db(lambda: _read(key_id, response_id))
    if history is None:
        await asyncio.sleep(RETRY_MISS_AFTER)
        history = await run_db(lambda: _read(key_id, response_id))
    return history


async def http_continuation(
    exchange: Exchange, payload: dict[str, Any]
) -> tuple[tuple[Message, ...], OnResponse | None]:
    """For a Responses request going to an upstream of another API: the history its `previous_response_id`
    names (or the not-found error), and what to do with the answer (store it, unless `store: false`)."""
    route = exchange.upstream_route
    if exchange.endpoint.dialect is not Dialect.OPENAI_RESPONSES or route.upstream.format is Dialect.OPENAI_RESPONSES:
        return (), None
    key = exchange.key
    history: tuple[Message, ...] = ()
    previous = payload.get("previous_response_id")
    if previous is not None:
        if not isinstance(previous, str) or not previous:
            raise ExchangeError(
                ApiError(
                    ErrorKind.INVALID_REQUEST, "previous_response_id must be a string", param="previous_response_id"
                )
            )
        found = await load(key.id, previous) if key is not None else None
        if found is None:
            raise ExchangeError(not_found(previous))
        history = found
    if key is None or payload.get("store") is False:
        return history, None
    key_id = key.id

    def on_response(response_id: str, conversation: tuple[Message, ...], response: Response) -> None:
        save(key_id, response_id, conversation, response)

    return history, on_response
