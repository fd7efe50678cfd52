"""The client of bench/slow_streams.sh: open N Anthropic Messages streams at once, read each to its end, and
watch one process's resident memory meanwhile. Prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

BODY = {
    "model": "claude-3-5-sonnet-20241022",
    "max_tokens": 256,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello slowly."}],
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one(session: aiohttp.ClientSession, url: str, key: str, chunks: int) -> tuple[str, float]:
    started = time.perf_counter()
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    try:
        async with session.post(url, json=BODY, headers=headers) as response:
            if response.status != 200:
                return f"status {response.status}", 0.0
            deltas, stopped, first = 0, False, 0.0
            async for line in response.content:
                if line.startswith(b"data: ") and b'"text_delta"' in line:
                    deltas += 1
                    first = first or time.perf_counter() - started
                stopped = stopped or line.startswith(b"event: message_stop")
            return ("ok" if stopped and deltas == chunks else f"incomplete ({deltas} deltas)"), first
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:120], 0.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--watch-pid", type=int, required=True)
    args = parser.parse_args()

    peak = rss_mb(args.watch_pid)
    idle = peak
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(args.watch_pid))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        results = await asyncio.gather(*(one(session, args.url, args.key, args.chunks) for _ in range(args.streams)))
    elapsed = time.perf_counter() - started
    done.set()
    await watcher
    outcomes: dict[str, int] = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    firsts = sorted(first for outcome, first in results if outcome == "ok")
    print(
        json.dumps(
            {
                "streams": args.streams,
                "completed": outcomes.get("ok", 0),
                "outcomes": outcomes,
                "seconds": round(elapsed, 1),
                "ttft_p50_ms": round(firsts[len(firsts) // 2] * 1000, 1) if firsts else None,
                "ttft_max_ms": round(firsts[-1] * 1000, 1) if firsts else None,
                "worker_rss_idle_mb": round(idle, 1),
                "worker_rss_peak_mb": round(peak, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
