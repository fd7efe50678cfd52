"""`make run`'s server (llmproxy_site.serve): several worker processes on one socket under supervisord.

Through real processes: the launcher as `make run` starts it, on the test database. Which worker answers is
seen the way an operator sees it: the live view's process id (pid@host), which a page gets from the worker
its WebSocket landed on.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from websockets.sync.client import connect as websockets_connect

from routing.models import KeyPolicy, ProxyKey
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply
from tests.liveserver import ROOT, database_url, free_port
from usage import live
from usage.models import LedgerEntry

pytestmark = pytest.mark.e2e


class Manager:
    """`python -m llmproxy_site.serve` with WORKERS=2: supervisord and its workers; stdout read as it comes."""

    def __init__(self, run_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(
            {
                "DATABASE_URL": database_url(connection.settings_dict),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WORKERS": "2",
                "PYTHONUNBUFFERED": "1",
                "LEDGER_SPOOL_DIR": str(run_dir / "spool"),
            }
        )
        env.update(extra_env or {})
        self.started = time.monotonic()
        # A pipe, not a file: what the terminal of `make run` would show, in the order it was written.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmproxy_site.serve", "--run-dir", str(run_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the manager exited:\n{self.output()}"
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    self.serving_after = time.monotonic() - self.started
                    return
            except httpx.HTTPError:
                time.sleep(0.1)  # supervisord is not listening yet: nothing to wait on but the port
        raise AssertionError(f"not serving after 30 s:\n{self.output()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> set[int]:
        """The manager's child processes now."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()} if children.exists() else set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def serving_pid(manager: Manager, cookie: str) -> int:
    """The pid of the worker that accepts a new connection: its live view names its own process."""
    url = manager.url.replace("http://", "ws://") + live.WS_PATH
    with websockets_connect(url, additional_headers={"Cookie": cookie, "Origin": manager.url}, open_timeout=20) as ws:
        state = json.loads(ws.recv(timeout=10))
    pid, _, _host = state["process"].partition("@")
    return int(pid)


def pids_until(manager: Manager, cookie: str, done: Callable[[set[int]], bool], timeout: float = 20.0) -> set[int]:
    """Open connections one after another until `done(pids seen)` holds."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not done(seen):
        assert time.monotonic() < deadline, f"workers seen: {seen}\n{manager.output()}"
        seen.add(serving_pid(manager, cookie))
    return seen


@pytest.fixture
def operator_cookie(transactional_db: None) -> str:
    return session_cookie(User.objects.create_user("operator", password="operator-password", is_staff=True))


@pytest.fixture
def start_manager(tmp_path: Path, transactional_db: None) -> Iterator[Callable[..., Manager]]:
    """Managers stopped before the test database is emptied (their workers write the ledger as they stop)."""
    started: list[Manager] = []

    def start(**extra_env: str) -> Manager:
        started.append(Manager(tmp_path, extra_env))
        return started[-1]

    try:
        yield start
    finally:
        for manager in started:
            manager.stop()


def test_by_default_one_worker_per_core_and_a_stop_timeout_past_the_ledgers_grace(tmp_path, monkeypatch):
    """What `make run` hands supervisord when nothing is set (checked without starting it)."""
    from llmproxy_site import serve

    execs: list[list[str]] = []
    monkeypatch.setattr(serve.os, "execv", lambda path, args: execs.append(args))
    monkeypatch.setattr(settings, "WORKERS", 0)
    # too short: raised to the drain delay, the grace and a second
    monkeypatch.setattr(settings, "WORKER_STOP_TIMEOUT", 0.5)
    serve.main(["--host", "127.0.0.1", "--port", "18080", "--run-dir", str(tmp_path)])
    (args,) = execs
    config = (tmp_path / "18080" / "supervisord.conf").read_text()
    assert args[-2:] == ["--configuration", str(tmp_path / "18080" / "supervisord.conf")]
    assert "--nodaemon" in args
    assert f"\nnumprocs={os.cpu_count()}\n" in config
    assert "\nsocket=tcp://127.0.0.1:18080\n" in config
    stop_wait = math.ceil(settings.DRAIN_DELAY_SECONDS + settings.SHUTDOWN_GRACE_SECONDS + 1)
    assert f"\nstopwaitsecs={stop_wait}\n" in config
    assert "\nautorestart=true\n" in config
    assert "llmproxy_site.server --fd 0 llmproxy_site.asgi:application" in config


def test_two_workers_share_the_socket_and_a_killed_one_is_replaced(start_manager, operator_cookie):
    manager = start_manager()
    seen = pids_until(manager, operator_cookie, lambda pids: len(pids) >= 2)
    print(
        f"serving {manager.serving_after:.1f} s and both workers {time.monotonic() - manager.started:.1f} s after start"
    )
    assert len(seen) == 2
    assert seen == manager.workers()  # both are the manager's own children, and there are no others
    # Each worker's log lines reach the manager's standard output, told apart by their process id.
    for pid in seen:
        assert f" {pid} INFO daphne.server Listening on TCP address 127.0.0.1:{manager.port}" in manager.output()

    killed = min(seen)
    os.kill(killed, signal.SIGKILL)
    survivor = (seen - {killed}).pop()
    # The manager starts a new worker in its place; it serves on the same socket, and the dead one never answers.
    now = pids_until(manager, operator_cookie, lambda pids: len(pids - {survivor}) >= 1)
    assert killed not in now
    replacement = (now - {survivor}).pop()
    assert manager.workers() == {survivor, replacement}
    assert "exited: llmproxy_" in manager.output()  # the manager said so, in the same terminal
    assert f"with pid {replacement}" in manager.output()


def test_a_rate_limit_holds_across_the_workers(start_manager, operator_cookie, alice, alice_key):
    """Without Redis the workers count in the database (on SQLite too, which serialises the writers)."""
    manager = start_manager(REDIS_URL="")
    KeyPolicy.objects.create(key=ProxyKey.objects.get(user=alice), requests_per_minute=6)
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="fast-model", model="real-model")
        pids_until(manager, operator_cookie, lambda pids: len(pids) >= 2)

        def ask(_: int) -> int:
            body = {"model": "fast-model", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"authorization": f"Bearer {alice_key}"}
            url = manager.url + "/v1/chat/completions"
            return httpx.post(url, json=body, headers=headers, timeout=20).status_code  # a connection each

        # Twenty at once over both workers: six get through in all, not six per worker.
        with ThreadPoolExecutor(10) as pool:
            statuses = sorted(pool.map(ask, range(20)))
    assert statuses == [200] * 6 + [429] * 14, manager.output()


def test_sigterm_stops_every_worker_with_running_streams_finished_and_every_exchange_in_the_ledger(
    start_manager, operator_cookie, alice
):
    # The workers' background passes come seldom: the ledger rows are written by the stop, or not at all.
    manager = start_manager(CONFIG_REFRESH_INTERVAL="60")
    key, plaintext = ProxyKey.issue(alice, label="ci")
    with fake_upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="fast-model", model="real-model")
        workers = pids_until(manager, operator_cookie, lambda pids: len(pids) >= 2)

        def client() -> openai.OpenAI:
            # A client (a connection) of its own each time, so that the kernel spreads them over the workers.
            return openai.OpenAI(base_url=manager.url + "/v1", api_key=plaintext, max_retries=0, timeout=20)

        def ask(n: int) -> str:
            messages: Any = [{"role": "user", "content": f"hi {n}"}]
            if n % 2:
                return (
                    client().chat.completions.create(model="fast-model", messages=messages).choices[0].message.content
                    or ""
                )
            stream = client().chat.completions.create(model="fast-model", messages=messages, stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(12)))
        assert answers == ["Hello from the OpenAI Chat fake (real-model)."] * 12

        # A stream still running when the manager is told to stop: it has the grace to finish.
        fake.script(Reply(text="one two three four", chunks=4, chunk_delay=0.3))
        stream = client().chat.completions.create(
            model="fast-model", messages=[{"role": "user", "content": "count"}], stream=True
        )
        chunks = iter(stream)
        received = next(chunks).choices[0].delta.content or ""  # the stream has begun

        stopping = time.monotonic()
        manager.process.send_signal(signal.SIGTERM)
        received += "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        manager.process.wait(timeout=30)
        took = time.monotonic() - stopping
    print(f"stopped in {took:.1f} s")
    assert received == "one two three four"
    rows = LedgerEntry.objects.filter(key=key)
    assert rows.count() == 13, manager.output()
    assert set(rows.values_list("outcome", flat=True)) == {"ok"}
    assert not rows.filter(usage_partial=True).exists()
    assert "stopped: llmproxy_00 (exit status 0)" in manager.output()
    assert "stopped: llmproxy_01 (exit status 0)" in manager.output()
    assert manager.process.returncode == 0, manager.output()
    assert took < settings.SHUTDOWN_GRACE_SECONDS + 5, manager.output()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
