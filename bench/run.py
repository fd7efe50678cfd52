"""What the proxy adds to a request: throughput, latency, time to first token, CPU and memory, on loopback.

    python -m bench.run [--duration 5] [--servers daphne,uvicorn,django-view] [--quick]
    python -m bench.run --compare daphne,channels-dispatch,raw-router [--rounds 6] [--concurrency 16]

Starts the fake OpenAI-compatible upstream (tests/fakes) as its own process, then for each server variant a
proxy process on a throw-away SQLite database, and drives both with wrk (non-streaming) and a lean asyncio
client (streaming). The same requests also go straight to the fake, which is the floor. Results are printed
as Markdown and written to bench/results/latest.json; docs/benchmarks.md records them with the machine.

`--compare A,B[,C...]` runs the servers at once and alternates wrk runs between them on the pass-through path
(the order rotating from round to round), so that all see the same background load; it prints each round and,
for each server against the last one named, the median of the per-round ratios (bench/results/compare.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench import streamclient

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SERVERS = {
    # "daphne" is the server `make run` starts: daphne with the request limits (llmproxy_site.server).
    "daphne": ["-m", "llmproxy_site.server", "-b", "127.0.0.1", "-p", "{port}", "llmproxy_site.asgi:application"],
    "uvicorn": [
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
        "llmproxy_site.asgi:application",
    ],
    "raw-router": ["-m", "llmproxy_site.server", "-b", "127.0.0.1", "-p", "{port}", "bench.raw_router:application"],
    "channels-dispatch": [
        "-m",
        "llmproxy_site.server",
        "-b",
        "127.0.0.1",
        "-p",
        "{port}",
        "bench.channels_dispatch:application",
    ],
    "django-view": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.django_view:application"],
}


@dataclass
class Path_:
    name: str
    url: str
    body: dict[str, object]
    headers: dict[str, str]


@dataclass
class Result:
    scenario: str
    server: str
    rps: dict[int, float] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    cpu_ms_per_request: float | None = None
    ttft_ms: dict[int, float] = field(default_factory=dict)
    stream_total_ms: dict[int, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise RuntimeError(f"cannot read wrk latency {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(target: Path_, connections: int, duration: float, workdir: Path) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, requests) for `connections` keep-alive connections."""
    script = workdir / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(target.body))}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in {"Content-Type": "application/json", **target.headers}.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script), target.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{target.name}: errors under load\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, total


def configure(workdir: Path, upstream_url: str) -> tuple[dict[str, str], str]:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}", LOG_LEVEL="WARNING")
    config = workdir / "proxy.yaml"
    config.write_text(
        "upstreams:\n"
        f"  - {{name: chat, format: openai-chat, base_url: '{upstream_url}/v1'}}\n"
        "aliases:\n"
        "  - {name: bench-model, upstream: chat, model: upstream-model}\n"
    )
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "importconfig", str(config)], env=env, check=True, cwd=ROOT, capture_output=True)
    key = subprocess.run(
        [*manage, "createkey", "--user", "bench", "--create-user"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return env, key


def targets(upstream_url: str, proxy_url: str | None, key: str, stream: bool) -> list[Path_]:
    chat = {"messages": [{"role": "user", "content": "Hello"}], **({"stream": True} if stream else {})}
    if proxy_url is None:
        return [Path_("direct", upstream_url + "/v1/chat/completions", {"model": "upstream-model", **chat}, {})]
    messages = {"max_tokens": 256, **chat}
    return [
        Path_(
            "chat → chat (pass-through)",
            proxy_url + "/v1/chat/completions",
            {"model": "bench-model", **chat},
            {"Authorization": f"Bearer {key}"},
        ),
        Path_(
            "messages → chat (translated)",
            proxy_url + "/v1/messages",
            {"model": "bench-model", **messages},
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
        ),
    ]


def measure(target: Path_, server: str, pid: int | None, args: argparse.Namespace, workdir: Path) -> Result:
    result = Result(target.name, server)
    for connections in args.concurrency:
        before = cpu_seconds(pid) if pid else 0.0
        rps, p50, p99, total = wrk(target, connections, args.duration, workdir)
        result.rps[connections] = round(rps)
        if connections == 1:
            result.latency_p50_ms, result.latency_p99_ms = round(p50, 2), round(p99, 2)
        if pid and connections == 16:
            result.cpu_ms_per_request = round((cpu_seconds(pid) - before) * 1000 / total, 2)
    return result


def measure_stream(target: Path_, result: Result, args: argparse.Namespace) -> None:
    body = json.dumps(target.body).encode()
    headers = {"Content-Type": "application/json", **target.headers}
    for connections in (1, 16):
        stats = asyncio.run(streamclient.run(target.url, body, headers, connections, args.stream_requests))
        if stats.errors:
            raise RuntimeError(f"{target.name}: {stats.errors} streaming errors")
        result.ttft_ms[connections] = round(stats.ttft_ms_p50, 2)
        result.stream_total_ms[connections] = round(stats.total_ms_p50, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--servers", default="daphne,uvicorn,django-view")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--stream-requests", type=int, default=200)
    parser.add_argument("--compare", help="servers measured in alternation, each against the last (daphne,raw-router)")
    parser.add_argument("--rounds", type=int, default=6, help="alternations for --compare")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    if args.compare:
        compare(args)
        return

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="llmproxy-bench-") as tmp:
        workdir = Path(tmp)
        fake_port = free_port()
        fake = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "tests.fakes.server",
                "--provider",
                "openai-chat",
                "--port",
                str(fake_port),
                "--chunks",
                "20",
                "--chunk-delay",
                "0.005",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        upstream_url = f"http://127.0.0.1:{fake_port}"
        try:
            wait_for(upstream_url + "/v1/models")
            env, key = configure(workdir, upstream_url)
            direct = targets(upstream_url, None, key, stream=False)[0]
            results.append(measure(direct, "fake upstream", None, args, workdir))
            measure_stream(targets(upstream_url, None, key, stream=True)[0], results[-1], args)
            for server in args.servers.split(","):
                results.extend(run_server(server, env, key, upstream_url, args, workdir))
        finally:
            fake.terminate()
            fake.wait()
    report(results, args)


@contextlib.contextmanager
def fake_upstream() -> Iterator[str]:
    port = free_port()
    command = ["-m", "tests.fakes.server", "--provider", "openai-chat", "--port", str(port), "--chunks", "20"]
    fake = subprocess.Popen([PYTHON, *command, "--chunk-delay", "0.005"], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/v1/models")
        yield url
    finally:
        fake.terminate()
        fake.wait()


@contextlib.contextmanager
def serving(server: str, env: dict[str, str], workdir: Path) -> Iterator[tuple[str, int]]:
    """A proxy process under `server`: its URL and pid."""
    port = free_port()
    log = open(workdir / f"{server}.log", "w")  # noqa: SIM115 (closed with the process)
    proxy = subprocess.Popen(
        [PYTHON, *(part.format(port=port) for part in SERVERS[server])],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/health")
        yield url, proxy.pid
    finally:
        proxy.terminate()
        proxy.wait()
        log.close()


def compare(args: argparse.Namespace) -> None:
    """Each server against the last one named, in alternation: every round runs them all, in an order that
    rotates from round to round."""
    names = args.compare.split(",")
    baseline = names[-1]
    connections = args.concurrency[0]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmproxy-bench-")))
        upstream_url = stack.enter_context(fake_upstream())
        env, key = configure(workdir, upstream_url)
        servers = {name: stack.enter_context(serving(name, env, workdir)) for name in names}
        for url, _ in servers.values():
            target = targets(upstream_url, url, key, stream=False)[0]
            httpx.post(target.url, json=target.body, headers=target.headers, timeout=10).raise_for_status()
            wrk(target, connections, 1, workdir)  # warm up
        rounds: list[dict[str, tuple[float, float]]] = []
        for index in range(args.rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            measured: dict[str, tuple[float, float]] = {}
            for name in order:
                url, pid = servers[name]
                target = targets(upstream_url, url, key, stream=False)[0]
                before = cpu_seconds(pid)
                rps, _, _, total = wrk(target, connections, args.duration, workdir)
                measured[name] = (rps, (cpu_seconds(pid) - before) * 1000 / total)
            rounds.append(measured)
            each = (f"{name} {rps:.0f} req/s {cpu:.3f} CPU-ms" for name, (rps, cpu) in measured.items())
            print(f"round {index + 1}: " + ", ".join(each), flush=True)
    for name in names[:-1]:
        ratios = sorted(r[name][0] / r[baseline][0] for r in rounds)
        extra_cpu = sorted(r[name][1] - r[baseline][1] for r in rounds)
        print(
            f"{name} against {baseline}, median of {len(rounds)} rounds at c={connections}: throughput "
            f"{statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f}), CPU per request "
            f"{statistics.median(extra_cpu):+.3f} ms (range {extra_cpu[0]:+.3f} to {extra_cpu[-1]:+.3f})"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps({"connections": connections, "rounds": rounds}, indent=2))


def run_server(
    server: str, env: dict[str, str], key: str, upstream_url: str, args: argparse.Namespace, workdir: Path
) -> list[Result]:
    port = free_port()
    command = [PYTHON, *(part.format(port=port) for part in SERVERS[server])]
    log = open(workdir / f"{server}.log", "w")  # noqa: SIM115 (closed with the process)
    proxy = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proxy_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(proxy_url + "/health")
        out = []
        for whole, streamed in zip(
            targets(upstream_url, proxy_url, key, stream=False),
            targets(upstream_url, proxy_url, key, stream=True),
            strict=True,
        ):
            warm_up = httpx.post(whole.url, json=whole.body, headers=whole.headers, timeout=10)
            if warm_up.status_code != 200:
                raise RuntimeError(
                    f"{server}: {warm_up.status_code} {warm_up.text}\n{(workdir / f'{server}.log').read_text()}"
                )
            result = measure(whole, server, proxy.pid, args, workdir)
            measure_stream(streamed, result, args)
            result.peak_rss_mb = round(peak_rss_mb(proxy.pid), 1)
            out.append(result)
        return out
    finally:
        proxy.terminate()
        proxy.wait()


def report(results: list[Result], args: argparse.Namespace) -> None:
    floor = results[0]
    conc = "/".join(str(c) for c in args.concurrency)
    print(
        f"| path | server | req/s at c={conc} | added latency p50 / p99 at c=1 (ms) | "
        "stream TTFT added c=1 / c=16 (ms) | CPU ms/request (c=16) | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rps = " / ".join(f"{r.rps[c]:,}" for c in args.concurrency)
        if r is floor:
            latency = f"{r.latency_p50_ms} / {r.latency_p99_ms} (floor)"
            ttft = f"{r.ttft_ms[1]} / {r.ttft_ms[16]} (floor)"
        else:
            latency = f"+{r.latency_p50_ms - floor.latency_p50_ms:.2f} / +{r.latency_p99_ms - floor.latency_p99_ms:.2f}"
            ttft = f"+{r.ttft_ms[1] - floor.ttft_ms[1]:.2f} / +{r.ttft_ms[16] - floor.ttft_ms[16]:.2f}"
        print(
            f"| {r.scenario} | {r.server} | {rps} | {latency} | {ttft} | {r.cpu_ms_per_request or '-'} | "
            f"{r.peak_rss_mb or '-'} |"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
