"""Everything the translation emits to a Bedrock client validates strictly against botocore's bedrock-runtime service
model, for the same sources the other dialects are held to (tests/translation/test_sdk_strict.py: every response and
stream vector, plus hand-made streams with reasoning, parallel calls, cache and reasoning tokens, a failure midway).

botocore's `ParamValidator` checks a value against a shape: required members, JSON types, unions holding exactly one
member, and no member the model does not know. It is written for requests but works on any structure, so the
Converse output shape (for `encode_response`) and each event shape of `ConverseStreamOutput` (for `StreamEncoder`)
are checked with it, blobs given as bytes as boto3 would hold them; enum values are checked here, which it leaves
out. Each stream is also framed and read back by boto3's own event-stream parser.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EventStreamError as BotocoreEventStreamError
from botocore.exceptions import ParamValidationError
from botocore.model import Shape
from botocore.validate import validate_parameters

from tests.translation.bedrocklib import CONVERSE, CONVERSE_STREAM, parse_stream, to_params
from tests.translation.test_sdk_strict import (
    CREATED,
    RESPONSES_SOURCES,
    STREAM_SOURCES,
    Source,
)
from translation.bedrock import CODEC as BEDROCK
from translation.bedrock.eventstream import encode_wire_event, is_exception
from translation.codec import ClientContext, WireEvent

STREAM_MEMBERS = CONVERSE_STREAM.output_shape.members["stream"].members


def _enums(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Values outside their shape's enum (ParamValidator does not check them)."""
    if shape.type_name == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} not in {shape.enum}"]
    if shape.type_name == "structure" and isinstance(value, dict):
        return [e for k, v in value.items() if k in shape.members for e in _enums(v, shape.members[k], f"{path}.{k}")]
    if shape.type_name == "list" and isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _enums(v, shape.member, f"{path}[{i}]")]
    return []


def validate(value: Any, shape: Shape) -> None:
    params = to_params(value, shape)
    try:
        validate_parameters(params, shape)
    except ParamValidationError as exc:
        raise AssertionError(str(exc)) from exc
    assert _enums(value, shape) == []


def validate_stream(wire: list[WireEvent]) -> None:
    names = [w.event for w in wire]
    assert names[0] == "messageStart" or (len(names) == 1 and is_exception(names[0] or "")), names
    ended_well = names[-2:] == ["messageStop", "metadata"]
    assert ended_well or is_exception(names[-1] or ""), names
    assert all(name not in ("messageStop", "metadata") and not is_exception(name or "") for name in names[:-2])
    for event in wire:
        assert event.event in STREAM_MEMBERS, event.event
        assert isinstance(event.data, dict)
        validate(event.data, STREAM_MEMBERS[event.event])
    framed = [encode_wire_event(w) for w in wire]
    if ended_well:
        assert len(list(parse_stream(framed))) == len(wire)
    else:
        with pytest.raises(BotocoreEventStreamError):
            list(parse_stream(framed))


def encode_stream(source: Source) -> list[WireEvent]:
    encoder = BEDROCK.stream.StreamEncoder(ClientContext(source.client_request, CREATED))
    return [w for event in source.events for w in encoder.feed(event)] + encoder.finish()


@pytest.mark.parametrize("source", RESPONSES_SOURCES, ids=lambda s: s.name)
def test_encoded_response_validates_strictly(source: Source) -> None:
    assert source.response is not None
    body = BEDROCK.response.encode_response(source.response, ClientContext(source.client_request, CREATED)).value
    validate(body, CONVERSE.output_shape)


@pytest.mark.parametrize("source", STREAM_SOURCES, ids=lambda s: s.name)
def test_encoded_stream_validates_strictly(source: Source) -> None:
    validate_stream(encode_stream(source))


# -- the validators reject what they should ---------------------------------------------------------------------

GOOD = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    "metrics": {"latencyMs": 0},
}


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    change(body)
    return body


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(id="resp_1"),  # a field Bedrock does not have
        lambda b: b.pop("metrics"),  # a required one missing
        lambda b: b["usage"].update(inputTokens="1"),  # the wrong type
        lambda b: b.update(stopReason="stop"),  # not in the enum
        lambda b: b["output"]["message"]["content"].append({"text": "a", "image": {}}),  # two union members
    ],
    ids=["unknown", "missing", "type", "enum", "union"],
)
def test_the_validator_rejects_broken_bodies(change: Callable[[dict[str, Any]], None]) -> None:
    validate(GOOD, CONVERSE.output_shape)
    with pytest.raises(AssertionError):
        validate(_broken(change), CONVERSE.output_shape)


def test_the_stream_validator_rejects_a_stream_without_its_end() -> None:
    wire = [WireEvent({"role": "assistant"}, "messageStart"), WireEvent({"contentBlockIndex": 0}, "contentBlockStop")]
    with pytest.raises(AssertionError):
        validate_stream(wire)
    with pytest.raises(AssertionError):
        validate_stream([*wire, WireEvent({"stopReason": "end_turn", "x": 1}, "messageStop"), wire[1]])
