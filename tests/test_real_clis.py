"""The real Claude Code, Codex and Gemini CLIs, started by `manage.py claude|codex|gemini`, through the live proxy.

Each case is one agent episode against a scripted fake upstream: the model asks for the CLI's own shell tool, the
CLI runs it, sends the result back, and the model gives a final answer. The CLIs are the pinned npm versions
(tests/clis.py installs them once; without npm or the registry these tests are skipped, saying why). They run the
way the CLIs ran when their requests were captured (see tests/fixtures/captures/README.md): a clean environment, a
throw-away HOME, telemetry and update checks off, and every non-loopback request sent to a local HTTP proxy that
records it and hangs up: a case fails when its CLI tried to reach the internet.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clis import ensure_clis
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Failure, Reply, ToolCall
from tests.liveserver import ROOT, database_url

pytestmark = pytest.mark.e2e

CLIENT_TIMEOUT = 90.0
BASE_PATH = {"openai-chat": "/v1", "openai-responses": "/v1", "anthropic": "", "gemini": ""}
# The shell prints something that is not in the command itself, so seeing it proves the command ran.
COMMAND = "printf 'llmproxy-%s\\n' tool-ran"
MARKER = "llmproxy-tool-ran"
FINAL = "All done: the marker was printed."
PROMPT = "Run the shell command that prints the marker, then say you are done."


@dataclass(frozen=True)
class Agent:
    name: str  # the launcher command and the CLI
    model: str  # the alias the launcher pins
    tool: ToolCall  # the CLI's own shell tool, as it declares it
    launcher_args: tuple[str, ...] = ()

    def cli_args(self, workdir: Path, out: Path) -> list[str]:
        if self.name == "claude":
            return [
                "-p",
                PROMPT,
                "--output-format",
                "json",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "Bash",
                "Read",
                "Write",
                "Edit",
            ]
        if self.name == "codex":
            return [
                "exec",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "-C",
                str(workdir),
                "--json",
                "-o",
                str(out / "last_message.txt"),
                PROMPT,
            ]
        return ["-p", PROMPT, "--yolo", "--output-format", "json"]


CLAUDE = Agent("claude", "claude-proxy-test", ToolCall("Bash", {"command": COMMAND, "description": "Print marker"}))
# Claude Code in Bedrock mode: the proxy as its Bedrock endpoint (the bedrock-runtime paths), the key as its API key.
CLAUDE_BEDROCK = Agent(
    "claude", "claude-proxy-test", ToolCall("Bash", {"command": COMMAND, "description": "Print marker"}), ("--bedrock",)
)
CODEX = Agent("codex", "gpt-proxy-test", ToolCall("exec_command", {"cmd": COMMAND}), ("--retries", "0"))
CODEX_WS = Agent(
    "codex", "gpt-proxy-test", ToolCall("exec_command", {"cmd": COMMAND}), ("--retries", "0", "--websocket")
)
GEMINI = Agent(
    "gemini",
    "gemini-proxy-test",
    ToolCall("run_shell_command", {"command": COMMAND, "description": "Print marker"}),
    ("--trust-workspace",),
)


@dataclass
class Outcome:
    returncode: int
    answer: str
    ok: bool  # the CLI's own report of a finished, non-error run
    stdout: str
    stderr: str


def claude_outcome(rc: int, stdout: str, stderr: str, out: Path) -> Outcome:
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return Outcome(rc, "", False, stdout, stderr)
    ok = rc == 0 and result.get("subtype") == "success" and not result.get("is_error")
    return Outcome(rc, result.get("result") or "", ok, stdout, stderr)


def codex_outcome(rc: int, stdout: str, stderr: str, out: Path) -> Outcome:
    types = []
    for line in stdout.splitlines():
        try:
            types.append(json.loads(line).get("type"))
        except (ValueError, AttributeError):
            continue
    last = out / "last_message.txt"
    answer = last.read_text().strip() if last.exists() else ""
    # Plain "error" events are transient (reconnects); a failed turn is not.
    ok = rc == 0 and "turn.completed" in types and "turn.failed" not in types
    return Outcome(rc, answer, ok, stdout, stderr)


def gemini_outcome(rc: int, stdout: str, stderr: str, out: Path) -> Outcome:
    try:
        result = json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return Outcome(rc, "", False, stdout, stderr)
    answer = result.get("response") or ""
    return Outcome(rc, answer, rc == 0 and not result.get("error") and bool(answer), stdout, stderr)


OUTCOMES: dict[str, Callable[[int, str, str, Path], Outcome]] = {
    "claude": claude_outcome,
    "codex": codex_outcome,
    "gemini": gemini_outcome,
}


@pytest.fixture(scope="module")
def cli_prefix() -> Path:
    return ensure_clis()


class EgressRecorder:
    """The HTTP(S) proxy the CLIs are given: it notes the first line of each request (`CONNECT host:443 ...`) and
    closes the connection, so nothing leaves the machine and any attempt to reach the internet is seen."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.attempts: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    first = "(nothing sent)"
            with self._lock:
                self.attempts.append(first)

    def take(self) -> list[str]:
        with self._lock:
            attempts, self.attempts = self.attempts, []
        return attempts

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def egress() -> Iterator[EgressRecorder]:
    recorder = EgressRecorder()
    yield recorder
    recorder.close()


def run_agent(
    agent: Agent,
    url: str,
    cli_prefix: Path,
    tmp_path: Path,
    egress: str,
    *,
    key: str | None = None,
    user: str | None = None,
) -> Outcome:
    """`manage.py AGENT` in a clean environment, the way run_client.sh runs the CLI itself."""
    home, workdir, out = tmp_path / "home", tmp_path / "work", tmp_path / "out"
    for directory in (home, workdir, out):
        directory.mkdir()
    env = {
        "PATH": f"{cli_prefix / 'node_modules' / '.bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "CLI_PREFIX": str(cli_prefix),
        "GEMINI_CLI_NO_RELAUNCH": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[name] = egress
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = "127.0.0.1,localhost,::1"
    command = [sys.executable, str(ROOT / "manage.py"), agent.name, "--url", url, "--model", agent.model]
    if key is not None:
        command += ["--key", key]
    else:
        from django.db import connection

        env["DATABASE_URL"] = database_url(connection.settings_dict)
        command += ["--user", user or "launcher-user"]
    command += [*agent.launcher_args, "--", *agent.cli_args(workdir, out)]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the CLI's helpers are killed with it on a timeout
    )
    try:
        stdout, stderr = process.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{agent.name} did not finish in {CLIENT_TIMEOUT:.0f} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return OUTCOMES[agent.name](process.returncode, stdout, stderr, out)


def body_text(request: Any) -> str:
    return request.body.decode("utf-8", errors="replace")


def run_episode(
    proxy: Any,
    cli_prefix: Path,
    egress: EgressRecorder,
    tmp_path: Path,
    agent: Agent,
    upstream_format: str,
    **launch: Any,
) -> Any:
    egress.take()
    with fake_upstream(upstream_format) as fake:
        add_route("up", upstream_format, fake.url + BASE_PATH[upstream_format], alias=agent.model, model="real-model")
        proxy.sync()
        fake.script(Reply(tool_calls=[agent.tool]), Reply(text=FINAL))
        outcome = run_agent(agent, proxy.url, cli_prefix, tmp_path, egress.url, **launch)
        requests = fake.requests
    details = f"\nrc={outcome.returncode}\nstdout:\n{outcome.stdout[-3000:]}\nstderr:\n{outcome.stderr[-3000:]}"
    details += f"\nupstream saw {len(requests)} request(s)\nproxy log:\n{proxy.output()[-3000:]}"
    assert outcome.ok, "the CLI did not report a finished run" + details
    assert FINAL in outcome.answer, details
    generation = [r for r in requests if r.method == "POST"]
    assert len(generation) >= 2, details
    first, second = generation[0], generation[1]
    assert agent.tool.name in body_text(first), "the CLI's shell tool was not offered upstream" + details
    assert MARKER not in body_text(first)
    # The tool result (the shell's output) went back upstream in the next request.
    assert MARKER in body_text(second), "the tool result with the marker never reached the upstream" + details
    # The launcher's settings turn off telemetry, update checks and the like: nothing but the proxy is called.
    assert egress.take() == [], "the CLI tried to reach the internet"
    return requests


@pytest.mark.parametrize(
    ("agent", "upstream_format"),
    [
        pytest.param(CLAUDE, "anthropic", id="claude-anthropic"),
        pytest.param(CLAUDE, "openai-chat", id="claude-openai-chat"),
        pytest.param(CODEX, "openai-responses", id="codex-openai-responses"),
        pytest.param(CODEX, "anthropic", id="codex-anthropic"),
        pytest.param(GEMINI, "gemini", id="gemini-gemini"),
        pytest.param(GEMINI, "openai-chat", id="gemini-openai-chat"),
    ],
)
def test_cli_runs_a_shell_tool_through_the_proxy(
    proxy, alice_key, cli_prefix, egress, tmp_path, agent, upstream_format
):
    run_episode(proxy, cli_prefix, egress, tmp_path, agent, upstream_format, key=alice_key)


def test_launcher_issues_a_key_for_the_user(proxy, cli_prefix, egress, tmp_path):
    """Without --key the launcher makes a key for --user in the proxy's database, and the CLI gets through."""
    from routing.models import ProxyKey

    run_episode(proxy, cli_prefix, egress, tmp_path, CLAUDE, "openai-chat", user="bob")
    assert list(ProxyKey.objects.filter(user__username="bob").values_list("label", flat=True)) == ["launcher"]


def websocket_upgrade_status(url: str, key: str) -> int:
    """The status a Responses WebSocket upgrade (GET /v1/responses) gets; 0 when the connection just closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (
        "GET /v1/responses HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        head = sock.recv(4096).decode("latin-1")
    try:
        return int(head.split(" ", 2)[1])
    except (IndexError, ValueError):
        return 0


@pytest.mark.parametrize("upstream_format", ["openai-responses", "anthropic"])
def test_codex_over_websocket(proxy, alice_key, cli_prefix, egress, tmp_path, upstream_format):
    # Codex falls back to HTTP when the upgrade is refused, so check that the WebSocket is served, and used.
    proxy.sync()
    assert websocket_upgrade_status(proxy.url, alice_key) == 101
    seen = len(proxy.output())
    run_episode(proxy, cli_prefix, egress, tmp_path, CODEX_WS, upstream_format, key=alice_key)
    log = proxy.output()[seen:]  # daphne's access log of this episode
    assert "WSCONNECT /v1/responses" in log, log
    assert '"POST /v1/responses' not in log, "Codex fell back to HTTP:\n" + log


def test_claude_code_keeps_working_when_its_first_target_is_overloaded(proxy, alice_key, cli_prefix, egress, tmp_path):
    """An alias whose own upstream answers every request 529 (Anthropic overloaded) and whose fallback target is an
    OpenAI Chat upstream: Claude Code never sees the 529, its episode runs on the fallback, and the ledger says so."""
    from routing.models import ModelAlias, Upstream
    from usage.models import LedgerEntry

    egress.take()
    overloaded = Reply(error=Failure(529, "Overloaded", type="overloaded_error"))
    with fake_upstream("anthropic", default=overloaded) as down, fake_upstream("openai-chat") as spare:
        primary = Upstream.objects.create(name="overloaded", format="anthropic", base_url=down.url)
        Upstream.objects.create(name="spare", format="openai-chat", base_url=spare.url + "/v1")
        targets = [{"upstream": "spare", "model": "spare-model", "fallback": True}]
        ModelAlias.objects.create(name=CLAUDE.model, upstream=primary, upstream_model="real-model", targets=targets)
        proxy.sync()
        spare.script(Reply(tool_calls=[CLAUDE.tool]), Reply(text=FINAL))
        outcome = run_agent(CLAUDE, proxy.url, cli_prefix, tmp_path, egress.url, key=alice_key)
    details = f"\nstdout:\n{outcome.stdout[-3000:]}\nstderr:\n{outcome.stderr[-3000:]}\nlog:\n{proxy.output()[-3000:]}"
    assert outcome.ok and FINAL in outcome.answer, details
    assert down.request_count >= 1, "the overloaded target was never tried" + details
    assert MARKER in body_text(spare.requests[1]), details
    proxy.drain()
    rows = LedgerEntry.objects.filter(alias=CLAUDE.model, operation="generate")
    assert rows.count() >= 2 and all(row.upstream == "spare" and row.fallback for row in rows), details
    assert rows.filter(attempts=2, failed_attempts__0__status=529).exists(), details


@pytest.mark.parametrize("upstream_format", ["anthropic", "openai-chat"])
def test_claude_code_in_bedrock_mode(proxy, alice_key, cli_prefix, egress, tmp_path, upstream_format):
    """`manage.py claude --bedrock`: Claude Code in Bedrock mode, the proxy as its Bedrock endpoint and the proxy key
    as its Bedrock API key, finishes the tool-using episode through the bedrock-runtime paths."""
    seen = len(proxy.output())
    run_episode(proxy, cli_prefix, egress, tmp_path, CLAUDE_BEDROCK, upstream_format, key=alice_key)
    log = proxy.output()[seen:]  # daphne's access log of this episode
    assert '"POST /model/claude-proxy-test/invoke-with-response-stream' in log, log
    assert '"POST /v1/messages' not in log, "Claude Code did not use Bedrock mode:\n" + log
