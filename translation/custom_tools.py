"""Custom (freeform) tools on a dialect without them (pitfall 16), the same way for every codec.

The encoder exposes the tool as a function taking one string parameter `input` (`input_schema()`), with the
grammar, which cannot be enforced, appended to the description (`describe`); history calls go out
as `{"input": raw}` (`wrap`). The same folder's decoder looks the names up with `custom_tool_names(request)` and
turns calls to them back into CUSTOM calls whose raw text is the `input` value (`unwrap_arguments`).
"""

from __future__ import annotations

import json
from typing import Any

from translation.ir import JSON, FunctionTool, Request, ToolKind

INPUT = "input"


def input_schema() -> dict[str, JSON]:
    """The parameters of the function standing in for a CUSTOM tool (a new object each time)."""
    return {"type": "object", "properties": {INPUT: {"type": "string"}}, "required": [INPUT]}


def describe(tool: FunctionTool) -> str | None:
    """The tool's description with its grammar (if any) appended, for the function that stands in for it."""
    description = tool.description
    if tool.grammar is None:
        return description
    grammar = f"The input must match this {tool.grammar.syntax} grammar:\n{tool.grammar.definition}"
    return f"{description}\n\n{grammar}" if description else grammar


def custom_tool_names(request: Request | None) -> frozenset[str]:
    """The CUSTOM tools of a request, which an encoder without freeform tools exposed as `{input: string}`."""
    if request is None:
        return frozenset()
    return frozenset(t.name for t in request.tools if isinstance(t, FunctionTool) and t.kind is ToolKind.CUSTOM)


def wrap(raw: str) -> dict[str, Any]:
    """The arguments object of a CUSTOM call sent as a function call."""
    return {INPUT: raw}


def wrap_json(raw: str) -> str:
    """`wrap` as the JSON text string dialects carry."""
    return json.dumps(wrap(raw), ensure_ascii=False, separators=(",", ":"))


def unwrap_arguments(raw: str, kind: ToolKind = ToolKind.CUSTOM) -> str:
    """The argument text of a call wrapped as `{"input": …}`: the freeform input of a CUSTOM call, the JSON of
    the wrapped value otherwise. Text that is not the expected wrapper is returned as it is."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(value, dict) or INPUT not in value:
        return raw
    inner = value[INPUT]
    if kind is ToolKind.CUSTOM and isinstance(inner, str):
        return inner
    return json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
