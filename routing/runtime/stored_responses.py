"""The per-key store of Responses answers for `previous_response_id` (the `StoredResponse` table), shared by
HTTP and the Responses WebSocket of every worker: written after each answer whose request did not say
`store: false`, on the database thread without waiting for it; entries expire after `RESPONSE_STORE_TTL`
seconds, entries over `RESPONSE_STORE_MAX_BYTES` are not kept, and a key keeps at most
`RESPONSE_STORE_MAX_PER_KEY` (the oldest go first). Expired rows are deleted on the next write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from routing.models import StoredResponse
from routing.runtime.database import run_db
from translation.ir import Message, Part, Response, Role
from translation.ir.serde import from_json, to_json

logger = logging.getLogger(__name__)

# A miss is looked up once more after this long: another worker process may still be writing the entry.
RETRY_MISS_AFTER = 0.3


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
