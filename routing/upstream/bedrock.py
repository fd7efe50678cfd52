"""AWS Bedrock as an upstream: its URLs, which API each model speaks there, and request signing.

Anthropic's models are called through InvokeModel (`/model/{id}/invoke`, `/invoke-with-response-stream`) with the
Messages body (the model in the URL, `anthropic_version: bedrock-2023-05-31` and `anthropic_beta` in the body),
so an Anthropic client's request passes through nearly untouched (prompt caching, thinking, tools); every other
model through the Converse API (`/converse`, `/converse-stream`), which the `bedrock` codec speaks. Both stream
in AWS's binary event-stream framing (translation.bedrock.eventstream).

A request is signed with SigV4 (botocore) from an access key pair (named environment variables, or stored
encrypted as `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`) or the standard AWS credential chain (profile, container
and instance roles), or it carries a Bedrock API key as a bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from translation.bedrock.eventstream import invoke_stream_event, is_exception
from translation.dialect import Dialect
from translation.errors import error_body, parse_upstream_error
from translation.operation import Operation
from translation.sse import SSEEvent

logger = logging.getLogger(__name__)

KIND = "bedrock"
LABEL = "AWS Bedrock"
SERVICE = "bedrock"
# What Bedrock's InvokeModel expects of an Anthropic body instead of headers.
ANTHROPIC_VERSION = "bedrock-2023-05-31"


def is_anthropic(model: str) -> bool:
    """A Claude model id, a cross-region inference profile (`us.anthropic.claude-…`) or an ARN naming one."""
    return "anthropic.claude" in model.lower()


def wire_for(model: str) -> Dialect:
    return Dialect.ANTHROPIC if is_anthropic(model) else Dialect(KIND)


def default_base_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def endpoint_url(base_url: str, operation: Operation, model: str, stream: bool) -> str:
    """Token counting has no Bedrock endpoint that takes the same body; the caller estimates instead."""
    # ':' (in every model id) stays as it is: the HTTP client would send %3A decoded anyway, and the signature
    # must cover the path the server receives. '/' (in an ARN) is encoded.
    root = f"{base_url.rstrip('/')}/model/{quote(model, safe=':@')}"
    if is_anthropic(model):
        return root + ("/invoke-with-response-stream" if stream else "/invoke")
    return root + ("/converse-stream" if stream else "/converse")


def anthropic_body(payload: dict[str, Any], beta: str | None) -> dict[str, Any]:
    """A Messages body as InvokeModel takes it: no model (it is in the URL, as is `stream`: the path says it),
    the version, and the client's betas in the body."""
    body = {name: value for name, value in payload.items() if name not in ("model", "stream")}
    body.setdefault("anthropic_version", ANTHROPIC_VERSION)
    if beta:
        body.setdefault("anthropic_beta", [b.strip() for b in beta.split(",") if b.strip()])
    return body


# --- credentials and signing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwsAuth:
    """How an upstream's requests are authenticated: a bearer API key, or SigV4 with these credentials
    (botocore credentials, possibly refreshable: the chain's role credentials expire)."""

    region: str
    api_key: str | None = None
    credentials: Any = None
    problem: str = ""  # why no credentials could be found, for the error a request gets


def load_auth(
    region: str, api_key: str | None, key_pair: tuple[str, str, str | None] | None, *, use_chain: bool
) -> AwsAuth:
    """Reads the AWS credential chain when asked (files, and possibly the instance metadata service): call it
    where the configuration loads, not on the event loop."""
    if api_key:
        return AwsAuth(region, api_key=api_key)
    from botocore.credentials import Credentials

    if key_pair is not None:
        access_key, secret_key, token = key_pair
        return AwsAuth(region, credentials=Credentials(access_key, secret_key, token))
    if not use_chain:
        return AwsAuth(region, problem="no AWS credentials are configured")
    import botocore.session

    try:
        credentials = botocore.session.Session().get_credentials()
    except Exception as exc:  # a malformed profile file, an unreachable metadata service
        return AwsAuth(region, problem=f"the AWS credential chain failed: {exc}")
    if credentials is None:
        return AwsAuth(region, problem="the AWS credential chain found no credentials")
    return AwsAuth(region, credentials=credentials)


async def authorize(request: httpx.Request, auth: AwsAuth) -> str:
    """Put the request's credentials on it: the bearer key, or a SigV4 signature over its method, URL, the
    headers that matter and the body. Returns the secret it used (to keep it out of what comes back)."""
    if auth.api_key:
        request.headers["authorization"] = f"Bearer {auth.api_key}"
        return auth.api_key
    if auth.credentials is None:
        raise ValueError(auth.problem or "no AWS credentials")
    credentials = auth.credentials
    if getattr(credentials, "refresh_needed", lambda: False)():
        frozen = await asyncio.to_thread(credentials.get_frozen_credentials)  # a role's refresh does I/O
    else:
        frozen = credentials.get_frozen_credentials()
    for name, value in sign(request.method, str(request.url), request.content, frozen, auth.region).items():
        request.headers[name] = value
    return str(frozen.secret_key)


def sign(method: str, url: str, body: bytes, credentials: Any, region: str) -> dict[str, str]:
    """The SigV4 headers for a request (botocore's signer: the one AWS's own SDKs use)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    aws_request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(credentials, SERVICE, region).add_auth(aws_request)
    signed = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
    return {name: str(aws_request.headers[name]) for name in signed if name in aws_request.headers}


# --- InvokeModel's stream ---------------------------------------------------------------------------------------


class InvokeStreamParser:
    """`invoke-with-response-stream`: each event-stream `chunk` message carries one Anthropic stream event,
    base64-encoded in `{"bytes": …}`. Unwrapped here into the SSE events the Anthropic codec reads (an exception
    into Anthropic's `error` event), so the rest of the relay sees an Anthropic stream. `frames`: the event-stream
    parser (translation.bedrock.eventstream), whose guarantees (linear time, bounded memory) this keeps."""

    def __init__(self, frames: Any) -> None:
        self._frames = frames

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return [self._unwrap(event) for event in self._frames.feed(chunk)]

    def flush(self) -> list[SSEEvent]:
        return [self._unwrap(event) for event in self._frames.flush()]

    @staticmethod
    def _unwrap(event: SSEEvent) -> SSEEvent:
        name = event.event or ""
        if not is_exception(name):
            return invoke_stream_event(event)
        # A stream exception, read as Bedrock's and told as Anthropic's error event (both envelopes: translation).
        error = parse_upstream_error(500, event.data.encode(), error_type=name)
        return SSEEvent(data=json.dumps(error_body(Dialect.ANTHROPIC, error)), event="error")
