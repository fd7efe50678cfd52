"""Small network pieces between the proxy and a fake upstream, for the egress and TLS tests.

`ForwardProxy` is an HTTP forward proxy as an egress proxy is: it relays absolute-URI requests (`GET http://host/…`)
and tunnels `CONNECT host:port`, optionally requiring Basic credentials (407 otherwise), and records what it saw.
`TlsFront` terminates TLS with a certificate made here for 127.0.0.1 and relays the bytes to a plain fake
upstream, so an `https://` upstream exists without any network. Each runs on its own event loop thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class _LoopServer:
    """An asyncio server on 127.0.0.1 (a free port) served by a thread of its own."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _ssl(self) -> ssl.SSLContext | None:
        return None

    def __enter__(self) -> _LoopServer:
        self._thread.start()

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._ssl())
            self.port = self._server.sockets[0].getsockname()[1]

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter], server: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await asyncio.gather(_pipe(client[0], server[1]), _pipe(server[0], client[1]))


@dataclass(frozen=True)
class Seen:
    method: str
    target: str  # the absolute URI, or host:port of a CONNECT
    proxy_authorization: str | None
    headers: tuple[tuple[str, str], ...]


class ForwardProxy(_LoopServer):
    def __init__(self, credentials: str | None = None) -> None:
        """`credentials`: USER:PASSWORD the proxy requires (None: any client may use it)."""
        super().__init__()
        self.credentials = credentials
        self.seen: list[Seen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[str, str]]]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [
            (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:] if line)
        ]
        return method, target, headers

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            parsed = await self._read_head(reader)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.close()
            return
        method, target, headers = parsed
        auth = next((v for n, v in headers if n.lower() == "proxy-authorization"), None)
        self.seen.append(Seen(method, target, auth, tuple(headers)))
        if self.credentials is not None and auth != "Basic " + base64.b64encode(self.credentials.encode()).decode():
            writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="egress"\r\n')
            writer.write(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _splice((reader, writer), upstream)
            return
        await self._relay(method, target, headers, reader, writer)

    async def _relay(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """One plain-HTTP request to its origin (without the proxy's own headers), then the connection is a pipe:
        enough for one request per connection, which is all a test needs (Connection: close is sent upstream)."""
        rest = target.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port or 80))
        kept = [
            (n, v) for n, v in headers if n.lower() not in ("proxy-authorization", "proxy-connection", "connection")
        ]
        head = (
            f"{method} /{path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept) + "Connection: close\r\n\r\n"
        )
        upstream_writer.write(head.encode("latin-1"))
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        if length:
            upstream_writer.write(await reader.readexactly(length))
        await upstream_writer.drain()
        await _pipe(upstream_reader, writer)
        upstream_writer.close()


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path


def make_certificate(directory: Path, name: str = "test") -> Certificate:
    """A self-signed certificate for 127.0.0.1 (it is its own CA: its PEM is the bundle that trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"llmproxy {name} CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_path, key_path)


class TlsFront(_LoopServer):
    """https://127.0.0.1:PORT in front of a plain server at `target_port`."""

    def __init__(self, certificate: Certificate, target_port: int) -> None:
        super().__init__()
        self.certificate = certificate
        self.target_port = target_port
        self.handshakes = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate.cert_path, self.certificate.key_path)
        return context

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        await _splice((reader, writer), upstream)


class RoundRobinBalancer(_LoopServer):
    """A TCP load balancer as a deployment puts in front of replicas: each client connection goes to the next
    healthy backend in turn (a backend that refuses the connection is skipped), and a backend whose readiness
    probe (`GET /health/ready`) fails is taken out of the rotation until it passes again. `served`: connections
    per backend port."""

    def __init__(self, ports: list[int], probe_interval: float = 0.2) -> None:
        super().__init__()
        self.ports = list(ports)
        self.healthy = set(ports)
        self.served: dict[int, int] = dict.fromkeys(ports, 0)
        self._next = 0
        self._interval = probe_interval

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RoundRobinBalancer:
        super().__enter__()
        asyncio.run_coroutine_threadsafe(self._start_probing(), self._loop).result(10)
        return self

    async def _start_probing(self) -> None:
        asyncio.get_running_loop().create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            for port in self.ports:
                ready = await _ready(port)
                (self.healthy.add if ready else self.healthy.discard)(port)
            await asyncio.sleep(self._interval)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            if port not in self.healthy:
                continue
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.healthy.discard(port)
                continue
            self.served[port] += 1
            await _splice((reader, writer), upstream)
            return
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()


async def _ready(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /health/ready HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 2)
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        with contextlib.suppress(Exception):
            writer.close()
