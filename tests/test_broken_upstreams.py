"""Upstreams that send what they should not: the client's stream still ends at once with its dialect's error,
the ledger says what happened, and the proxy's memory stays bounded (issue 11, items 3 and 9).

- a malformed event mid-stream on a translated route: the events before it reach the client, then the
  dialect's stream error event, and the stream ends even though the upstream goes silent after it;
- the same on a pass-through route is relayed untouched: the bytes are the upstream's to send;
- a malformed whole answer on a translated route: a 502 in the client's dialect;
- one event over UPSTREAM_MAX_EVENT_BYTES, a body over UPSTREAM_MAX_BODY_BYTES (also the answer to a stream
  request that is not an event stream) and a gzip bomb: cut off with a clear error, the proxy's peak memory
  barely moving.

A real daphne (tests.liveserver) with small caps, provider fakes wrapped to misbehave, the official SDKs.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import add_route
from tests.fakes.base import ProviderFake
from tests.fakes.providers import make
from tests.fakes.script import Reply
from tests.fakes.server import FakeUpstream, Request, Response
from tests.liveserver import ProxyServer
from tests.test_ledger import wait_for_rows
from tests.test_translation_matrix import BASE_PATH
from translation.anthropic import CODEC as ANTHROPIC
from translation.codec import Codec
from translation.gemini import CODEC as GEMINI
from translation.ir import Request as IRRequest
from translation.ir import StreamError, TextDelta
from translation.openai_chat import CODEC as CHAT
from translation.openai_responses import CODEC as RESPONSES
from translation.sse import SSEEvent
from translation.streaming import GuardedDecoder

MiB = 1024 * 1024
EVENT_CAP = 1 * MiB
BODY_CAP = 4 * MiB
# Generous for a client to notice the end of a stream, far below the upstream's 600 s read timeout that a
# proxy still waiting on a silent upstream would hit.
PROMPT_END = 5.0
TEXT = "partial answer here"  # the fakes stream it as "partial", " answer", " here"


# -- the proxy under test: small caps, so "huge" stays quick on a shared machine ------------------------------


@pytest.fixture(scope="module")
def capped_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[ProxyServer]:
    server = ProxyServer({"UPSTREAM_MAX_EVENT_BYTES": str(EVENT_CAP), "UPSTREAM_MAX_BODY_BYTES": str(BODY_CAP)})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(capped_server: ProxyServer, transactional_db: None) -> Iterator[ProxyServer]:
    yield capped_server
    capped_server.drain()


def _memory_kb(server: ProxyServer, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak so far) of the server process, from the kernel."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for the server process")


# -- misbehaving upstreams: a provider fake whose answer is rewritten ---------------------------------------


@dataclass
class Misbehaving:
    """A provider fake whose streamed answer gets `bad` frames inserted after its first `after` frames; then it
    goes silent (`stall`) or carries on. `whole`: replaces a whole (non-stream) answer instead."""

    fake: ProviderFake
    after: int = 0
    bad: Callable[[], Iterator[bytes]] | None = None
    stall: bool = True
    whole: Callable[[], Response] | None = None
    once: bool = False  # only the first streamed answer misbehaves
    _done: bool = False

    def __call__(self, request: Request) -> Response:
        response = self.fake(request)
        if self.whole is not None:
            return self.whole()
        if response.stream is not None and self.bad is not None and not (self.once and self._done):
            self._done = True
            good = list(response.stream)
            inserted = list(self.bad())
            response.stream = [*good[: self.after], *inserted, *good[self.after :]]
            if self.stall:
                response.stall_after = self.after + len(inserted)
        return response

    def script(self, *replies: Reply) -> None:
        self.fake.script(*replies)


def _route(up: FakeUpstream[Any], fmt: str) -> None:
    add_route("up", fmt, up.url + BASE_PATH[fmt], alias="m", model="real-model")


def _frames(*frames: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter(frames)


def _endless(prefix: bytes, piece: int = MiB, total: int = 300 * MiB) -> Callable[[], Iterator[bytes]]:
    """`prefix`, then `total` bytes of one line that never ends, generated as sent (the fake holds none)."""

    def frames() -> Iterator[bytes]:
        yield prefix
        for _ in range(total // piece):
            yield b"x" * piece

    return frames


# -- the clients, each in its own dialect ------------------------------------------------------------------


@dataclass
class Outcome:
    text: str  # the generated text the client received
    error: str  # what the client was told went wrong ("" if nothing)
    events: list[str]


def _anthropic_stream(proxy: ProxyServer, key: str) -> Outcome:
    client = anthropic.Anthropic(api_key=key, base_url=proxy.url, max_retries=0, timeout=30)
    text, kinds = "", []
    try:
        for event in client.messages.create(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
    except anthropic.APIStatusError as exc:
        assert exc.body["type"] == "error" and exc.body["error"]["type"] == "api_error", exc.body
        return Outcome(text, exc.body["error"]["message"], kinds)
    return Outcome(text, "", kinds)


def _chat_stream(proxy: ProxyServer, key: str) -> Outcome:
    client = openai.OpenAI(api_key=key, base_url=proxy.url + "/v1", max_retries=0, timeout=30)
    text, kinds = "", []
    try:
        for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            kinds.append("chunk")
            text += "".join(c.delta.content or "" for c in chunk.choices)
    except openai.APIError as exc:
        assert isinstance(exc.body, dict) and exc.body["type"] == "server_error", exc.body
        return Outcome(text, exc.body["message"], kinds)
    return Outcome(text, "", kinds)


def _responses_stream(proxy: ProxyServer, key: str) -> Outcome:
    client = openai.OpenAI(api_key=key, base_url=proxy.url + "/v1", max_retries=0, timeout=30)
    events = list(client.responses.create(model="m", input="hi", stream=True))
    kinds = [event.type for event in events]
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    last = events[-1]
    if last.type == "response.failed":
        assert last.response.error is not None
        # The message item that was open when the upstream broke is closed as incomplete, with its text.
        assert [item.status for item in last.response.output] == ["incomplete"]
        return Outcome(text, last.response.error.message, kinds)
    return Outcome(text, "", kinds)


def _gemini_stream(proxy: ProxyServer, key: str) -> Outcome:
    client = genai.Client(
        api_key=key,
        http_options=genai_types.HttpOptions(
            base_url=proxy.url, timeout=30_000, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    text, kinds = "", []
    try:
        for chunk in client.models.generate_content_stream(model="m", contents="hi"):
            kinds.append("chunk")
            text += chunk.text or ""
    except genai_errors.APIError as exc:
        assert exc.code == 502 and exc.status == "INTERNAL", (exc.code, exc.status)
        return Outcome(text, exc.message or "", kinds)
    return Outcome(text, "", kinds)


# -- item 3: a malformed event mid-stream ------------------------------------------------------------------

# One malformed event per upstream API, after the frames that carried "partial" and " answer".
MALFORMED: dict[str, tuple[int, bytes]] = {
    "openai-chat": (3, b'data: {"choices": "notalist"}\n\n'),
    # Well-formed JSON whose text is not text: decoded as is, it would trip the encoder instead.
    "openai-chat-typed": (3, b'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": 5}}]}\n\n'),
    "anthropic": (
        5,
        b"event: content_block_start\n"
        b'data: {"type": "content_block_start", "index": 1, "content_block": "notadict"}\n\n',
    ),
    "gemini": (2, b'data: {"candidates": "notalist"}\r\n\r\n'),
    "openai-responses": (
        6,
        b"event: response.output_text.delta\n"
        b'data: {"type": "response.output_text.delta", "output_index": "first", "content_index": 0, "delta": "x"}\n\n',
    ),
}
STREAM_CLIENTS = {
    "anthropic": _anthropic_stream,
    "openai-chat": _chat_stream,
    "openai-responses": _responses_stream,
    "gemini": _gemini_stream,
}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("client", "upstream_format"),
    [
        ("anthropic", "openai-chat"),
        ("openai-chat", "anthropic"),
        ("openai-responses", "gemini"),
        ("gemini", "openai-responses"),
        ("openai-responses", "openai-chat-typed"),
    ],
)
def test_a_malformed_event_midstream_ends_the_translated_stream_with_the_dialects_error(
    proxy: ProxyServer, alice_key: str, client: str, upstream_format: str
) -> None:
    after, bad = MALFORMED[upstream_format]
    upstream_format = upstream_format.removesuffix("-typed")
    behaviour = Misbehaving(make(upstream_format), after=after, bad=_frames(bad))  # then silence
    with FakeUpstream(behaviour) as up:
        _route(up, upstream_format)
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        started = time.monotonic()
        outcome = STREAM_CLIENTS[client](proxy, alice_key)
        took = time.monotonic() - started
        assert up.wait_for_disconnects(1), "the proxy kept the silent upstream's connection open"
    assert outcome.text == "partial answer"  # everything before the malformed event reached the client
    assert "Upstream up sent an event it could not read" in outcome.error, outcome
    assert took < PROMPT_END, f"the client waited {took:.1f} s for the end of its stream"
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status, row.error_type) == ("upstream_error", 502, "upstream_error")
    assert "could not read" in row.error_message
    assert row.usage_partial and row.ttft_ms is not None  # output had reached the client


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_a_malformed_event_midstream_fails_the_response_over_the_responses_websocket(
    proxy: ProxyServer, alice_key: str
) -> None:
    after, bad = MALFORMED["gemini"]
    behaviour = Misbehaving(make("gemini"), after=after, bad=_frames(bad), once=True)  # then silence
    with FakeUpstream(behaviour) as up:
        _route(up, "gemini")
        behaviour.script(Reply(text=TEXT, chunks=3), Reply(text="still open"))
        proxy.sync()
        client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0, timeout=30)

        def converse() -> tuple[list[Any], Any]:
            with client.responses.connect(max_retries=0) as connection:
                connection.response.create(model="m", input="hi", store=False)
                events = []
                for event in connection:
                    events.append(event)
                    if event.type in ("response.completed", "response.failed"):
                        break
                # The connection outlives the failed response: the next one is served.
                connection.response.create(model="m", input="again", store=False)
                return events, next(e for e in connection if e.type in ("response.completed", "response.failed"))

        # The SDK's WebSocket waits for events without a timeout: a response that never ends would hang the
        # test, so the conversation runs in a daemon thread given a deadline.
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(converse())
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(PROMPT_END * 2)
        assert outcome, "the failed response never ended on the WebSocket"
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        events, after_it = outcome[0]
    assert events[-1].type == "response.failed", events[-3:]
    # As over HTTP: an `error` event, then the response failed with its open message incomplete.
    assert events[-2].type == "error" and "could not read" in events[-2].error.message
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "partial answer"
    assert "could not read" in events[-1].response.error.message
    assert after_it.type == "response.completed"
    first, _second = wait_for_rows(2)
    assert (first.outcome, first.status, first.usage_partial) == ("upstream_error", 502, True)


@pytest.mark.e2e
def test_a_complete_answer_ends_the_clients_stream_though_the_upstream_never_closes_its_own(
    proxy: ProxyServer, alice_key: str
) -> None:
    # Chat: role, three text chunks, finish_reason, the usage chunk (the proxy asks for it) — then silence
    # where `data: [DONE]` and the end of the body should come.
    behaviour = Misbehaving(make("openai-chat"), after=6, bad=_frames())
    with FakeUpstream(behaviour) as up:
        _route(up, "openai-chat")
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        started = time.monotonic()
        outcome = _anthropic_stream(proxy, alice_key)
        took = time.monotonic() - started
    assert outcome == Outcome(TEXT, "", outcome.events) and outcome.events[-1] == "message_stop"
    assert took < PROMPT_END, f"the client waited {took:.1f} s for the end of its stream"
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status, row.usage_partial) == ("ok", 200, False)


@pytest.mark.e2e
def test_upstreams_that_end_their_streams_keep_their_connection(proxy: ProxyServer, alice_key: str) -> None:
    # The relay stops reading at the answer's stop event and drains the rest (Chat's [DONE]) after the client
    # has its answer: the connection goes back to the pool instead of being closed. The exchange's ledger row
    # is recorded once that drain is over, so each next request waits for it (else it may race the drain).
    with FakeUpstream(make("openai-chat")) as up:
        _route(up, "openai-chat")
        proxy.sync()
        for done in range(1, 4):
            assert _anthropic_stream(proxy, alice_key).error == ""
            wait_for_rows(done)
        assert up.connections == 1 and up.disconnects == 0


@pytest.mark.e2e
def test_a_malformed_event_on_a_pass_through_route_is_relayed_untouched(proxy: ProxyServer, alice_key: str) -> None:
    # Same API on both sides: the proxy relays the upstream's bytes, so a malformed event is the upstream's to
    # send and the client's SDK to judge, exactly as without the proxy. It must not stop the relay.
    after, bad = MALFORMED["anthropic"]
    behaviour = Misbehaving(make("anthropic"), after=after, bad=_frames(bad), stall=False)
    with FakeUpstream(behaviour) as up:
        _route(up, "anthropic")
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0, timeout=30)
        with client.messages.with_streaming_response.create(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as response:
            lines = list(response.iter_lines())
    assert bad.decode().splitlines()[1] in lines
    assert [line for line in lines if line][-2:] == ["event: message_stop", 'data: {"type":"message_stop"}']
    (row,) = wait_for_rows(1)
    # The ledger's copy could not read past the bad event: what it has is partial, and says so.
    assert (row.outcome, row.status, row.usage_partial) == ("ok", 200, True)


@pytest.mark.e2e
@pytest.mark.parametrize("client", ["anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream-answered-whole"])
def test_a_malformed_whole_answer_on_a_translated_route_is_a_502_in_the_clients_dialect(
    proxy: ProxyServer, alice_key: str, client: str, stream: bool
) -> None:
    body = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": "notalist"}).encode()
    behaviour = Misbehaving(
        make("openai-chat"), whole=lambda: Response(200, {"content-type": "application/json"}, body)
    )
    with FakeUpstream(behaviour) as up:
        _route(up, "openai-chat")
        proxy.sync()
        if client == "anthropic":
            sdk = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0, timeout=30)
            with pytest.raises(anthropic.APIStatusError) as caught:
                answer = sdk.messages.create(
                    model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=stream
                )
                list(answer) if stream else None  # type: ignore[call-overload]
            assert caught.value.status_code == 502
            assert caught.value.body["error"]["type"] == "api_error"
            message = caught.value.body["error"]["message"]
        else:
            gemini = genai.Client(
                api_key=alice_key,
                http_options=genai_types.HttpOptions(
                    base_url=proxy.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
                ),
            )
            with pytest.raises(genai_errors.ServerError) as gcaught:
                if stream:
                    list(gemini.models.generate_content_stream(model="m", contents="hi"))
                else:
                    gemini.models.generate_content(model="m", contents="hi")
            assert (gcaught.value.code, gcaught.value.status) == (502, "INTERNAL")
            message = gcaught.value.message or ""
    assert "Upstream up sent an answer that could not be read" in message
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("upstream_error", 502)


# -- the decoders themselves: whatever an upstream event holds, a StreamError, never an exception ------------

GARBAGE: list[tuple[Codec, SSEEvent]] = [
    (CHAT, SSEEvent('{"choices": "notalist"}')),
    (CHAT, SSEEvent('{"choices": [{"delta": {"tool_calls": "x"}}]}')),
    (ANTHROPIC, SSEEvent('{"type": "message_start", "message": "x"}', "message_start")),
    (ANTHROPIC, SSEEvent('{"type": "content_block_start", "index": 0, "content_block": 7}', "content_block_start")),
    (GEMINI, SSEEvent('{"candidates": "notalist"}')),
    (GEMINI, SSEEvent('{"candidates": [{"content": "x"}]}')),
    (RESPONSES, SSEEvent('{"type": "response.output_text.delta", "output_index": "a", "delta": "x"}')),
    (CHAT, SSEEvent('{"choices": [{"index": 0, "delta": {"content": 5}}]}')),  # decoded, but not text
]


@pytest.mark.parametrize(("codec", "event"), GARBAGE, ids=lambda v: getattr(v, "data", getattr(v, "dialect", "")))
def test_a_decoder_that_cannot_read_an_event_ends_the_stream_with_a_stream_error(codec: Codec, event: SSEEvent) -> None:
    decoder = GuardedDecoder(codec.stream.StreamDecoder(IRRequest(model="m", messages=())), source="Upstream u")
    *before, error = decoder.feed(event)
    assert not any(isinstance(e, (StreamError, TextDelta)) for e in before), before
    assert isinstance(error, StreamError) and error.error.http_status == 502
    assert error.error.message.startswith("Upstream u sent an event it could not read")
    assert decoder.failure is not None and decoder.ended
    # Over: nothing more comes out, whatever follows.
    assert decoder.feed(SSEEvent('{"candidates": [{"content": {"parts": [{"text": "more"}]}}]}')) == []
    assert decoder.finish() == []


def test_events_decoded_before_the_bad_one_are_kept() -> None:
    decoder = GuardedDecoder(CHAT.stream.StreamDecoder(IRRequest(model="m", messages=())))
    good = SSEEvent('{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "kept"}}]}')
    assert any(isinstance(e, TextDelta) and e.text == "kept" for e in decoder.feed(good))
    assert isinstance(decoder.feed(SSEEvent('{"choices": "notalist"}'))[0], StreamError)


# -- item 9: one huge event, a huge body, a gzip bomb ------------------------------------------------------


@pytest.mark.e2e
def test_an_event_over_the_cap_ends_a_translated_stream_with_the_dialects_error(
    proxy: ProxyServer, alice_key: str
) -> None:
    # After " answer", an Anthropic delta whose data line never ends: 300 MB if the proxy kept reading.
    prefix = (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
    )
    behaviour = Misbehaving(make("anthropic"), after=5, bad=_endless(prefix))
    with FakeUpstream(behaviour) as up:
        _route(up, "anthropic")
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        rss = _memory_kb(proxy, "VmRSS")
        started = time.monotonic()
        outcome = _chat_stream(proxy, alice_key)
        took = time.monotonic() - started
        assert up.wait_for_disconnects(1)
    assert outcome.text == "partial answer"
    assert (
        f"a stream event larger than {EVENT_CAP} bytes" in outcome.error and "UPSTREAM_MAX_EVENT_BYTES" in outcome.error
    )
    assert took < PROMPT_END
    assert _memory_kb(proxy, "VmHWM") - rss < 64 * 1024
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("upstream_error", 502) and row.usage_partial


@pytest.mark.e2e
def test_an_event_over_the_cap_ends_a_parsed_pass_through_stream_with_the_dialects_error(
    proxy: ProxyServer, alice_key: str
) -> None:
    # A Chat client that did not ask for usage: the proxy asks for it and reads the events to hide the usage
    # chunk, so it would hold the event: refused past the cap, with Chat's in-stream error.
    behaviour = Misbehaving(
        make("openai-chat"), after=3, bad=_endless(b'data: {"choices":[{"index":0,"delta":{"content":"')
    )
    with FakeUpstream(behaviour) as up:
        _route(up, "openai-chat")
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        outcome = _chat_stream(proxy, alice_key)
        assert up.wait_for_disconnects(1)
    assert outcome.text == "partial answer"
    assert "UPSTREAM_MAX_EVENT_BYTES" in outcome.error
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("upstream_error", 502) and row.usage_partial


@pytest.mark.e2e
def test_an_event_over_the_cap_on_a_raw_pass_through_stream_is_relayed_and_only_the_ledger_copy_stops(
    proxy: ProxyServer, alice_key: str
) -> None:
    # Anthropic to Anthropic: bytes go on as they come and the proxy holds none of the event; only its
    # reading for the ledger stops (usage marked partial).
    big = "y" * (3 * EVENT_CAP)
    event = json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": big}})
    behaviour = Misbehaving(
        make("anthropic"),
        after=5,
        bad=_frames(b"event: content_block_delta\ndata: " + event.encode() + b"\n\n"),
        stall=False,
    )
    with FakeUpstream(behaviour) as up:
        _route(up, "anthropic")
        behaviour.script(Reply(text=TEXT, chunks=3))
        proxy.sync()
        outcome = _anthropic_stream(proxy, alice_key)
    assert outcome.error == "" and outcome.text == "partial answer" + big + " here"
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("ok", 200) and row.usage_partial


def _huge_body(content_type: str) -> Callable[[], Response]:
    def answer() -> Response:
        pieces = (b"[" if i == 0 else b" " * MiB for i in range(300))  # 300 MB, made as it is sent
        return Response(200, {"content-type": content_type}, stream=pieces)

    return answer


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("content_type", "stream"),
    [("application/json", False), ("text/plain", True)],
    ids=["whole", "stream-request-answered-with-no-event-stream"],
)
def test_a_body_over_the_cap_is_a_502_and_is_never_held_whole(
    proxy: ProxyServer, alice_key: str, content_type: str, stream: bool
) -> None:
    behaviour = Misbehaving(make("openai-chat"), whole=_huge_body(content_type))
    with FakeUpstream(behaviour) as up:
        _route(up, "openai-chat")
        proxy.sync()
        rss = _memory_kb(proxy, "VmRSS")
        client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=stream)
        assert up.wait_for_disconnects(1)
    assert caught.value.status_code == 502
    message = caught.value.body["message"]  # type: ignore[index]
    assert f"an answer larger than {BODY_CAP} bytes" in message and "UPSTREAM_MAX_BODY_BYTES" in message
    assert _memory_kb(proxy, "VmHWM") - rss < 64 * 1024
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("upstream_error", 502)


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    zeros = bytes(MiB)
    return b"".join([*(compressor.compress(zeros) for _ in range(size // MiB)), compressor.flush()])


@pytest.mark.e2e
def test_a_gzip_bomb_is_cut_off_at_the_body_cap_counted_decompressed(proxy: ProxyServer, alice_key: str) -> None:
    bomb = _gzip_bomb(300 * MiB)
    assert len(bomb) < MiB and len(gzip.decompress(bomb)) == 300 * MiB  # small on the wire, huge inflated
    behaviour = Misbehaving(
        make("anthropic"),
        whole=lambda: Response(200, {"content-type": "application/json", "content-encoding": "gzip"}, bomb),
    )
    with FakeUpstream(behaviour) as up:
        _route(up, "anthropic")
        proxy.sync()
        rss = _memory_kb(proxy, "VmRSS")
        gemini = genai.Client(
            api_key=alice_key,
            http_options=genai_types.HttpOptions(
                base_url=proxy.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
            ),
        )
        with pytest.raises(genai_errors.ServerError) as caught:
            gemini.models.generate_content(model="m", contents="hi")
    assert (caught.value.code, caught.value.status) == (502, "INTERNAL")
    assert "UPSTREAM_MAX_BODY_BYTES" in (caught.value.message or "")
    assert _memory_kb(proxy, "VmHWM") - rss < 64 * 1024
    (row,) = wait_for_rows(1)
    assert (row.outcome, row.status) == ("upstream_error", 502)
