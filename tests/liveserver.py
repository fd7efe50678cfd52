"""A real proxy server process for end-to-end tests: daphne on a free loopback port, on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from django.db import connection

from routing.models import ConfigState

ROOT = Path(__file__).resolve().parent.parent
SERVED_APP = "llmproxy_site.asgi:application"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(settings_dict: dict[str, Any]) -> str:
    """The URL of the database the tests use (pytest-django's test database, not the configured one)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class ProxyServer:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="proxy-server-", suffix=".log", delete=False)  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(
            {
                "DATABASE_URL": database_url(connection.settings_dict),
                "CONFIG_REFRESH_INTERVAL": "0.1",
                "HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
                # No balancer to tell in front of a test's server: a stop need not keep accepting first
                # (tests/test_shutdown.py sets a delay where it checks the drain).
                "DRAIN_DELAY_SECONDS": "0",
            }
        )
        env.update(extra_env or {})
        self.process = subprocess.Popen(
            # The server `make run` starts: daphne with the request limits (llmproxy_site.server).
            [sys.executable, "-m", "llmproxy_site.server", "-b", "127.0.0.1", "-p", str(self.port), SERVED_APP],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy server exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"proxy server did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until the server has loaded the configuration the test database holds now."""
        expected = ConfigState.current_token()
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = httpx.get(self.url + "/health/ready", timeout=5).json().get("config_token")
            if seen == expected:
                return
            time.sleep(0.05)
        raise AssertionError(f"server config token {seen} never reached {expected}")

    def drain(self) -> None:
        """Return once the server's database thread has done everything queued so far: it runs one job at a
        time in order, and the readiness probe's query is queued behind them."""
        httpx.get(self.url + "/health/ready", timeout=30)

    def __enter__(self) -> ProxyServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
