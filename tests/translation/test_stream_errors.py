"""An upstream that fails after the stream started: the IR StreamError keeps the status and kind the upstream
reported, and every client dialect's in-stream error says the same thing (a Gemini 500 is a 500 to every
client, not the proxy's generic 502)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from translation.anthropic import CODEC as ANTHROPIC
from translation.bedrock import CODEC as BEDROCK
from translation.bedrock.eventstream import EventStreamParser
from translation.codec import ClientContext, Codec
from translation.dialect import Dialect
from translation.errors import ApiError, ErrorKind, status_for, stream_error_event
from translation.gemini import CODEC as GEMINI
from translation.ir import Message, Request, Role, StreamError, StreamEvent, TextPart
from translation.openai_chat import CODEC as CHAT
from translation.openai_responses import CODEC as RESPONSES
from translation.sse import SSEEvent, SSEParser

CODECS = {c.dialect: c for c in (ANTHROPIC, CHAT, RESPONSES, GEMINI, BEDROCK)}
REQUEST = Request(model="alias", messages=(Message(Role.USER, (TextPart("hi"),)),))


def _decode(codec: Codec, frames: list[tuple[str | None, dict[str, Any]]]) -> list[StreamEvent]:
    decoder = codec.stream.StreamDecoder(REQUEST)
    events: list[StreamEvent] = []
    for name, data in frames:
        events += decoder.feed(SSEEvent(json.dumps(data), name))
    return events + decoder.finish()


def _error(events: list[StreamEvent]) -> ApiError:
    last = events[-1]
    assert isinstance(last, StreamError), events
    assert not any(isinstance(e, StreamError) for e in events[:-1])
    return last.error


GEMINI_TEXT = (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Par"}]}, "index": 0}]})


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ({"code": 500, "message": "Internal error", "status": "INTERNAL"}, 500, ErrorKind.UPSTREAM_ERROR),
        ({"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}, 503, ErrorKind.OVERLOADED),
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, 429, ErrorKind.RATE_LIMITED),
        ({"code": 504, "message": "deadline", "status": "DEADLINE_EXCEEDED"}, 504, ErrorKind.TIMEOUT),
        ({"code": "500", "message": "Internal error"}, 500, ErrorKind.UPSTREAM_ERROR),  # a numeric string
        ({"message": "Internal error", "status": "INTERNAL"}, 500, ErrorKind.UPSTREAM_ERROR),  # status name only
        ({"message": "no clue"}, 502, ErrorKind.UPSTREAM_ERROR),  # nothing to go by: the proxy's 502
    ],
)
def test_gemini_midstream_error_keeps_its_status(error: dict[str, Any], status: int, kind: ErrorKind) -> None:
    events = _decode(GEMINI, [GEMINI_TEXT, (None, {"error": error})])
    api_error = _error(events)
    assert (api_error.http_status, api_error.kind, api_error.message) == (status, kind, error["message"])


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("overloaded_error", 529, ErrorKind.OVERLOADED),
        ("api_error", 500, ErrorKind.UPSTREAM_ERROR),
        ("rate_limit_error", 429, ErrorKind.RATE_LIMITED),
        ("timeout_error", 504, ErrorKind.TIMEOUT),
        ("billing_error", 402, ErrorKind.BUDGET_EXHAUSTED),
        ("brand_new_error", 502, ErrorKind.UPSTREAM_ERROR),
    ],
)
def test_anthropic_midstream_error_keeps_its_status(error_type: str, status: int, kind: ErrorKind) -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "content": [], "usage": {}}}
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    api_error = _error(_decode(ANTHROPIC, [("message_start", start), ("error", error)]))
    assert (api_error.http_status, api_error.kind) == (status, kind)


CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ({"message": "boom", "type": "server_error", "param": None, "code": None}, 500, ErrorKind.UPSTREAM_ERROR),
        ({"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}, 429, ErrorKind.RATE_LIMITED),
        ({"message": "busy", "type": "server_error", "code": "server_is_overloaded"}, 529, ErrorKind.OVERLOADED),
        ({"message": "busy", "code": 503}, 503, ErrorKind.OVERLOADED),  # compatible servers: the status as code
        ({"message": "what"}, 502, ErrorKind.UPSTREAM_ERROR),
    ],
)
def test_chat_error_chunk_keeps_what_it_carries(error: dict[str, Any], status: int, kind: ErrorKind) -> None:
    first = {**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Par"}}]}
    api_error = _error(_decode(CHAT, [(None, first), (None, {"error": error})]))
    assert (api_error.http_status, api_error.kind, api_error.message) == (status, kind, error["message"])


@pytest.mark.parametrize(
    ("frame", "status", "kind"),
    [
        ({"type": "error", "code": "rate_limit_exceeded", "message": "m", "param": None}, 429, ErrorKind.RATE_LIMITED),
        ({"type": "error", "code": "server_error", "message": "m", "param": None}, 500, ErrorKind.UPSTREAM_ERROR),
        (
            {
                "type": "response.failed",
                "response": {"id": "resp_1", "status": "failed", "error": {"code": "server_error", "message": "m"}},
            },
            500,
            ErrorKind.UPSTREAM_ERROR,
        ),
        (  # the WebSocket shape nests the error and adds the HTTP status
            {"type": "error", "status": 503, "error": {"type": "server_error", "code": None, "message": "m"}},
            503,
            ErrorKind.OVERLOADED,
        ),
    ],
)
def test_responses_error_events_keep_what_they_carry(frame: dict[str, Any], status: int, kind: ErrorKind) -> None:
    created = {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}
    api_error = _error(_decode(RESPONSES, [("response.created", created), (frame["type"], frame)]))
    assert (api_error.http_status, api_error.kind) == (status, kind)


# -- the client side -------------------------------------------------------------------------------------------


def _client_error_frame(client: Dialect, events: list[StreamEvent]) -> dict[str, Any]:
    """Run the IR stream through the client's StreamEncoder: the frame that reports the error."""
    encoder = CODECS[client].stream.StreamEncoder(ClientContext(REQUEST, 1_700_000_000))
    wire = [w for event in events for w in encoder.feed(event)] + encoder.finish()
    frames = [w.data for w in wire if isinstance(w.data, dict)]
    if client is Dialect.OPENAI_RESPONSES:
        (frame,) = [f for f in frames if f["type"] == "error"]
        return frame
    return frames[-1]


def test_gemini_500_is_a_500_for_every_client() -> None:
    events = _decode(GEMINI, [GEMINI_TEXT, (None, {"error": {"code": 500, "message": "Internal error"}})])
    error = _error(events)
    assert {client: status_for(client, error) for client in Dialect} == dict.fromkeys(Dialect, 500)

    assert _client_error_frame(Dialect.GEMINI, events) == {
        "error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}
    }
    assert _client_error_frame(Dialect.ANTHROPIC, events) == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal error"},
    }
    assert _client_error_frame(Dialect.OPENAI_CHAT, events) == {
        "error": {"message": "Internal error", "type": "server_error", "param": None, "code": None}
    }
    frame = _client_error_frame(Dialect.OPENAI_RESPONSES, events)
    assert (frame["code"], frame["message"]) == ("server_error", "Internal error")


def test_anthropic_overload_stays_an_overload_for_every_client() -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "content": [], "usage": {}}}
    error_frame = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = _decode(ANTHROPIC, [("message_start", start), ("error", error_frame)])
    error = _error(events)
    # Only Anthropic has 529; the others' overload status is 503.
    assert {client: status_for(client, error) for client in Dialect} == {
        Dialect.ANTHROPIC: 529,
        Dialect.OPENAI_CHAT: 503,
        Dialect.OPENAI_RESPONSES: 503,
        Dialect.GEMINI: 503,
        Dialect.BEDROCK: 503,
    }
    assert _client_error_frame(Dialect.ANTHROPIC, events)["error"]["type"] == "overloaded_error"
    assert _client_error_frame(Dialect.GEMINI, events)["error"] == {
        "code": 503,
        "message": "Overloaded",
        "status": "UNAVAILABLE",
    }
    assert _client_error_frame(Dialect.OPENAI_CHAT, events)["error"]["code"] == "server_is_overloaded"
    assert _client_error_frame(Dialect.BEDROCK, events) == {"message": "Overloaded"}


@pytest.mark.parametrize("client", list(Dialect))
def test_stream_error_event_matches_the_encoder(client: Dialect) -> None:
    """`translation.errors.stream_error_event` (what routing writes when a stream fails outside the codec)
    and the client's StreamEncoder report the same error."""
    events = _decode(GEMINI, [GEMINI_TEXT, (None, {"error": {"code": 500, "message": "Internal error"}})])
    parser = EventStreamParser() if client is Dialect.BEDROCK else SSEParser()
    (sse,) = parser.feed(stream_error_event(client, _error(events)))
    assert sse.json() == {k: v for k, v in _client_error_frame(client, events).items() if k != "sequence_number"}
