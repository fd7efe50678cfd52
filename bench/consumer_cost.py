"""What the serving layer above the pipeline costs per request, in process: the ASGI application as shipped
(`URLRouter` → `DataPlaneConsumer`), the consumer with Channels' own `AsyncConsumer.__call__`
(bench/channels_dispatch.py, as it was before) and the bare ASGI function (bench/raw_router.py).

    python -m bench.consumer_cost [--requests 5000] [--rounds 7]

`pipeline.handle_http` is replaced by a stub that reads the body and answers `{}`, so only what differs between
the three is timed: routing, the consumer and its message handling. Each round times every variant in turn
(process CPU time, no I/O, one event loop), so background load on the machine shows as spread between rounds
rather than as a difference between variants; the minimum over rounds is reported. A request as daphne hands it
over: the head first (an empty `http.request` with `more_body`), then the body.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")

from bench import channels_dispatch, raw_router
from llmproxy_site.asgi import application as shipped
from routing.dataplane import pipeline
from routing.dataplane.asgi_io import Message, Request, Send

App = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Send], Awaitable[None]]
BODY = b'{"model": "bench-model", "messages": [{"role": "user", "content": "Hello"}]}'
SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "root_path": "",
    "scheme": "http",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer sk-llmp-bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ["127.0.0.1", 50000],
    "server": ["127.0.0.1", 8080],
    "asgi": {"version": "3.0"},
}
VARIANTS: dict[str, App] = {
    "consumer (shipped)": shipped,
    "consumer, Channels' __call__": channels_dispatch.application,
    "bare ASGI function": raw_router.application,
}


async def stub_handle_http(request: Request, read_body: Callable[[], Awaitable[bytes | None]], send: Send) -> None:
    await read_body()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def one_request(app: App) -> None:
    messages: asyncio.Queue[Message] = asyncio.Queue()
    messages.put_nowait({"type": "http.request", "body": b"", "more_body": True})
    messages.put_nowait({"type": "http.request", "body": BODY, "more_body": False})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(SCOPE), messages.get, send)
    assert sent[0]["status"] == 200


async def cpu_us_per_request(app: App, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await one_request(app)
    return (time.process_time() - started) / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    pipeline.handle_http = stub_handle_http  # type: ignore[assignment]
    for app in VARIANTS.values():
        await cpu_us_per_request(app, requests // 5)  # warm up
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, app in VARIANTS.items():
            times[name].append(await cpu_us_per_request(app, requests))
    floor = min(times["bare ASGI function"])
    print("| serving layer | CPU µs per request (min over rounds) | over the bare function | all rounds |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.1f} | +{min(values) - floor:.1f} | {', '.join(f'{v:.0f}' for v in values)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
