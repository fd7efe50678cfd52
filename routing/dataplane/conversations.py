"""Responses conversation state for upstreams that keep none: what `previous_response_id` refers to.

A Responses client continues a conversation by naming the previous response and sending only the new input
items. A Responses upstream resolves that itself; Anthropic, Chat and Gemini upstreams cannot, so the proxy
keeps, per response id, the whole conversation that went upstream plus the answer, and puts it in front of
the new input before translating (`routing.dataplane.plan`).

Two stores, one shape (translation IR, so signed reasoning and Gemini thought signatures go back to the
upstream that issued them, byte for byte), the same for both transports:

- `ConnectionHistory`: in memory, for one Responses WebSocket connection (Codex's WebSocket mode sends
  `store: false` and relies on the connection's state). Forgotten when the connection closes. It also
  expands ids for a Responses upstream, which with `store: false` has nothing stored either.
- The per-key store (`routing.runtime.stored_responses`), for every answer whose request did not say
  `store: false`, whichever transport created it: a response created over the WebSocket can be continued
  over HTTP and the other way round.

An unknown, expired or other key's id gets the Responses API's own not-found error.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.dataplane.exchange import Exchange, ExchangeError
from routing.runtime import stored_responses
from translation.codec import WireEvent
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind
from translation.ir import Message, Response, Role
from translation.ir.serde import to_json

# Entries one WebSocket connection keeps (Codex continues from the latest response; a bound keeps a
# connection that never closes from growing without end).
CONNECTION_HISTORY_LIMIT = 256

# The Responses events that end a response the client may continue with `previous_response_id`.
RESPONSES_FINISHED = ("response.completed", "response.incomplete")

# Told a finished answer: (the response id the client saw, the conversation sent upstream, the answer).
Keeper = Callable[[str, tuple[Message, ...], Response | None], None]


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
    """Response id -> the conversation up to and including that response, for one connection.

    Bounded in entries and in bytes: an entry costs what it adds to the one before it (a continuation shares
    its earlier messages with that entry), measured as their JSON; the oldest entries go first."""

    def __init__(self, limit: int = CONNECTION_HISTORY_LIMIT, max_bytes: int | None = None) -> None:
        self._limit = limit
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[tuple[Message, ...], int]] = OrderedDict()
        self._latest: tuple[Message, ...] = ()
        self.size = 0  # bytes, as counted above

    def get(self, response_id: str) -> tuple[Message, ...] | None:
        entry = self._entries.get(response_id)
        return entry[0] if entry is not None else None

    def remember(self, response_id: str, conversation: Sequence[Message], response: Response | None) -> None:
        messages = continued(conversation, response)
        cost = _added_bytes(self._latest, messages)
        previous = self._entries.pop(response_id, None)
        if previous is not None:
            self.size -= previous[1]
        self._entries[response_id] = (messages, cost)
        self._latest = messages
        self.size += cost
        while len(self._entries) > self._limit or (
            self._max_bytes is not None and self.size > self._max_bytes and len(self._entries) > 1
        ):
            _, (_, freed) = self._entries.popitem(last=False)
            self.size -= freed

    def clear(self) -> None:
        self._entries.clear()
        self._latest = ()
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)


def _added_bytes(before: tuple[Message, ...], after: tuple[Message, ...]) -> int:
    """The JSON size of the messages `after` holds beyond `before` (all of them unless `before` is a prefix)."""
    prefix = after[: len(before)]
    shared = (
        len(before) if len(prefix) == len(before) and all(a is b for a, b in zip(before, prefix, strict=True)) else 0
    )
    return len(json.dumps(to_json(list(after[shared:])), separators=(",", ":")))


def finished_response(data: dict[str, Any] | str) -> dict[str, Any] | None:
    """The Response object a finished Responses stream event carries (None for every other event)."""
    if not isinstance(data, dict) or data.get("type") not in RESPONSES_FINISHED:
        return None
    response = data.get("response")
    return response if isinstance(response, dict) else None


@dataclass(slots=True)
class Recorder:
    """Hands a finished Responses answer to its keepers, once. `conversation` is set when the request is
    planned (what went upstream)."""

    keepers: list[Keeper]
    conversation: tuple[Message, ...] = ()
    done: bool = field(default=False)

    def events(self, events: Sequence[WireEvent], answer: Callable[[dict[str, Any]], Response | None]) -> None:
        """Client-bound stream events went by; `answer` turns the finished Response body into IR."""
        if self.done:
            return
        for wire in events:
            finished = finished_response(wire.data)
            if finished is not None:
                self.body(finished, answer(finished))
                return

    def body(self, body: dict[str, Any], response: Response | None) -> None:
        """A whole Responses body went to the client."""
        response_id = body.get("id")
        if self.done or not isinstance(response_id, str) or body.get("status") not in ("completed", "incomplete"):
            return
        self.done = True
        for keep in self.keepers:
            keep(response_id, self.conversation, response)


async def continuation(
    exchange: Exchange, payload: dict[str, Any], connection: ConnectionHistory | None = None
) -> tuple[tuple[Message, ...] | None, Recorder | None]:
    """For a Responses client: the history its `previous_response_id` names when the proxy keeps it (None
    when there is nothing to expand; the not-found error when nobody knows it), and who keeps the answer."""
    if exchange.endpoint.dialect is not Dialect.OPENAI_RESPONSES:
        return None, None
    upstream_keeps_state = exchange.upstream_route.wire is Dialect.OPENAI_RESPONSES
    key = exchange.key
    history: tuple[Message, ...] | None = None
    previous = payload.get("previous_response_id")
    if previous is not None:
        if not isinstance(previous, str) or not previous:
            message = "previous_response_id must be a string"
            raise ExchangeError(ApiError(ErrorKind.INVALID_REQUEST, message, param="previous_response_id"))
        history = connection.get(previous) if connection is not None else None
        if history is None and not upstream_keeps_state:
            history = await stored_responses.load(key.id, previous) if key is not None else None
            if history is None:
                raise ExchangeError(not_found(previous))
    keepers: list[Keeper] = []
    if connection is not None:
        keepers.append(connection.remember)
    if key is not None and payload.get("store") is not False and not upstream_keeps_state:
        key_id = key.id

        def keep_for_key(response_id: str, conversation: tuple[Message, ...], response: Response | None) -> None:
            if response is not None:
                stored_responses.save(key_id, response_id, conversation, response)

        keepers.append(keep_for_key)
    return history, Recorder(keepers) if keepers else None
