"""A lean streaming load client: raw HTTP/1.1 over asyncio, so the measuring costs little CPU itself.

Measures time to first event and total time of SSE responses at a fixed concurrency.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class StreamStats:
    requests: int
    ttft_ms_p50: float
    ttft_ms_p99: float
    total_ms_p50: float
    errors: int


def _request_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(host: str, port: int, payload: bytes) -> tuple[float, float]:
    """Time to the first SSE data line and to the end of the chunked body, on a fresh connection."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        writer.close()
        raise RuntimeError(status.decode(errors="replace"))
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    first = None
    while True:
        size_line = await reader.readline()
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        if first is None and b"data:" in chunk:
            first = time.perf_counter()
    end = time.perf_counter()
    writer.close()
    return ((first or end) - start) * 1000, (end - start) * 1000


async def run(url: str, body: bytes, headers: dict[str, str], concurrency: int, total: int) -> StreamStats:
    parts = urlsplit(url)
    payload = _request_bytes(url, body, headers)
    results: list[tuple[float, float]] = []
    errors = 0
    queue = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for _ in queue:
            try:
                results.append(await _one(parts.hostname or "127.0.0.1", parts.port or 80, payload))
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ttfts = sorted(r[0] for r in results) or [0.0]
    totals = sorted(r[1] for r in results) or [0.0]
    return StreamStats(
        requests=len(results),
        ttft_ms_p50=statistics.median(ttfts),
        ttft_ms_p99=ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))],
        total_ms_p50=statistics.median(totals),
        errors=errors,
    )
