"""Tool declarations and `tool_choice`, both directions.

Function tools are flat (`{type:function, name, parameters, strict}`); Codex's freeform `apply_patch` is a
`custom` tool with a lark grammar and stays custom here. `namespace` groups are flattened into their function
tools (each remembers its group in extras, so a Responses encoder can regroup them); every other built-in tool
is a `HostedTool` that only this dialect re-emits verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from translation.ir import (
    JSON,
    FunctionTool,
    Grammar,
    HostedTool,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    Warnings,
    extras_for,
    own_extras,
)
from translation.openai_responses.wire import DIALECT

# Built-in tool types under the neutral capability name other encoders map from (HostedTool docstring).
_HOSTED_NAMES = {
    "web_search": "web_search",
    "web_search_2025_08_26": "web_search",
    "web_search_preview": "web_search",
    "web_search_preview_2025_03_11": "web_search",
    "file_search": "file_search",
    "code_interpreter": "code_execution",
    "computer": "computer",
    "computer_use_preview": "computer",
    "mcp": "mcp",
}
# What a foreign hosted tool becomes here, by neutral name; anything else is refused.
_HOSTED_DECLARATIONS: dict[str, dict[str, JSON]] = {"web_search": {"type": "web_search"}}

_FUNCTION_FIELDS = ("type", "name", "description", "parameters", "strict")
_CUSTOM_FIELDS = ("type", "name", "description", "format")


def decode_tools(tools: JSON) -> tuple[Tool, ...]:
    decoded: list[Tool] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping):
            continue
        if tool.get("type") == "namespace":
            group = {k: v for k, v in tool.items() if k not in ("type", "tools")}
            decoded.extend(
                _decode_tool(inner, group) for inner in tool.get("tools") or () if isinstance(inner, Mapping)
            )
        else:
            decoded.append(_decode_tool(tool, None))
    return tuple(decoded)


def _decode_tool(tool: Mapping[str, JSON], namespace: dict[str, JSON] | None) -> Tool:
    kind = tool.get("type")
    group = {"namespace": namespace} if namespace is not None else {}
    if kind == "function":
        rest = {k: v for k, v in tool.items() if k not in _FUNCTION_FIELDS}
        return FunctionTool(
            name=str(tool.get("name", "")),
            description=tool.get("description"),
            parameters=tool.get("parameters"),
            strict=tool.get("strict"),
            extras=own_extras(DIALECT, {**rest, **group}),
        )
    if kind == "custom":
        rest = {k: v for k, v in tool.items() if k not in _CUSTOM_FIELDS}
        fmt = tool.get("format")
        grammar = None
        if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
            grammar = Grammar(str(fmt.get("syntax", "")), str(fmt.get("definition", "")))
        elif fmt is not None:
            rest["format"] = fmt  # `{type: text}`: no grammar, kept for a lossless round trip
        return FunctionTool(
            name=str(tool.get("name", "")),
            description=tool.get("description"),
            kind=ToolKind.CUSTOM,
            grammar=grammar,
            extras=own_extras(DIALECT, {**rest, **group}),
        )
    wire_type = str(kind)
    return HostedTool(_HOSTED_NAMES.get(wire_type, wire_type), DIALECT, dict(tool))


def encode_tools(tools: Sequence[Tool], w: Warnings) -> list[dict[str, JSON]]:
    """Wire tools; consecutive function tools of one namespace go back into their `namespace` group."""
    encoded: list[dict[str, JSON]] = []
    open_group: dict[str, JSON] | None = None
    for i, tool in enumerate(tools):
        wire = _encode_tool(tool, f"tools[{i}]", w)
        if wire is None:
            continue
        group = _namespace(tool)
        if group is None:
            encoded.append(wire)
            open_group = None
            continue
        if open_group is None or {k: v for k, v in open_group.items() if k not in ("type", "tools")} != group:
            open_group = {"type": "namespace", **group, "tools": []}
            encoded.append(open_group)
        open_group["tools"].append(wire)
    return encoded


def _namespace(tool: Tool) -> dict[str, JSON] | None:
    if isinstance(tool, FunctionTool):
        group = extras_for(tool.extras, DIALECT).get("namespace")
        if isinstance(group, Mapping):
            return dict(group)
    return None


def namespaces(tools: Sequence[Tool]) -> dict[str, str]:
    """Tool name -> namespace name, so calls to a namespaced tool can carry `namespace` back to the client."""
    return {t.name: str(g["name"]) for t in tools if (g := _namespace(t)) is not None and "name" in g}


def _encode_tool(tool: Tool, path: str, w: Warnings) -> dict[str, JSON] | None:
    if isinstance(tool, HostedTool):
        if tool.dialect is DIALECT:
            return dict(tool.config)
        declaration = _HOSTED_DECLARATIONS.get(tool.name)
        if declaration is None:
            # The model works without it; refusing would make the whole client unusable here (pitfall 17).
            w.drop(f"hosted_tool:{tool.name}", f"OpenAI Responses has no hosted tool {tool.name!r}; left out", path)
            return None
        return dict(declaration)
    own = {k: v for k, v in extras_for(tool.extras, DIALECT).items() if k != "namespace"}
    description = {"description": tool.description} if tool.description is not None else {}
    if tool.kind is ToolKind.CUSTOM:
        fmt: dict[str, Any] = {}
        if tool.grammar is not None:
            grammar = tool.grammar
            fmt = {"format": {"type": "grammar", "syntax": grammar.syntax, "definition": grammar.definition}}
        return {"type": "custom", "name": tool.name, **description, **fmt, **own}
    # Responses treats a missing `strict` as true, which rejects most schemas written for other providers.
    strict = tool.strict if tool.strict is not None else False
    return {
        "type": "function",
        "name": tool.name,
        **description,
        "parameters": tool.parameters,
        "strict": strict,
        **own,
    }


# -- tool_choice ---------------------------------------------------------------------------------------------

_MODES = {"auto": ToolChoiceMode.AUTO, "none": ToolChoiceMode.NONE, "required": ToolChoiceMode.REQUIRED}


def decode_tool_choice(choice: JSON) -> tuple[ToolChoice | None, dict[str, JSON]]:
    """(IR choice, request extras). Choices the IR cannot state exactly (a hosted tool, an allowed list naming
    hosted tools) become their nearest IR mode and are kept verbatim in extras."""
    if choice is None:
        return None, {}
    if isinstance(choice, str):
        mode = _MODES.get(choice)
        return (ToolChoice(mode), {}) if mode else (None, {"tool_choice": choice})
    if not isinstance(choice, Mapping):
        return None, {}
    kind = choice.get("type")
    if kind in ("function", "custom") and isinstance(choice.get("name"), str):
        return ToolChoice(ToolChoiceMode.NAMED, name=choice["name"]), {}
    if kind == "allowed_tools":
        entries = [t for t in choice.get("tools") or () if isinstance(t, Mapping)]
        names = tuple(str(t["name"]) for t in entries if isinstance(t.get("name"), str))
        mode = _MODES.get(str(choice.get("mode")), ToolChoiceMode.AUTO)
        exact = len(names) == len(entries) and all(t.get("type") in ("function", "custom") for t in entries)
        return ToolChoice(mode, allowed=names), {} if exact else {"tool_choice": dict(choice)}
    return ToolChoice(ToolChoiceMode.REQUIRED), {"tool_choice": dict(choice)}


def encode_tool_choice(choice: ToolChoice, tools: Sequence[Tool]) -> JSON:
    kinds = {t.name: t.kind for t in tools if isinstance(t, FunctionTool)}
    if choice.mode is ToolChoiceMode.NAMED and choice.name is not None:
        return {"type": _call_type(kinds.get(choice.name)), "name": choice.name}
    mode = "required" if choice.mode is ToolChoiceMode.REQUIRED else choice.mode.value
    if choice.allowed is not None and choice.mode in (ToolChoiceMode.AUTO, ToolChoiceMode.REQUIRED):
        allowed = [{"type": _call_type(kinds.get(name)), "name": name} for name in choice.allowed]
        return {"type": "allowed_tools", "mode": mode, "tools": allowed}
    return mode


def _call_type(kind: ToolKind | None) -> str:
    return "custom" if kind is ToolKind.CUSTOM else "function"
