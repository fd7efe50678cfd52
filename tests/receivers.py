"""Local receivers for what the proxy sends out of band: an OTLP/HTTP trace collector, a webhook, a mail server.

Each is a small server on 127.0.0.1 (a free port) on a thread of its own, speaking the real wire format:
the collector decodes `ExportTraceServiceRequest` protobuf bodies with opentelemetry-proto's generated classes,
the webhook receiver takes JSON posts and can be told to fail the next few with a 503 or to hang, and a small
SMTP server takes mail.
"""

from __future__ import annotations

import email
import email.message
import json
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


class _Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, content_type, answer = receiver.handle(self.path, dict(self.headers), body)
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a held answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name=type(self).__name__, daemon=True)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


class OtlpCollector(_Receiver):
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest (protobuf)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []
        self.paths: list[str] = []

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.paths.append(path)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                name=span.name,
                                kind=span.kind,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                status_code=span.status.code,
                                status_message=span.status.message,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                resource=resource,
                                scope=scope_spans.scope.name,
                            )
                        )
        return 200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString()

    def wait_for_spans(self, count: int, timeout: float = 15.0) -> list[ReceivedSpan]:
        def enough() -> list[ReceivedSpan] | None:
            with self.lock:
                return list(self.spans) if len(self.spans) >= count else None

        spans: list[ReceivedSpan] = wait_until(enough, timeout, f"{count} spans")
        return spans


class WebhookReceiver(_Receiver):
    """A webhook endpoint: records each JSON post; `fail_next(n)` answers the next n with 503; `hold()` keeps
    every post waiting, unanswered, until `release()` (a receiver that hangs), `held` is set once one waits."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []
        self.failures_left = 0
        self.refused = 0
        self.held = threading.Event()
        self._open = threading.Event()
        self._open.set()

    def fail_next(self, count: int) -> None:
        with self.lock:
            self.failures_left = count

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        super().__exit__(*exc_info)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if not self._open.is_set():
            self.held.set()
            self._open.wait(30)
        with self.lock:
            self.headers.append({k.lower(): v for k, v in headers.items()})
            if self.failures_left > 0:
                self.failures_left -= 1
                self.refused += 1
                return 503, "text/plain", b"try again later"
            self.posts.append(json.loads(body))
        return 200, "application/json", b'{"ok":true}'

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts)


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: email.message.Message


class SmtpReceiver:
    """A minimal SMTP server: the commands Django's SMTP backend sends (no TLS, no AUTH), each message kept."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 localhost ESMTP test receiver")
                sender = ""
                recipients: list[str] = []
                while line := self.rfile.readline():
                    command = line.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.reply("250-localhost")
                        self.reply("250 8BITMIME")
                    elif verb == "MAIL":
                        sender = command.split(":", 1)[1].strip().lstrip("<").split(">")[0]
                        recipients = []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        message = email.message_from_bytes(b"".join(lines))
                        with receiver.lock:
                            receiver.messages.append(ReceivedMail(sender, recipients, message))
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:  # HELO, RSET, NOOP
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="SmtpReceiver", daemon=True)

    def __enter__(self) -> SmtpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[ReceivedMail]:
        with self.lock:
            return list(self.messages)
