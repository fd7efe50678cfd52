"""Hostile HTTP input against the real server (llmproxy_site.server, as `make run` starts it): a request is refused
from its head before its body is read, a large body is parsed without stalling other requests, and a request
that does not arrive whole in time is answered 408 and closed."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e

READ_TIMEOUT = 2.0  # seconds, REQUEST_READ_TIMEOUT of this module's server
MAX_BYTES = 64 * 1024 * 1024  # MAX_REQUEST_BYTES's default


@pytest.fixture(scope="module")
def limits_server(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    with ProxyServer(extra_env={"REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}) as server:
        yield server


@pytest.fixture
def server(limits_server: ProxyServer, transactional_db: None) -> Iterator[ProxyServer]:
    yield limits_server
    limits_server.drain()


def connect(server: ProxyServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    return sock


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, within: float) -> tuple[int, dict[str, str], bytes]:
    """The whole answer (status, headers, body), which must arrive within `within` seconds."""
    sock.settimeout(within)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "-1"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


# --- refused from the head ----------------------------------------------------------------------------------

REFUSED_WITHOUT_BODY = [
    ("anthropic, no key", "/v1/messages", {"anthropic-version": "2023-06-01"}),
    ("anthropic, wrong key", "/v1/messages", {"x-api-key": "sk-llmp-wrong-key-of-someone"}),
    ("chat, wrong key", "/v1/chat/completions", {"authorization": "Bearer sk-llmp-wrong-key-of-someone"}),
    ("gemini, wrong key in the query", "/v1beta/models/m:generateContent?key=sk-llmp-wrong", {}),
]


@pytest.mark.parametrize(("case", "path", "headers"), REFUSED_WITHOUT_BODY, ids=[c[0] for c in REFUSED_WITHOUT_BODY])
def test_a_request_without_a_valid_key_is_refused_before_its_body_is_sent(server, case, path, headers):
    """60 MB declared, 256 KB sent: the 401 arrives while the client still holds the rest (stock daphne waited
    for the whole body before the application saw the key)."""
    server.sync()
    with connect(server) as sock:
        sock.sendall(head(path, {"content-type": "application/json", "content-length": "60000000", **headers}))
        sock.sendall(b"{" + b" " * (256 * 1024))
        status, answer_headers, body = read_answer(sock, within=5)
    assert status == 401
    assert answer_headers["connection"] == "close"  # the rest of that body will not be read as a next request
    error = json.loads(body)
    if path.startswith("/v1/messages"):
        assert error["error"]["type"] == "authentication_error"
    elif path.startswith("/v1beta"):
        assert error["error"]["status"] == "UNAUTHENTICATED"
    else:
        assert error["error"]["code"] == "invalid_api_key"


def test_a_declared_length_over_the_limit_is_refused_at_once(server, alice_key):
    server.sync()
    with connect(server) as sock:
        sock.sendall(
            head(
                "/v1/chat/completions",
                {
                    "authorization": f"Bearer {alice_key}",
                    "content-type": "application/json",
                    "content-length": "300000000",
                },
            )
        )
        status, answer_headers, body = read_answer(sock, within=5)
    assert status == 413
    assert answer_headers["connection"] == "close"
    assert json.loads(body)["error"]["message"] == f"Request body exceeds {MAX_BYTES} bytes"


def send_chunked_until_answered(sock: socket.socket, give_up_after_bytes: int) -> int:
    """Send a chunked body in 1 MiB chunks until the server answers; returns how much was sent by then."""
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    sent = 0
    while sent < give_up_after_bytes:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sent
        try:
            sock.sendall(chunk)
        except OSError:  # closed by the server: its answer is in our receive buffer
            return sent
        sent += 1 << 20
    sock.sendall(b"0\r\n\r\n")
    return sent


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/chat/completions", 413), ("/accounts/login/", 413)],
    ids=["data plane (its own 413)", "a page (the server's 413)"],
)
def test_a_body_without_a_length_stops_being_read_at_the_limit(server, alice_key, path, status):
    """Chunked, so nothing declares the size: the body is cut off just past MAX_REQUEST_BYTES (stock daphne read
    all of it, here 96 MiB, before the application saw the request)."""
    server.sync()
    with connect(server) as sock:
        headers = {"authorization": f"Bearer {alice_key}", "transfer-encoding": "chunked"}
        sock.sendall(head(path, {"content-type": "application/json", **headers}))
        sent = send_chunked_until_answered(sock, give_up_after_bytes=96 << 20)
        answer_status, answer_headers, body = read_answer(sock, within=10)
    assert answer_status == status
    assert answer_headers["connection"] == "close"
    assert sent < MAX_BYTES + (8 << 20)  # the limit, the server's slack and what the sockets buffer
    if path.startswith("/v1/"):
        assert json.loads(body)["error"]["message"] == f"Request body exceeds {MAX_BYTES} bytes"


def test_a_client_that_sends_its_whole_body_anyway_still_reads_the_refusal(server):
    """The early answer does not reset the connection under a client that writes its body before reading
    (as the SDKs do): the server reads the rest to nowhere, then closes."""
    server.sync()
    body = b'{"model": "m", "messages": [], "padding": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    reply = httpx.post(server.url + "/v1/messages", content=body, headers={"x-api-key": "sk-llmp-wrong"}, timeout=30)
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"


def test_an_upstream_that_takes_the_clients_own_key_still_gets_it(server):
    """Key first does not refuse a key the proxy does not know when an upstream forwards the client's own key:
    the body is read and the route decides."""
    with fake_upstream("openai-chat", api_key="sk-own") as fake:
        add_route("own-key", "openai-chat", fake.url + "/v1", alias="m", model="real", forward_client_key=True)
        server.sync()
        body = {"model": "m", "messages": [{"role": "user", "content": "x" * 300_000}]}  # parsed off the loop
        reply = httpx.post(
            server.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-own"}, timeout=30
        )
        assert reply.status_code == 200
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-own"


# --- a large body does not stall the others ----------------------------------------------------------------


def test_the_probe_answers_while_a_large_body_is_parsed(server, alice_key):
    """45 MB of JSON (about a second of parsing) with a valid key: /healthz keeps answering meanwhile (parsed on the
    event loop it waited for the whole parse)."""
    server.sync()
    messages = [{"role": "user", "content": "x" * 10, "n": i} for i in range(800_000)]
    body = json.dumps({"model": "not-configured", "messages": messages}).encode()
    answer: list[httpx.Response] = []
    big = threading.Thread(
        target=lambda: answer.append(
            httpx.post(
                server.url + "/v1/chat/completions",
                content=body,
                headers={"authorization": f"Bearer {alice_key}", "content-type": "application/json"},
                timeout=60,
            )
        )
    )
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        began = time.monotonic()
        big.start()
        while big.is_alive():
            started = time.monotonic()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - started)
        big.join()
        took = time.monotonic() - began
    assert answer[0].status_code == 404  # parsed, then routed: the model is not configured
    assert len(latencies) > 10
    # Parsed on the event loop, one probe would wait for most of the big request's time; off it, none waits more
    # than a small share of it (relative, so a busy machine that slows both does not fail it).
    assert max(latencies) < max(0.5, took / 4), f"slowest probe {max(latencies):.2f} s of {took:.2f} s"


# --- slowloris ----------------------------------------------------------------------------------------------


def drip(sock: socket.socket, data: bytes, every: float, give_up_after: float) -> tuple[int, float] | None:
    """Send `data` a byte at a time; returns (status, seconds) of the answer that arrived meanwhile, if any."""
    started = time.monotonic()
    for byte in data:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            status, _, _ = read_answer(sock, within=5)
            return status, time.monotonic() - started
        if time.monotonic() - started > give_up_after:
            return None
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return None
    return None


def test_a_dripping_head_is_answered_408_and_closed(server):
    with connect(server) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answered = drip(sock, b"x-api-key: " + b"k" * 200, every=0.25, give_up_after=READ_TIMEOUT + 5)
        assert answered is not None, "still reading the head well past REQUEST_READ_TIMEOUT"
        status, after = answered
        assert status == 408
        assert after < READ_TIMEOUT + 2
        sock.settimeout(5)
        assert sock.recv(1) == b""  # and closed


def test_a_dripping_body_is_answered_408_and_closed(server, alice_key):
    server.sync()
    with connect(server) as sock:
        sock.sendall(head("/v1/chat/completions", {"authorization": f"Bearer {alice_key}", "content-length": "500"}))
        answered = drip(sock, b"{" + b" " * 499, every=0.25, give_up_after=READ_TIMEOUT + 5)
        assert answered is not None, "still reading the body well past REQUEST_READ_TIMEOUT"
        status, after = answered
        assert status == 408
        assert after < READ_TIMEOUT + 2
        sock.settimeout(5)
        assert sock.recv(1) == b""


def test_the_deadline_is_per_request_on_a_kept_alive_connection(server):
    """Whole requests sent in time, idle in between, keep one connection open past the deadline: the clock
    starts again for each request."""
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, _ = read_answer(sock, within=5)
            assert status == 200 and headers.get("connection") != "close"
            time.sleep(READ_TIMEOUT * 0.6)  # idle under the deadline; three times over, past it
