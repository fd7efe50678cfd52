"""The staff live view: exchanges in flight and the latest finished ones, pushed over a WebSocket.

Every server process knows only its own exchanges (`usage.ledger.in_flight` and `recent`). Each publishes
them, keyed by its process id, to the Channels group `GROUP`, and every open page (`LiveConsumer`, one per
WebSocket at `WS_PATH`) is in that group and merges what the processes send. With the in-memory channel layer
that is one process; with Redis (`REDIS_URL`) every process of every host reaches every page.

`publish_live()` runs about twice a second in each process (a job of routing.runtime.worker) and is
built to cost nothing when nobody watches and when nothing changed:

- Pages announce themselves: on connect, and every `WATCH_HEARTBEAT_SECONDS` while open, a page sends
  "live.watch" to `PUBLISHERS_GROUP`, where each process's listener (one channel per process) hears it.
  A process that has not heard from a page for `WATCH_TTL_SECONDS` publishes nothing and does not even
  look at its state: one comparison per tick.
- While watched, a process sends one group message in a tick only when its in-flight or finished exchanges
  changed since its last message, and every `REPUBLISH_SECONDS` regardless, so that a page that just opened
  gets the full picture (a new page also makes every process send at once, on its next tick) and a page can
  drop a process it has not heard from for a while.

Each state carries its process's clock (`sent_at`), so a page computes elapsed times against that clock.
Only names are sent (user, model, alias, upstream), never a key or its prefix; the page is for staff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from routing.runtime.worker import worker
from usage import ledger
from usage.ledger import ExchangeRecord
from usage.views import staff_required

logger = logging.getLogger(__name__)

WS_PATH = "/dashboard/live/ws"
GROUP = "llmproxy.live"  # the pages
PUBLISHERS_GROUP = "llmproxy.live.publishers"  # one listener channel per server process

REPUBLISH_SECONDS = 5.0
WATCH_HEARTBEAT_SECONDS = 5.0
WATCH_TTL_SECONDS = 3 * WATCH_HEARTBEAT_SECONDS
# A listener rejoins its group this often, well inside the channel layer's group expiry (one day by default).
REJOIN_SECONDS = 3600.0
# After the channel layer failed (Redis unreachable), the listener is not restarted for this long.
LISTENER_RETRY_SECONDS = 10.0
RECENT_SHOWN = 50
ERROR_SHOWN = 200

Signature = tuple[tuple[tuple[Any, ...], ...], str | None]


def process_id() -> str:
    """This server process, as the pages tell processes apart: pid@host."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _in_flight_item(record: ExchangeRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "started_at": record.started_at,
        "user": record.username,
        "model": record.requested_model,
        "alias": record.alias,
        "upstream": record.upstream,
        "upstream_model": record.upstream_model,
        "dialect": record.dialect,
        "endpoint": record.endpoint,
        "operation": str(record.operation),
        "stream": record.stream,
        "client": record.client_program,
        "output_started": record.first_output is not None,
        "output_tokens": record.usage.output_tokens,
    }


def _finished_item(record: ExchangeRecord) -> dict[str, Any]:
    item = _in_flight_item(record)
    duration = record.duration
    ttft = record.first_output - record.started if record.first_output is not None else None
    usage = record.usage
    error = ": ".join(part for part in (record.error_type, record.error_message) if part)
    item.update(
        {
            "finished_at": record.started_at + duration,
            "duration_ms": round(duration * 1000),
            "ttft_ms": round(ttft * 1000) if ttft is not None else None,
            "outcome": str(record.outcome),
            "status": record.status,
            "input_tokens": usage.input_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_tokens": usage.output_tokens,
            "usage_partial": record.usage_partial,
            "error": error[:ERROR_SHOWN],
        }
    )
    return item


def current_state() -> dict[str, Any]:
    """This process's exchanges as a page receives them (JSON-ready)."""
    recent = list(ledger.recent)[-RECENT_SHOWN:]
    return {
        "type": "state",
        "process": process_id(),
        "sent_at": time.time(),
        "in_flight": [_in_flight_item(record) for record in list(ledger.in_flight.values())],
        "recent": [_finished_item(record) for record in reversed(recent)],
    }


def _signature() -> Signature:
    """What a page shows, less the ticking clocks: equal signatures mean there is nothing new to send."""
    flight = tuple(
        (
            r.id,
            r.username,
            r.requested_model,
            r.alias,
            r.upstream,
            r.upstream_model,
            r.stream,
            r.first_output is not None,
            r.usage.output_tokens,
        )
        for r in ledger.in_flight.values()
    )
    return flight, (ledger.recent[-1].id if ledger.recent else None)


class Publisher:
    """This process's side of the live view (one per process: `publisher`)."""

    def __init__(self) -> None:
        self.watched_until = 0.0  # time.monotonic()
        self.last_signature: Signature | None = None
        self.last_sent = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._listener_loop: asyncio.AbstractEventLoop | None = None
        self._listener_failed = -LISTENER_RETRY_SECONDS
        self._send_failed = -LISTENER_RETRY_SECONDS

    def watched(self, *, new_viewer: bool = False) -> None:
        """A page is open (it says so every few seconds). A new one gets everything on the next tick."""
        self.watched_until = time.monotonic() + WATCH_TTL_SECONDS
        if new_viewer:
            self.last_signature = None

    async def publish(self) -> bool:
        """One tick: send this process's state to the pages if someone watches and something changed (or a
        republish is due). Returns whether a message was sent."""
        self._ensure_listening()
        now = time.monotonic()
        if now >= self.watched_until:
            return False
        signature = _signature()
        if signature == self.last_signature and now - self.last_sent < REPUBLISH_SECONDS:
            return False
        if now - self._send_failed < LISTENER_RETRY_SECONDS:
            return False
        layer = get_channel_layer()
        if layer is None:
            return False
        state = current_state()
        self.last_signature, self.last_sent = signature, now
        try:
            await layer.group_send(GROUP, {"type": "live.state", "state": state})
        except Exception as exc:
            # Redis unreachable: say so once per pause instead of twice a second.
            self._send_failed = now
            self.last_signature = None
            logger.warning(
                "live view: cannot publish on the channel layer (%s); retrying in %.0f s", exc, LISTENER_RETRY_SECONDS
            )
            return False
        return True

    def _ensure_listening(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is not None and not self._listener.done() and self._listener_loop is loop:
            return
        if time.monotonic() - self._listener_failed < LISTENER_RETRY_SECONDS:
            return
        self._listener_loop = loop
        self._listener = loop.create_task(self._listen(), name="llmproxy-live-listener")

    async def _listen(self) -> None:
        """Hear pages announce themselves (on this process's own channel in `PUBLISHERS_GROUP`)."""
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            channel = await layer.new_channel()
            while True:
                await layer.group_add(PUBLISHERS_GROUP, channel)
                rejoin = time.monotonic() + REJOIN_SECONDS
                while (left := rejoin - time.monotonic()) > 0:
                    try:
                        message = await asyncio.wait_for(layer.receive(channel), timeout=left)
                    except TimeoutError:
                        break
                    if message.get("type") == "live.watch":
                        # A new page of this process got this process's state directly on connect.
                        new = bool(message.get("new")) and message.get("process") != process_id()
                        self.watched(new_viewer=new)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._listener_failed = time.monotonic()
            logger.warning("live view: cannot listen on the channel layer", exc_info=True)

    async def stop(self) -> None:
        """Stop listening and forget who watched (tests; each test has its own event loop)."""
        task, self._listener, self._listener_loop = self._listener, None, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
        self.watched_until = 0.0
        self.last_signature = None
        self.last_sent = 0.0
        self._listener_failed = -LISTENER_RETRY_SECONDS
        self._send_failed = -LISTENER_RETRY_SECONDS


publisher = Publisher()


async def publish_live() -> None:
    """A job of the process's background worker, every pass (see the module docstring)."""
    await publisher.publish()


worker.register("live view", publish_live)


class LiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One open live page (staff only): receives every process's state, and this process's at once."""

    _heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not (user.is_authenticated and user.is_active and user.is_staff):
            await self.close()  # before accepting: the upgrade is refused (HTTP 403)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        # This process's state at once; the other processes send theirs on their next tick.
        await self.send_json(current_state())
        publisher.watched()
        await self._announce(new=True)
        self._heartbeat = asyncio.create_task(self._keep_announcing())

    async def _announce(self, *, new: bool) -> None:
        try:
            await self.channel_layer.group_send(
                PUBLISHERS_GROUP, {"type": "live.watch", "new": new, "process": process_id()}
            )
        except Exception:
            logger.warning("live view: cannot reach the channel layer", exc_info=True)

    async def _keep_announcing(self) -> None:
        while True:
            await asyncio.sleep(WATCH_HEARTBEAT_SECONDS)
            publisher.watched()
            await self._announce(new=False)

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that matters."""

    async def live_state(self, event: dict[str, Any]) -> None:
        await self.send_json(event["state"])


@staff_required
def live_page(request: HttpRequest) -> HttpResponse:
    """The page; its script (usage/live.js) opens the WebSocket and renders what arrives."""
    return render(request, "usage/live.html", {"ws_path": WS_PATH})
