"""Tool declarations and tool_choice, plus the `{"input": …}` wrapping this codec uses for tools Anthropic
cannot declare as they are (CUSTOM tools, schemas whose top level is not an object)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translation.anthropic.wire import DIALECT, cache_from_wire, cache_to_wire, rest
from translation.custom_tools import INPUT, describe, input_schema
from translation.ir import (
    JSON,
    FunctionTool,
    HostedTool,
    Request,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    Warnings,
    extras_for,
    own_extras,
)

_CHOICE_FROM_WIRE = {
    "auto": ToolChoiceMode.AUTO,
    "none": ToolChoiceMode.NONE,
    "any": ToolChoiceMode.REQUIRED,
    "tool": ToolChoiceMode.NAMED,
}
_CHOICE_TO_WIRE = {mode: wire for wire, mode in _CHOICE_FROM_WIRE.items()}

# Server tool type prefixes (before the date suffix) with a neutral capability name (ir.HostedTool).
_NEUTRAL_HOSTED = {
    "web_search": "web_search",
    "web_fetch": "web_fetch",
    "code_execution": "code_execution",
    "computer": "computer",
    "computer_toolset": "computer",
}
_WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}

# -- decoding ------------------------------------------------------------------------------------------------


def decode_tool(tool: Mapping[str, Any]) -> Tool:
    """A client tool (no `type`, or `custom`) or a versioned server tool such as `web_search_20250305`."""
    tool_type = tool.get("type")
    if tool_type not in (None, "custom"):
        prefix = str(tool_type).rstrip("0123456789").rstrip("_")
        return HostedTool(_NEUTRAL_HOSTED.get(prefix, str(tool_type)), DIALECT, dict(tool))
    schema = tool.get("input_schema")
    return FunctionTool(
        name=str(tool.get("name", "")),
        description=tool.get("description"),
        parameters=dict(schema) if isinstance(schema, Mapping) else None,
        strict=tool.get("strict"),
        cache=cache_from_wire(tool.get("cache_control")),
        extras=own_extras(DIALECT, rest(tool, ("name", "description", "input_schema", "strict", "cache_control"))),
    )


def decode_tool_choice(choice: Any) -> tuple[ToolChoice | None, bool | None]:
    """(the choice, `parallel_tool_calls`): Anthropic says "disable parallel use" on the choice itself."""
    if not isinstance(choice, Mapping) or choice.get("type") not in _CHOICE_FROM_WIRE:
        return None, None
    mode = _CHOICE_FROM_WIRE[str(choice["type"])]
    parallel = None
    if "disable_parallel_tool_use" in choice:
        parallel = not choice["disable_parallel_tool_use"]
    return ToolChoice(mode, choice.get("name") if mode is ToolChoiceMode.NAMED else None), parallel


# -- encoding ------------------------------------------------------------------------------------------------


def encode_tools(request: Request, w: Warnings) -> list[dict[str, Any]]:
    allowed = request.tool_choice.allowed if request.tool_choice else None
    out = []
    for i, tool in enumerate(request.tools):
        path = f"tools[{i}]"
        if isinstance(tool, HostedTool):
            hosted = _hosted_tool(tool, w, path)
            if hosted is not None:
                out.append(hosted)
        elif allowed is None or tool.name in allowed:
            # Anthropic cannot restrict the choice to a subset: leaving the others out does the same.
            out.append(_function_tool(tool, w, path))
    return out


def encode_tool_choice(request: Request) -> dict[str, Any] | None:
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    if not request.tools or (choice is None and parallel is not False):
        return None
    mode = choice.mode if choice else ToolChoiceMode.AUTO
    out: dict[str, Any] = {"type": _CHOICE_TO_WIRE[mode]}
    if mode is ToolChoiceMode.NAMED and choice is not None:
        out["name"] = choice.name
    if parallel is not None and mode is not ToolChoiceMode.NONE:
        out["disable_parallel_tool_use"] = not parallel
    return out


def repair_schema(schema: dict[str, JSON] | None) -> tuple[dict[str, JSON], bool]:
    """(an `input_schema` Anthropic accepts, whether it had to be wrapped under `input`).

    Anthropic wants an object at the top level, with no anyOf/oneOf/allOf there and no duplicate `required`
    entries (pitfall 15). Anything else is wrapped as the single property `input`; calls come back unwrapped.
    """
    if schema is None:
        return {"type": "object", "properties": {}}, False
    if schema.get("type", "object") != "object" or any(k in schema for k in ("anyOf", "oneOf", "allOf")):
        return {"type": "object", "properties": {INPUT: schema}, "required": [INPUT]}, True
    repaired = {"type": "object", **schema}
    required = schema.get("required")
    if isinstance(required, list) and all(isinstance(name, str) for name in required):
        repaired["required"] = list(dict.fromkeys(required))  # anything else is the upstream's to refuse
    return repaired, False


def wrapped_tools(request: Request) -> dict[str, ToolKind]:
    """Tools whose calls come back from Anthropic as `{"input": …}` and must be unwrapped, by name: CUSTOM
    tools (translation/custom_tools.py) and functions whose schema had to be wrapped."""
    return {
        tool.name: tool.kind
        for tool in request.tools
        if isinstance(tool, FunctionTool) and (tool.kind is ToolKind.CUSTOM or repair_schema(tool.parameters)[1])
    }


def _function_tool(tool: FunctionTool, w: Warnings, path: str) -> dict[str, Any]:
    description = tool.description
    if tool.kind is ToolKind.CUSTOM:
        schema: dict[str, JSON] = input_schema()
        description = describe(tool)
        if tool.grammar is not None:
            w.drop("custom_tool_grammar", "the grammar is described to the model, not enforced", path)
    else:
        schema, wrapped = repair_schema(tool.parameters)
        if wrapped:
            w.drop("tool_schema", "a top level that is not a plain object is wrapped as property 'input'", path)
    out: dict[str, Any] = {"name": tool.name}
    if description:
        out["description"] = description
    out["input_schema"] = schema
    if tool.strict is not None:
        out["strict"] = tool.strict
    out.update(extras_for(tool.extras, DIALECT))
    if tool.cache is not None:
        out["cache_control"] = cache_to_wire(tool.cache)
    return out


def _hosted_tool(tool: HostedTool, w: Warnings, path: str) -> dict[str, Any] | None:
    if tool.dialect is DIALECT:
        return dict(tool.config)
    if tool.name == "web_search":
        if len(tool.config) > 1:
            w.drop("hosted_tool_options:web_search", f"{tool.dialect.value} search options are not mapped", path)
        return dict(_WEB_SEARCH)
    # The model works without it; refusing would make the whole client unusable here (pitfall 17).
    w.drop(f"hosted_tool:{tool.name}", f"Anthropic has no hosted tool {tool.name!r}; left out", path)
    return None
