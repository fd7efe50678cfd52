"""botocore as the judge of the Bedrock codec: its bedrock-runtime service model, request serializer, response and
event-stream parsers (what boto3's `bedrock-runtime` client runs), driven without any network."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel, Shape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters

SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")
CONVERSE = SERVICE.operation_model("Converse")
CONVERSE_STREAM = SERVICE.operation_model("ConverseStream")
INVOKE_STREAM = SERVICE.operation_model("InvokeModelWithResponseStream")


def to_params(value: Any, shape: Shape) -> Any:
    """A JSON wire value as boto3 parameters: base64 strings become bytes where the model has a blob."""
    if shape.type_name == "blob" and isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: to_params(v, members[k]) if k in members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [to_params(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: to_params(v, shape.value) for k, v in value.items()}
    return value


def check_request(body: dict[str, Any], model: str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0") -> None:
    """`body` is a valid Converse (and ConverseStream) request, and exactly what boto3 would send for the same
    parameters: botocore validates it against the service model and serializes it back to the same JSON."""
    for operation in (CONVERSE, CONVERSE_STREAM):
        params = {"modelId": model, **to_params(body, operation.input_shape)}
        try:
            validate_parameters(params, operation.input_shape)
        except ParamValidationError as exc:
            raise AssertionError(f"{operation.name}: {exc}") from exc
        request = create_serializer("rest-json").serialize_to_request(params, operation)
        assert json.loads(request["body"]) == body
        assert request["url_path"].endswith("/converse" if operation is CONVERSE else "/converse-stream")


def parse_response(body: dict[str, Any]) -> dict[str, Any]:
    """What boto3's `converse()` returns for this answer body (blobs as bytes)."""
    response = {"status_code": 200, "headers": {}, "body": json.dumps(body).encode(), "context": {}}
    parsed: dict[str, Any] = create_parser("rest-json").parse(response, CONVERSE.output_shape)
    parsed.pop("ResponseMetadata")
    return parsed


def parse_error(status: int, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The `Error` botocore makes of an error answer (botocore's headers are case-insensitive; lowered here)."""
    response = {
        "status_code": status,
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": json.dumps(body).encode(),
        "context": {},
    }
    parsed: dict[str, Any] = create_parser("rest-json").parse(response, CONVERSE.output_shape)
    return dict(parsed["Error"])


class _Raw:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    def stream(self) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        pass


def parse_stream(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events boto3's `converse_stream()["stream"]` yields for these body bytes; an exception message
    raises botocore's `EventStreamError`, as for a boto3 user."""
    context = {"operation_name": "ConverseStream"}
    response = {"status_code": 200, "headers": {}, "body": _Raw(chunks), "context": context}
    parsed = create_parser("rest-json").parse(response, CONVERSE_STREAM.output_shape)
    yield from parsed["stream"]


def parse_invoke_stream(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events boto3's `invoke_model_with_response_stream()["body"]` yields for these body bytes."""
    context = {"operation_name": "InvokeModelWithResponseStream"}
    response = {"status_code": 200, "headers": {}, "body": _Raw(chunks), "context": context}
    parsed = create_parser("rest-json").parse(response, INVOKE_STREAM.output_shape)
    yield from parsed["body"]


def operation(stream: bool) -> OperationModel:
    return CONVERSE_STREAM if stream else CONVERSE
