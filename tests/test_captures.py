"""Captures (issue 16): the bodies of an exchange whose key or alias asks for them, kept beside its ledger row —
the client's request, the upstream request as sent, the upstream's answer and the answer as the client got it —
redacted of secrets, cut at CAPTURE_MAX_BYTES, pruned after CAPTURE_RETENTION_DAYS, and shown to staff on the
ledger row's admin page. Off by default: nothing is kept."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anthropic
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from websockets.sync.client import connect as ws_connect

from routing.models import ModelAlias, ProxyKey
from routing.runtime.worker import worker
from tests.conftest import add_route
from tests.fakes.providers import fake_upstream
from tests.fakes.script import Reply, Usage
from tests.liveserver import ProxyServer
from tests.test_bedrock_client import runtime  # noqa: F401 (boto3's bedrock-runtime client for the live proxy)
from tests.test_ledger import wait_for_rows
from usage import captures
from usage.models import Capture, LedgerEntry

# What a client might paste into a prompt, and what it might send as headers: none of it may be kept.
PASTED_KEYS = ("sk-ant-api03-pastedPastedPasted1234", "AIzaSyPastedGoogleKey1234567890", "sk-proj-PastedOpenAIKey1234")
UPSTREAM_KEY = "upstream-credential-0123456789"  # not shaped like a key: redacted because the exchange sent it
HEADER_SECRET = "sk-proj-HeaderSecretHeaderSecret99"


def wait_for_captures(count: int, timeout: float = 10.0) -> list[Capture]:
    """Captures are written off the request path, after the exchange: wait for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(Capture.objects.order_by("captured_at", "id"))
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {count} captures, found {Capture.objects.count()}")


def everything_kept(capture: Capture) -> str:
    """Every text a capture row holds, for "this never appears" checks."""
    parts = [capture.client_request, capture.upstream_request, capture.upstream_response, capture.client_response]
    return "\n".join([*parts, capture.upstream_url, json.dumps(capture.headers)])


@pytest.fixture
def chat_upstream() -> Iterator:
    """An OpenAI Chat Completions fake behind alias `m` (upstream model `real-model`), with a stored key."""
    with fake_upstream("openai-chat") as fake:
        upstream = add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        upstream.set_api_key(UPSTREAM_KEY)
        upstream.save()
        yield fake


def ask_anthropic(url: str, key: str, prompt: str, *, stream: bool, **headers: str) -> str:
    client = anthropic.Anthropic(api_key=key, base_url=url, max_retries=0, default_headers=headers)
    messages = [{"role": "user", "content": prompt}]
    if stream:
        with client.messages.stream(model="m", max_tokens=50, messages=messages) as events:  # type: ignore[arg-type]
            return "".join(events.text_stream)
    message = client.messages.create(model="m", max_tokens=50, messages=messages)  # type: ignore[arg-type]
    return "".join(block.text for block in message.content if block.type == "text")


def capturing(key_plaintext: str) -> None:
    key = ProxyKey.objects.get(prefix=key_plaintext[:14])
    key.capture_bodies = True
    key.save()


# --- on the wire ------------------------------------------------------------------------------------------


def test_nothing_is_kept_unless_the_key_or_the_alias_asks(proxy, alice, alice_key, chat_upstream):
    _, other_key = ProxyKey.issue(alice, label="capturing")
    capturing(other_key)
    chat_upstream.script(Reply(text="one"), Reply(text="two"), Reply(text="three"))
    proxy.sync()
    assert ask_anthropic(proxy.url, alice_key, "not kept", stream=False) == "one"  # neither asks: off by default
    assert ask_anthropic(proxy.url, other_key, "kept by key", stream=False) == "two"

    first, second = wait_for_rows(2)
    (kept,) = wait_for_captures(1)
    assert kept.exchange_id == second.exchange_id
    assert "kept by key" in kept.client_request

    alias = ModelAlias.objects.get(name="m")
    alias.capture_bodies = True
    alias.save()
    proxy.sync()
    assert ask_anthropic(proxy.url, alice_key, "kept by alias", stream=False) == "three"
    *_, third = wait_for_rows(3)
    kept_now = wait_for_captures(2)
    assert [c.exchange_id for c in kept_now] == [second.exchange_id, third.exchange_id]
    assert first.exchange_id not in {c.exchange_id for c in Capture.objects.all()}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_translated_exchange_keeps_both_sides_of_both_hops(proxy, alice_key, chat_upstream, stream):
    capturing(alice_key)
    chat_upstream.script(Reply(text="Hi there, friend", usage=Usage(input=10, output=4), chunks=3))
    proxy.sync()
    assert ask_anthropic(proxy.url, alice_key, "Hello capture", stream=stream) == "Hi there, friend"

    (row,) = wait_for_rows(1)
    (capture,) = wait_for_captures(1)
    assert capture.exchange_id == row.exchange_id
    assert (capture.requested_model, capture.client_status, capture.upstream_status) == ("m", 200, 200)
    assert capture.truncated == []

    # The client's request as it sent it (Anthropic Messages), and the upstream request as sent (Chat).
    client_request = json.loads(capture.client_request)
    assert client_request["model"] == "m" and client_request["max_tokens"] == 50
    assert client_request["messages"] == [{"role": "user", "content": "Hello capture"}]
    upstream_request = json.loads(capture.upstream_request)
    assert upstream_request["model"] == "real-model"
    assert upstream_request == chat_upstream.requests[-1].json  # exactly what the upstream received
    assert capture.upstream_url == chat_upstream.url + "/v1/chat/completions"
    assert capture.headers["client_request"]["anthropic-version"]
    assert capture.headers["client_request"]["user-agent"].startswith("Anthropic/Python")
    assert "x-api-key" not in capture.headers["client_request"]
    assert "authorization" not in capture.headers["upstream_request"]

    if stream:
        # The upstream's Chat chunks and the Anthropic events the client got, as relayed.
        assert "chat.completion.chunk" in capture.upstream_response
        assert capture.upstream_response.rstrip().endswith("data: [DONE]")
        assert capture.client_response.startswith("event: message_start")
        deltas = [
            json.loads(line[6:])["delta"]["text"]
            for line in capture.client_response.splitlines()
            if line.startswith("data: ") and '"text_delta"' in line
        ]
        assert "".join(deltas) == "Hi there, friend"
        assert "event: message_stop" in capture.client_response
    else:
        assert json.loads(capture.upstream_response)["choices"][0]["message"]["content"] == "Hi there, friend"
        answer = json.loads(capture.client_response)
        assert (answer["type"], answer["content"][0]["text"]) == ("message", "Hi there, friend")


def test_secrets_are_redacted_and_headers_kept_only_from_an_allow_list(proxy, alice_key, chat_upstream):
    capturing(alice_key)
    chat_upstream.script(Reply(text=f"echo {PASTED_KEYS[0]} and {UPSTREAM_KEY}"))
    proxy.sync()
    prompt = "my keys: " + " ".join(PASTED_KEYS) + f" and the upstream's {UPSTREAM_KEY} and mine {alice_key}"
    ask_anthropic(proxy.url, alice_key, prompt, stream=True, **{"x-team-token": HEADER_SECRET})
    assert chat_upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    (capture,) = wait_for_captures(1)
    kept = everything_kept(capture)
    for secret in (*PASTED_KEYS, UPSTREAM_KEY, HEADER_SECRET, alice_key):
        assert secret not in kept
    assert "x-team-token" not in capture.headers["client_request"]
    assert json.loads(capture.client_request)["messages"][0]["content"].startswith(
        "my keys: [redacted] [redacted] [redacted] and the upstream's [redacted] and mine [redacted]"
    )
    assert "[redacted]" in capture.upstream_request
    assert "[redacted]" in capture.upstream_response and "[redacted]" in capture.client_response


def test_a_token_count_is_captured_too(proxy, alice_key):
    capturing(alice_key)
    with fake_upstream("anthropic") as fake:
        add_route("claude", "anthropic", fake.url, alias="c", model="real-claude")
        proxy.sync()
        client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
        counted = client.messages.count_tokens(model="c", messages=[{"role": "user", "content": "count me"}])
    (capture,) = wait_for_captures(1)
    assert capture.upstream_url == fake.url + "/v1/messages/count_tokens"
    assert json.loads(capture.upstream_request)["model"] == "real-claude"
    assert json.loads(capture.client_response) == {"input_tokens": counted.input_tokens}
    assert json.loads(capture.upstream_response) == json.loads(capture.client_response)  # same API: as it came


def test_a_responses_websocket_turn_is_captured_frame_by_frame(proxy, alice_key, chat_upstream):
    capturing(alice_key)
    chat_upstream.script(Reply(text="over the socket"))
    proxy.sync()
    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {alice_key}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "hello socket"}))
        while json.loads(ws.recv())["type"] != "response.completed":
            pass

    (capture,) = wait_for_captures(1)
    assert json.loads(capture.client_request)["input"] == "hello socket"
    assert "hello socket" in json.dumps(json.loads(capture.upstream_request)["messages"])
    frames = [json.loads(line) for line in capture.client_response.splitlines()]
    assert frames[0]["type"] == "response.created" and frames[-1]["type"] == "response.completed"
    text = "".join(f["delta"] for f in frames if f["type"] == "response.output_text.delta")
    assert text == "over the socket"


def test_an_aws_sdk_stream_is_kept_as_event_text_not_binary_framing(proxy, alice_key, chat_upstream, runtime):  # noqa: F811
    capturing(alice_key)
    chat_upstream.script(Reply(text="Streamed hello"))
    proxy.sync()
    streamed = runtime.converse_stream(modelId="m", messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    events = list(streamed["stream"])
    assert events[0] == {"messageStart": {"role": "assistant"}}

    (capture,) = wait_for_captures(1)
    assert capture.client_response.startswith("event: messageStart\ndata: ")
    assert ":event-type" not in capture.client_response and "\ufffd" not in capture.client_response
    deltas = [
        json.loads(line[6:])["delta"]["text"]
        for line in capture.client_response.splitlines()
        if line.startswith("data: ") and '"delta"' in line
    ]
    assert "".join(deltas) == "Streamed hello"


@pytest.fixture(scope="module")
def small_cap_server(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    """A server of its own that keeps at most 600 bytes of each body."""
    with ProxyServer(extra_env={"CAPTURE_MAX_BYTES": "600"}) as server:
        yield server


def test_bodies_past_the_cap_are_cut_and_marked_while_the_client_gets_everything(
    small_cap_server, transactional_db, alice_key, chat_upstream
):
    capturing(alice_key)
    long_answer = "word " * 400
    chat_upstream.script(Reply(text=long_answer, chunks=40))
    small_cap_server.sync()
    prompt = "p" * 2000
    assert ask_anthropic(small_cap_server.url, alice_key, prompt, stream=True) == long_answer  # nothing withheld

    (capture,) = wait_for_captures(1)
    assert sorted(capture.truncated) == ["client_request", "client_response", "upstream_request", "upstream_response"]
    for body in (capture.client_request, capture.upstream_request, capture.upstream_response, capture.client_response):
        assert 500 <= len(body.encode()) <= 600
    assert capture.client_response.startswith("event: message_start")
    small_cap_server.drain()


def test_a_large_body_is_redacted_piece_by_piece_exactly_as_in_one_go():
    from translation.redaction import redact_text

    parts = [f'{{"n":{i},"text":"key sk-ant-api03-k{i:06d}abcdefgh and Bearer tok{i:08d}"}},' for i in range(3000)]
    text = "[" + "".join(parts) + '"AIzaSyEndOfTheBodyKey12345678 ' + UPSTREAM_KEY + '"]'
    assert len(text) > 40 * captures.REDACT_PIECE
    kept = captures.redacted(text, (UPSTREAM_KEY,))
    assert kept == redact_text(text, (UPSTREAM_KEY,))
    assert "sk-ant" not in kept and "tok0" not in kept and "AIza" not in kept and UPSTREAM_KEY not in kept


def a_capture(exchange_id: str, body: bytes = b'{"model":"m"}') -> captures.ExchangeCapture:
    capture = captures.ExchangeCapture(exchange_id, time.time(), body, {"user-agent": "test", "x-api-key": "k"})
    capture.to_client(b'{"ok":true}', 200)
    return capture


@pytest.mark.django_db(transaction=True)
def test_captures_wait_while_the_database_is_down_and_are_stored_once_it_answers(monkeypatch):
    import asyncio

    from django.db import OperationalError

    real_store = captures.store

    def unreachable(rows):
        raise OperationalError("database is locked")

    captures.submit(a_capture("down-1", b"binary \x00 framing"), 200, "m", ())
    monkeypatch.setattr(captures, "store", unreachable)
    asyncio.run(captures.write_queued())
    assert captures.pending_count() == 1 and not Capture.objects.exists()

    monkeypatch.setattr(captures, "store", real_store)
    asyncio.run(captures.write_queued())
    assert captures.pending_count() == 0
    kept = Capture.objects.get()
    assert (kept.exchange_id, kept.client_status, kept.client_response) == ("down-1", 200, '{"ok":true}')
    assert kept.client_request == "binary \ufffd framing"  # no NUL: PostgreSQL's text refuses it
    assert kept.headers == {"client_request": {"user-agent": "test"}}


# --- retention --------------------------------------------------------------------------------------------


def stored(exchange_id: str, captured_at: datetime, **fields: object) -> Capture:
    return Capture.objects.create(exchange_id=exchange_id, captured_at=captured_at, **fields)


@pytest.mark.django_db
def test_retention_deletes_captures_older_than_the_setting_in_batches(monkeypatch):
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    monkeypatch.setattr(captures, "PRUNE_BATCH", 3)
    for number in range(7):
        stored(f"old-{number}", now - timedelta(days=8, hours=number))
    stored("recent", now - timedelta(days=6))

    assert captures.prune(timedelta(days=7), max_batches=2, now=now) == 6
    assert captures.prune(timedelta(days=7), now=now) == 1
    assert list(Capture.objects.values_list("exchange_id", flat=True)) == ["recent"]
    assert "capture retention" in set(worker.jobs)


@pytest.mark.django_db(transaction=True)
def test_the_background_job_prunes_by_capture_retention_days(settings):
    import asyncio

    settings.CAPTURE_RETENTION_DAYS = 7
    stored("old", datetime.now(UTC) - timedelta(days=8))
    stored("recent", datetime.now(UTC) - timedelta(days=1))
    asyncio.run(captures.prune_in_background())
    assert list(Capture.objects.values_list("exchange_id", flat=True)) == ["recent"]
    settings.CAPTURE_RETENTION_DAYS = 0  # 0 keeps them forever
    stored("ancient", datetime.now(UTC) - timedelta(days=800))
    asyncio.run(captures.prune_in_background())
    assert Capture.objects.count() == 2


# --- the admin --------------------------------------------------------------------------------------------


def ledger_row(exchange_id: str) -> LedgerEntry:
    now = datetime.now(UTC)
    return LedgerEntry.objects.create(
        exchange_id=exchange_id,
        started_at=now,
        finished_at=now,
        dialect="anthropic",
        endpoint="/v1/messages",
        operation="generate",
        requested_model="m",
        outcome="ok",
        status=200,
        duration_ms=5,
    )


@pytest.fixture
def captured_row(db) -> LedgerEntry:
    row = ledger_row("proc-1")
    ledger_row("proc-2")  # not captured
    stored(
        "proc-1",
        row.started_at,
        requested_model="m",
        client_status=200,
        upstream_status=200,
        upstream_url="https://api.example/v1/chat/completions",
        client_request='{"model":"m","messages":[{"role":"user","content":"<b>hi</b>"}]}',
        upstream_request='{"model":"real","messages":[]}',
        upstream_response='data: {"choices":[]}\n\ndata: [DONE]\n\n',
        client_response='{"type":"message","content":[{"type":"text","text":"cut',
        headers={"client_request": {"user-agent": "Anthropic/Python 1.0"}},
        truncated=["client_response"],
    )
    return row


def test_staff_see_the_capture_on_the_ledger_row_and_the_list_marks_it(captured_row):
    admin = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)

    listing = client.get("/admin/usage/ledgerentry/").content.decode()
    assert listing.count("capture-mark") == 1

    page = client.get(f"/admin/usage/ledgerentry/{captured_row.pk}/change/").content.decode()
    assert ">Captured bodies<" in page
    assert '"model": "m",\n  "messages": [' in page.replace("&quot;", '"')  # pretty-printed JSON
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page  # shown, never rendered
    assert "data: [DONE]" in page  # event text as it was
    assert "truncated at CAPTURE_MAX_BYTES" in page
    assert "user-agent: Anthropic/Python 1.0" in page
    assert "https://api.example/v1/chat/completions" in page

    other = LedgerEntry.objects.get(exchange_id="proc-2")
    assert ">Captured bodies<" not in client.get(f"/admin/usage/ledgerentry/{other.pk}/change/").content.decode()
    capture = Capture.objects.get()
    assert "Answer to the client" in client.get(f"/admin/usage/capture/{capture.pk}/change/").content.decode()


def test_staff_without_the_capture_permission_and_people_who_are_not_staff_never_see_captures(captured_row):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_ledgerentry"))
    client = Client()
    client.force_login(viewer)
    assert "capture-mark" not in client.get("/admin/usage/ledgerentry/").content.decode()
    page = client.get(f"/admin/usage/ledgerentry/{captured_row.pk}/change/")
    assert page.status_code == 200 and ">Captured bodies<" not in page.content.decode()
    assert "&lt;b&gt;hi" not in page.content.decode()
    assert client.get("/admin/usage/capture/").status_code == 403

    person = User.objects.create_user("person", password="pw")
    client.force_login(person)
    answer = client.get(f"/admin/usage/ledgerentry/{captured_row.pk}/change/")
    assert answer.status_code == 302 and "hi" not in answer.content.decode()
