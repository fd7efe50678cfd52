"""boto3's own `bedrock-runtime` client against a loopback server that speaks through the Bedrock codec: what boto3
sends decodes into the IR, and what the codec encodes (answers, event streams, errors with `x-amzn-ErrorType`)
is what boto3 returns or raises. No routing involved: this pins the wire format the routing layer will serve."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.exceptions import EventStreamError as BotocoreEventStreamError

from translation.bedrock import CODEC as BEDROCK
from translation.bedrock.eventstream import CONTENT_TYPE, encode_wire_event
from translation.codec import ClientContext
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, error_body, error_headers, status_for
from translation.ir import (
    BlockStop,
    Request,
    Response,
    ResponseStart,
    ResponseStop,
    StopReason,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    TextStart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
)

USAGE = Usage(input_tokens=11, cache_read_tokens=100, output_tokens=7)


class _Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, Request]] = []
        self.fail_with: ApiError | None = None
        self.stream_events: list[StreamEvent] = []


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            _, _, model, action = self.path.split("/", 3)
            request = BEDROCK.request.decode_request(body, model=unquote(model)).value
            state.requests.append((action, request))
            client = ClientContext(request, 1_700_000_000)
            if state.fail_with is not None:
                error = state.fail_with
                self._send(
                    status_for(Dialect.BEDROCK, error),
                    error_headers(Dialect.BEDROCK, error),
                    error_body(Dialect.BEDROCK, error),
                )
            elif action == "converse":
                response = Response(
                    "r",
                    request.model,
                    (TextPart("Hello!"), ToolCallPart.from_object("t1", "f", {"a": 1})),
                    StopReason.TOOL_USE,
                    USAGE,
                )
                self._send(200, {}, BEDROCK.response.encode_response(response, client).value)
            else:
                encoder = BEDROCK.stream.StreamEncoder(client)
                wire = [w for e in state.stream_events for w in encoder.feed(e)] + encoder.finish()
                self.send_response(200)
                self.send_header("content-type", CONTENT_TYPE)
                self.end_headers()
                for event in wire:  # one message per write: boto3 reads them as they come
                    self.wfile.write(encode_wire_event(event))
                    self.wfile.flush()

        def _send(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, _Server]]:
    state = _Server()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    try:
        yield client, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


MESSAGES = [
    {"role": "user", "content": [{"text": "Hi"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]}
]
TOOLS = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}


def test_converse(bedrock: tuple[Any, _Server]) -> None:
    client, state = bedrock
    answer = client.converse(
        modelId="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        messages=MESSAGES,
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 50},
        toolConfig=TOOLS,
    )
    action, request = state.requests[0]
    assert action == "converse" and request.model == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert request.messages[0].parts[1].source.data == "iVBORw=="  # type: ignore[union-attr]
    assert answer["output"]["message"]["content"] == [
        {"text": "Hello!"},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}},
    ]
    assert answer["stopReason"] == "tool_use"
    assert answer["usage"] == {"inputTokens": 11, "outputTokens": 7, "totalTokens": 118, "cacheReadInputTokens": 100}


def test_converse_stream(bedrock: tuple[Any, _Server]) -> None:
    client, state = bedrock
    state.stream_events = [
        ResponseStart("r", "m"),
        TextStart(0),
        TextDelta(0, "Hel"),
        TextDelta(0, "lo"),
        BlockStop(0),
        ToolCallStart(1, "t1", "f"),
        ToolArgsDelta(1, '{"a"'),
        ToolArgsDelta(1, ":1}"),
        BlockStop(1),
        ResponseStop(StopReason.TOOL_USE, USAGE),
    ]
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5"
    stream = client.converse_stream(modelId=arn, messages=MESSAGES, toolConfig=TOOLS)["stream"]
    events = list(stream)
    assert state.requests[0][0] == "converse-stream" and state.requests[0][1].model == arn
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == "Hello"
    assert events[4]["contentBlockStart"]["start"]["toolUse"] == {"toolUseId": "t1", "name": "f"}
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 118


def test_a_stream_that_fails_midway(bedrock: tuple[Any, _Server]) -> None:
    client, state = bedrock
    state.stream_events = [
        ResponseStart("r", "m"),
        TextStart(0),
        TextDelta(0, "Hel"),
        StreamError(ApiError(ErrorKind.OVERLOADED, "Overloaded")),
    ]
    stream = client.converse_stream(modelId="m", messages=MESSAGES)["stream"]
    with pytest.raises(BotocoreEventStreamError) as caught:
        list(stream)
    assert caught.value.response["Error"] == {"Code": "serviceUnavailableException", "Message": "Overloaded"}


@pytest.mark.parametrize(
    ("kind", "exception_name"),
    [
        (ErrorKind.RATE_LIMITED, "ThrottlingException"),
        (ErrorKind.INVALID_REQUEST, "ValidationException"),
        (ErrorKind.NOT_FOUND, "ResourceNotFoundException"),
        (ErrorKind.PERMISSION, "AccessDeniedException"),
        (ErrorKind.OVERLOADED, "ServiceUnavailableException"),
    ],
)
def test_errors_are_the_exceptions_boto3_raises(
    bedrock: tuple[Any, _Server], kind: ErrorKind, exception_name: str
) -> None:
    client, state = bedrock
    state.fail_with = ApiError(kind, "the reason")
    with pytest.raises(ClientError) as caught:
        client.converse(modelId="m", messages=MESSAGES)
    assert caught.value.response["Error"] == {"Code": exception_name, "Message": "the reason"}
    assert type(caught.value).__name__ == exception_name  # boto3's modelled exception class
