"""What the four provider fakes share: the reply queue, the echo default, and how a reply becomes an HTTP answer."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from tests.fakes.script import Failure, Reply, ReplyQueue
from tests.fakes.server import Request, Response

JsonObject = dict[str, Any]


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(obj: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, {"content-type": "application/json", **(headers or {})}, dumps(obj))


def new_id(prefix: str, size: int = 24) -> str:
    return prefix + secrets.token_hex(size // 2 + 1)[:size]


def signature(kind: str, text: str) -> str:
    """A stable opaque base64 blob standing in for a provider's reasoning signature."""
    return base64.b64encode(f"fake-{kind}-signature:".encode() + hashlib.sha256(text.encode()).digest()).decode()


def estimate_tokens(request: Request) -> int:
    """Token count stand-in for the count endpoints: about four bytes a token, like the usual heuristic."""
    return max(1, len(request.body) // 4)


class ProviderFake:
    """A request handler for `FakeUpstream` that answers like one provider and plays back a script."""

    name: ClassVar[str]  # the --provider name
    title: ClassVar[str]  # used in the echo reply
    default_models: ClassVar[Sequence[str]]

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Reply | None = None,
        models: Sequence[str] | None = None,
        strict: bool = True,
    ) -> None:
        """`api_key`: the key requests must carry (None accepts any). `default`: answers unscripted requests (its
        text, when empty, becomes the echo text). `models`: what the list endpoint shows; generation accepts any
        model. `strict`: reject unknown request fields, as the real APIs do."""
        self.api_key = api_key
        self.replies = ReplyQueue(default)
        self.models = list(models or self.default_models)
        self.strict = strict

    def script(self, *replies: Reply) -> None:
        self.replies.script(*replies)

    def __call__(self, request: Request) -> Response:
        raise NotImplementedError

    def error(self, failure: Failure) -> Response:
        """`failure` in the provider's error envelope."""
        raise NotImplementedError

    def fail(self, status: int, message: str, **details: Any) -> Response:
        return self.error(Failure(status, message, **details))

    def next_reply(self, model: str) -> Reply:
        reply = self.replies.take()
        echo = f"Hello from the {self.title} fake ({model})."
        if reply is None:
            return Reply(text=echo)
        if reply is self.replies.default and not (reply.text or reply.tool_calls or reply.error):
            return replace(reply, text=echo)
        return reply

    def answer(
        self,
        reply: Reply,
        stream: bool,
        render: Callable[[], JsonObject],
        render_stream: Callable[[], Iterator[bytes]],
        *,
        headers: Mapping[str, str] | None = None,
        stream_type: str = "text/event-stream; charset=utf-8",
    ) -> Response:
        """The HTTP answer for `reply`: an error, one JSON body, or an SSE stream, with the reply's timing."""
        if reply.hang:
            return Response(hang=True)
        # A non-streaming request cannot fail halfway: the provider answers with the error instead.
        failure = reply.error or (None if stream else reply.stream_error)
        if failure is not None:
            response = self.error(failure)
        elif not stream:
            response = json_response(render(), headers=headers)
        else:
            response = Response(
                headers={"content-type": stream_type, "cache-control": "no-cache", **(headers or {})},
                stream=render_stream(),
                chunk_delay=reply.chunk_delay,
                prefill=reply.prefill,
                stall_after=reply.stall_after,
            )
        response.latency = reply.latency
        return response
