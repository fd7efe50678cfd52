"""`toolConfig` <-> IR tools and tool choice.

Converse tools are `{"toolSpec": {name, description, inputSchema: {json: schema}, strict}}`, `{"systemTool":
{name}}` (a tool the provider runs) or `{"cachePoint": {...}}` (a cache breakpoint after the tool before it).
`toolChoice` is `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name": …}}`; there is no "none": a request that
forbids tools and has no tool blocks in its history is sent without tools, otherwise with `auto` and a warning
(Bedrock rejects toolUse/toolResult blocks without a toolConfig). CUSTOM tools go out as a function with one
string parameter `input` (translation/custom_tools.py) and their calls come back unwrapped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from translation.bedrock.wire import DIALECT, cache_from_wire, cache_to_wire, rest
from translation.custom_tools import describe, input_schema
from translation.ir import (
    JSON,
    FunctionTool,
    HostedTool,
    Request,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    ToolResultPart,
    Warnings,
    extras_for,
    own_extras,
)

# -- decoding ------------------------------------------------------------------------------------------------


def decode_tools(tool_config: Mapping[str, Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for entry in tool_config.get("tools") or []:
        if not isinstance(entry, Mapping):
            continue
        if "cachePoint" in entry and tools and isinstance(tools[-1], FunctionTool) and tools[-1].cache is None:
            tools[-1] = dataclasses.replace(tools[-1], cache=cache_from_wire(entry["cachePoint"]))
        elif isinstance(spec := entry.get("toolSpec"), Mapping):
            schema = (spec.get("inputSchema") or {}).get("json")
            tools.append(
                FunctionTool(
                    name=str(spec.get("name", "")),
                    description=spec.get("description"),
                    parameters=dict(schema) if isinstance(schema, Mapping) else None,
                    strict=spec.get("strict"),
                    extras=own_extras(DIALECT, rest(spec, ("name", "description", "inputSchema", "strict"))),
                )
            )
        elif isinstance(system_tool := entry.get("systemTool"), Mapping):
            tools.append(HostedTool(str(system_tool.get("name", "")), DIALECT, dict(entry)))
        else:
            tools.append(HostedTool(next(iter(entry), "tool"), DIALECT, dict(entry)))  # newer kinds, kept verbatim
    return tuple(tools)


def decode_tool_choice(tool_config: Mapping[str, Any]) -> ToolChoice | None:
    choice = tool_config.get("toolChoice")
    if not isinstance(choice, Mapping):
        return None
    if "auto" in choice:
        return ToolChoice(ToolChoiceMode.AUTO)
    if "any" in choice:
        return ToolChoice(ToolChoiceMode.REQUIRED)
    if isinstance(named := choice.get("tool"), Mapping):
        return ToolChoice(ToolChoiceMode.NAMED, str(named.get("name", "")))
    return None


# -- encoding ------------------------------------------------------------------------------------------------


def encode_tool_config(request: Request, w: Warnings) -> dict[str, Any] | None:
    """The `toolConfig`, or None when the request has no tools to declare."""
    choice = request.tool_choice
    mode = choice.mode if choice is not None else ToolChoiceMode.AUTO
    if mode is ToolChoiceMode.NONE and not _history_uses_tools(request):
        if request.tools:
            w.drop("tool_choice", "Bedrock has no tool_choice none; the tools are left out instead", "tool_choice")
        return None
    allowed = choice.allowed if choice is not None else None
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(request.tools):
        path = f"tools[{i}]"
        if isinstance(tool, HostedTool):
            if tool.dialect is DIALECT:
                tools.append(dict(tool.config))
            else:
                w.drop(f"hosted_tool:{tool.name}", f"Bedrock has no hosted tool {tool.name!r}; left out", path)
        elif allowed is None or tool.name in allowed:
            # Converse cannot restrict the choice to a subset: leaving the others out does the same.
            tools.append(_tool_spec(tool, w, path))
            if tool.cache is not None:
                tools.append(cache_to_wire(tool.cache))
    if not any("toolSpec" in t or "systemTool" in t for t in tools):
        if not _history_uses_tools(request):
            return None
        tools = _history_tools(request)
        w.drop("tool_config", "the history uses tools the request does not declare; declared for Bedrock", "tools")
    if request.parallel_tool_calls is False:
        w.drop("parallel_tool_calls", "Bedrock Converse cannot turn off parallel tool calls", "parallel_tool_calls")
    config: dict[str, Any] = {"tools": tools}
    if mode is ToolChoiceMode.NONE:
        w.drop("tool_choice", "Bedrock has no tool_choice none; sent as auto (the history uses tools)", "tool_choice")
    elif mode is ToolChoiceMode.REQUIRED:
        config["toolChoice"] = {"any": {}}
    elif mode is ToolChoiceMode.NAMED and choice is not None:
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice is not None:
        config["toolChoice"] = {"auto": {}}
    return config


def custom_tools(request: Request | None) -> frozenset[str]:
    """Names of the CUSTOM tools this codec exposed as `{"input": string}` functions."""
    if request is None:
        return frozenset()
    return frozenset(t.name for t in request.tools if isinstance(t, FunctionTool) and t.kind is ToolKind.CUSTOM)


def _tool_spec(tool: FunctionTool, w: Warnings, path: str) -> dict[str, Any]:
    description = tool.description
    schema: dict[str, JSON]
    if tool.kind is ToolKind.CUSTOM:
        schema, description = input_schema(), describe(tool)
        if tool.grammar is not None:
            w.drop("custom_tool_grammar", "the grammar is described to the model, not enforced", path)
    else:
        schema = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": tool.name}
    if description:
        spec["description"] = description
    spec["inputSchema"] = {"json": schema}
    if tool.strict is not None:
        spec["strict"] = tool.strict
    spec.update(extras_for(tool.extras, DIALECT))
    return {"toolSpec": spec}


def _history_tools(request: Request) -> list[dict[str, Any]]:
    """Declarations for the tools a history uses, when the request declares none (a client compacting a
    conversation sends its tool calls without tools): Bedrock rejects toolUse/toolResult blocks without a
    toolConfig. Each takes any object, as the calls already made did."""
    names: dict[str, None] = {}
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart) or (isinstance(part, ToolResultPart) and part.name):
                names[str(part.name)] = None
    return [
        {"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}} for name in names or {"tool": None}
    ]


def _history_uses_tools(request: Request) -> bool:
    return any(isinstance(p, (ToolCallPart, ToolResultPart)) for m in request.messages for p in m.parts)
