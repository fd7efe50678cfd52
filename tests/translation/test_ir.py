from __future__ import annotations

import pytest

from translation.dialect import Dialect
from translation.errors import ErrorKind
from translation.ir import (
    Effort,
    Message,
    Request,
    Role,
    TextPart,
    ToolCallPart,
    ToolKind,
    TranslationError,
    Warnings,
    budget_to_effort,
    effort_to_budget,
    extras_for,
    own_extras,
)


def test_tool_call_from_raw_parses_objects_only() -> None:
    assert ToolCallPart.from_raw("c", "f", '{"a": 1}').arguments == {"a": 1}
    assert ToolCallPart.from_raw("c", "f", "").arguments == {}
    assert ToolCallPart.from_raw("c", "f", "[1]").arguments is None
    assert ToolCallPart.from_raw("c", "f", '{"a":').arguments is None
    assert ToolCallPart.from_raw("c", "f", "{}", kind=ToolKind.CUSTOM).arguments is None


def test_tool_call_from_object_writes_compact_json() -> None:
    call = ToolCallPart.from_object("c", "f", {"q": "é", "n": [1, 2]})
    assert call.raw_arguments == '{"q":"é","n":[1,2]}'


def test_leading_instructions_gather_system_field_and_leading_system_messages() -> None:
    request = Request(
        model="m",
        system=(TextPart("a"),),
        messages=(
            Message(Role.DEVELOPER, (TextPart("b"),)),
            Message(Role.SYSTEM, (TextPart("c"),)),
            Message(Role.USER, (TextPart("hi"),)),
            Message(Role.SYSTEM, (TextPart("later"),)),
        ),
    )
    instructions, rest = request.leading_instructions()
    assert [p.text for p in instructions] == ["a", "b", "c"]
    assert [m.role for m in rest] == [Role.USER, Role.SYSTEM]


@pytest.mark.parametrize("effort", list(Effort))
def test_effort_survives_the_budget_bridge(effort: Effort) -> None:
    assert budget_to_effort(effort_to_budget(effort)) is effort


def test_budget_to_effort_rounds_up() -> None:
    assert budget_to_effort(5000) is Effort.MEDIUM
    assert budget_to_effort(10**6) is Effort.MAX


def test_extras_are_only_visible_to_their_own_dialect() -> None:
    extras = own_extras(Dialect.ANTHROPIC, {"container": "x"})
    assert extras_for(extras, Dialect.ANTHROPIC) == {"container": "x"}
    assert extras_for(extras, Dialect.GEMINI) == {}
    assert own_extras(Dialect.GEMINI, {}) == {}


def test_warnings_are_collected_into_a_result() -> None:
    warnings = Warnings()
    warnings.drop("top_k", "Responses has no top_k", "top_k")
    result = warnings.result({"model": "m"})
    assert result.value == {"model": "m"}
    assert [(w.feature, w.path) for w in result.warnings] == [("top_k", "top_k")]


def test_translation_error_becomes_a_400_naming_the_feature() -> None:
    error = TranslationError("n", "cannot fan out n=3 to Anthropic", param="n").to_api_error()
    assert (error.kind, error.http_status, error.param, error.code) == (ErrorKind.INVALID_REQUEST, 400, "n", "n")
