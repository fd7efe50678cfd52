"""A fake AWS Bedrock runtime: Converse (`/model/{id}/converse`, `/converse-stream`) and InvokeModel for Anthropic
models (`/invoke`, `/invoke-with-response-stream`), answering in Bedrock's shapes and its binary event-stream
framing, and checking every request's SigV4 signature by recomputing it with botocore (or a Bedrock API key sent
as a bearer token).

Shapes follow botocore's bedrock-runtime service model (ConverseResponse, ConverseStreamOutput members) and
Anthropic's Messages API on Bedrock (`anthropic_version: bedrock-2023-05-31`, no `model` or `stream` in the body;
each stream event base64-encoded in a `chunk` message's `{"bytes": …}`), which the InvokeModel side hands to the
ordinary Anthropic fake (script it through `anthropic`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.anthropic import AnthropicFake
from tests.fakes.base import JsonObject, ProviderFake, json_response, new_id
from tests.fakes.script import Failure, Reply, split
from tests.fakes.server import Headers, Request, Response
from translation.bedrock.eventstream import encode_message
from translation.sse import SSEParser

ROUTE = re.compile(r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)")
CONVERSE_FIELDS = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
}
STOP_REASONS = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "content_filtered",
}
EXCEPTIONS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


class BedrockFake(ProviderFake):
    name = "bedrock"
    title = "Bedrock"
    default_models = ("amazon.nova-pro-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")

    def __init__(self, *, region: str = "us-east-1", access_key: tuple[str, str] | None = None, **options: Any) -> None:
        """`access_key`: the (id, secret) pair whose SigV4 signatures are accepted; `api_key` (ProviderFake's): a
        Bedrock API key accepted as a bearer token. Neither: any request is accepted."""
        super().__init__(**options)
        self.region = region
        self.access_key = access_key
        self.anthropic = AnthropicFake(strict=self.strict)
        self.refused: list[str] = []

    def __call__(self, request: Request) -> Response:
        if denied := self._authorized(request):
            return denied
        match = ROUTE.fullmatch(request.path)
        if match is None or request.method != "POST":
            return self.error(Failure(404, f"Unknown operation {request.method} {request.path}"))
        model, operation = unquote(match.group(1)), match.group(2)
        if operation.startswith("invoke"):
            return self._invoke(request, model, stream=operation == "invoke-with-response-stream")
        return self._converse(request, model, stream=operation == "converse-stream")

    # --- authentication ------------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        if self.api_key is not None and authorization == f"Bearer {self.api_key}":
            return None
        if self.access_key is None and self.api_key is None:
            return None
        if self.access_key is not None and authorization.startswith("AWS4-HMAC-SHA256 "):
            problem = self._signature_problem(request, authorization)
            if problem is None:
                return None
            self.refused.append(problem)
            return self.error(Failure(403, problem, type="InvalidSignatureException"))
        self.refused.append("no credentials")
        return self.error(Failure(403, "Missing Authentication Token", type="AccessDeniedException"))

    def _signature_problem(self, request: Request, authorization: str) -> str | None:
        fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
        access_key_id, date, region, service, _ = fields["Credential"].split("/")
        if access_key_id != self.access_key[0]:  # type: ignore[index]
            return f"The security token included in the request is invalid ({access_key_id})"
        if (region, service) != (self.region, "bedrock"):
            return f"Credential should be scoped to a valid region and service bedrock, not {region}/{service}"
        signed = fields["SignedHeaders"].split(";")
        host = request.headers.get("host", "")
        aws_request = AWSRequest(
            method=request.method,
            url=f"http://{host}{request.target}",
            data=request.body,
            headers={name: request.headers[name] for name in signed if name in request.headers},
        )
        aws_request.context["timestamp"] = request.headers.get("x-amz-date", "")
        token = request.headers.get("x-amz-security-token")
        signer = SigV4Auth(Credentials(self.access_key[0], self.access_key[1], token), "bedrock", self.region)  # type: ignore[index]
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if fields["Signature"] != expected:
            return "The request signature we calculated does not match the signature you provided"
        if not date or not request.headers.get("x-amz-date", "").startswith(date):
            return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP"
        return None

    # --- errors --------------------------------------------------------------------------------------------

    def error(self, failure: Failure) -> Response:
        kind = failure.type or EXCEPTIONS.get(failure.status, "InternalServerException")
        headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
        headers["x-amzn-requestid"] = new_id("", 36)
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        return json_response({"message": failure.message or kind}, failure.status, headers)

    # --- Converse ------------------------------------------------------------------------------------------

    def _converse(self, request: Request, model: str, *, stream: bool) -> Response:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.error(Failure(400, "1 validation error detected: Value null at 'messages'"))
        if self.strict and (extra := sorted(set(body) - CONVERSE_FIELDS)):
            return self.error(Failure(400, f"Malformed input request: extraneous key [{extra[0]}] is not permitted"))
        reply = self.next_reply(model)
        return self.answer(
            reply,
            stream,
            lambda: converse_response(reply),
            lambda: converse_stream(reply),
            headers={"x-amzn-requestid": new_id("", 36)},
            stream_type="application/vnd.amazon.eventstream",
        )

    # --- InvokeModel (Anthropic's Messages body) --------------------------------------------------------------

    def _invoke(self, request: Request, model: str, *, stream: bool) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            return self.error(Failure(400, "Malformed input request: anthropic_version: bedrock-2023-05-31 required"))
        for name in ("model", "stream"):
            if name in body:
                return self.error(Failure(400, f"Malformed input request: extraneous key [{name}] is not permitted"))
        inner = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
        inner.update(model=model, stream=stream)
        headers = [*request.headers.raw, ("anthropic-version", "2023-06-01")]
        if body.get("anthropic_beta"):
            headers.append(("anthropic-beta", ",".join(body["anthropic_beta"])))
        content = json.dumps(inner).encode()
        answer = self.anthropic(Request("POST", "/v1/messages", Headers(headers), content, inner))
        if answer.status >= 400:
            error = json.loads(answer.body).get("error", {})
            status = answer.status
            return self.error(Failure(status, str(error.get("message", "")), retry_after=None))
        if not stream or answer.stream is None:
            return answer
        answer.headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": new_id("", 36)}
        answer.stream = _chunks(answer.stream)
        return answer


def _chunks(sse: Any) -> Iterator[bytes]:
    """Anthropic's SSE events, each in a `chunk` message as InvokeModel's stream carries them."""
    parser = SSEParser()
    for piece in sse:
        for event in parser.feed(piece):
            payload = json.dumps({"bytes": base64.b64encode(event.data.encode()).decode()}).encode()
            yield encode_message("chunk", payload)


def _usage(reply: Reply) -> JsonObject:
    if reply.wire_usage is not None:
        return dict(reply.wire_usage)
    counts = reply.usage
    fresh = counts.input - counts.cache_read - counts.cache_write  # Bedrock's inputTokens excludes the cache
    usage: JsonObject = {
        "inputTokens": fresh,
        "outputTokens": counts.output,
        "totalTokens": counts.input + counts.output,
    }
    if counts.cache_read or counts.cache_write:
        usage.update(cacheReadInputTokens=counts.cache_read, cacheWriteInputTokens=counts.cache_write)
    return usage


def _tool_id() -> str:
    return "tooluse_" + new_id("", 22)


def converse_response(reply: Reply) -> JsonObject:
    content: list[JsonObject] = []
    if reply.reasoning:
        reasoning = {"reasoningText": {"text": reply.reasoning, "signature": "fake-bedrock-signature"}}
        content.append({"reasoningContent": reasoning})
    if reply.text:
        content.append({"text": reply.text})
    for call in reply.tool_calls:
        content.append({"toolUse": {"toolUseId": call.id or _tool_id(), "name": call.name, "input": call.arguments}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": STOP_REASONS[reply.stop_reason],
        "usage": _usage(reply),
        "metrics": {"latencyMs": 120},
    }


def converse_stream(reply: Reply) -> Iterator[bytes]:
    def event(kind: str, payload: JsonObject) -> bytes:
        return encode_message(kind, json.dumps(payload).encode())

    yield event("messageStart", {"role": "assistant"})
    index = 0
    if reply.reasoning:
        for piece in split(reply.reasoning, reply.chunks):
            delta = {"reasoningContent": {"text": piece}}
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        signature = {"reasoningContent": {"signature": "fake-bedrock-signature"}}
        yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": signature})
        yield event("contentBlockStop", {"contentBlockIndex": index})
        index += 1
    if reply.text:
        for piece in split(reply.text, reply.chunks):
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
        yield event("contentBlockStop", {"contentBlockIndex": index})
        index += 1
    for call in reply.tool_calls:
        start = {"toolUse": {"toolUseId": call.id or _tool_id(), "name": call.name}}
        yield event("contentBlockStart", {"contentBlockIndex": index, "start": start})
        for piece in split(json.dumps(call.arguments), reply.chunks):
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
        yield event("contentBlockStop", {"contentBlockIndex": index})
        index += 1
    if reply.stream_error is not None:
        message = json.dumps({"message": reply.stream_error.message or "Model stream error"}).encode()
        yield encode_message("modelStreamErrorException", message, "exception")
        return
    yield event("messageStop", {"stopReason": STOP_REASONS[reply.stop_reason]})
    yield event("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 120}})
