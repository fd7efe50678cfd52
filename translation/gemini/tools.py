"""Gemini `tools` and `toolConfig.functionCallingConfig` <-> IR tools and tool choice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from translation.codec import TargetOptions
from translation.custom_tools import describe, input_schema
from translation.gemini.schema import from_gemini_schema, to_gemini_schema
from translation.gemini.wire import GEMINI, leftovers
from translation.ir import (
    FunctionTool,
    HostedTool,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    Warnings,
    extras_for,
    own_extras,
)

# Gemini hosted tool key <-> neutral capability name (HostedTool.name).
_HOSTED_NAMES = {
    "googleSearch": "web_search",
    "googleSearchRetrieval": "web_search",
    "codeExecution": "code_execution",
    "urlContext": "web_fetch",
    "fileSearch": "file_search",
    "computerUse": "computer",
    "mcpServers": "mcp",
}
_HOSTED_FOR_NAME = {"web_search": "googleSearch", "code_execution": "codeExecution", "web_fetch": "urlContext"}
_DECLARATION_KEYS = frozenset({"name", "description", "parameters", "parametersJsonSchema"})

SCHEMA_SUBSET_FLAG = "gemini_schema_subset"


# -- decoding ------------------------------------------------------------------------------------------------


def decode_tools(tools: Sequence[Mapping[str, Any]]) -> tuple[Tool, ...]:
    out: list[Tool] = []
    for tool in tools:
        for key, value in tool.items():
            if key == "functionDeclarations":
                out.extend(_decode_declaration(d) for d in value or ())  # null: none
            else:
                out.append(HostedTool(_HOSTED_NAMES.get(key, key), GEMINI, {key: value}))
    return tuple(out)


def decode_schema(schema: Any, wire_key: str, extras: dict[str, Any]) -> dict[str, Any] | None:
    """A tool or output schema as JSON Schema; the wire original goes to `extras` when it had to be rewritten
    (a Gemini `Schema`, or the Gemini CLI's upper-case types in a JSON Schema) so Gemini gets it back verbatim."""
    if not isinstance(schema, Mapping):
        return None
    converted: dict[str, Any] = from_gemini_schema(schema)
    if converted != schema:
        extras[wire_key] = schema
    return converted


def _decode_declaration(declaration: Mapping[str, Any]) -> FunctionTool:
    extras = leftovers(declaration, _DECLARATION_KEYS)
    if "parametersJsonSchema" in declaration:
        parameters = decode_schema(declaration["parametersJsonSchema"], "parametersJsonSchema", extras)
    else:
        parameters = decode_schema(declaration.get("parameters"), "parameters", extras)
        if parameters is not None:
            extras.setdefault("parameters", declaration["parameters"])  # keep which field it came in
    return FunctionTool(
        name=str(declaration.get("name", "")),
        description=declaration.get("description"),
        parameters=parameters,
        extras=own_extras(GEMINI, extras),
    )


def decode_tool_config(config: Mapping[str, Any]) -> tuple[ToolChoice | None, dict[str, Any]]:
    """(tool choice, the leftovers of toolConfig for extras)."""
    rest = leftovers(config, {"functionCallingConfig"})
    calling = config.get("functionCallingConfig")
    if not isinstance(calling, Mapping) or "mode" not in calling:
        if calling is not None:
            rest["functionCallingConfig"] = calling
        return None, rest
    if extra := leftovers(calling, {"mode", "allowedFunctionNames"}):
        rest["functionCallingConfig"] = extra
    names = calling.get("allowedFunctionNames")
    allowed = tuple(names) if isinstance(names, list) else None
    mode = str(calling["mode"]).upper()
    if mode == "NONE":
        return ToolChoice(ToolChoiceMode.NONE), rest
    if mode == "ANY":
        if allowed is not None and len(allowed) == 1:
            return ToolChoice(ToolChoiceMode.NAMED, name=allowed[0]), rest
        return ToolChoice(ToolChoiceMode.REQUIRED, allowed=allowed), rest
    if mode == "VALIDATED":
        rest["validated"] = True  # AUTO constrained to the schemas: the closest IR mode is AUTO
    return ToolChoice(ToolChoiceMode.AUTO, allowed=allowed), rest


# -- encoding ------------------------------------------------------------------------------------------------


def encode_tools(tools: Sequence[Tool], target: TargetOptions, w: Warnings) -> list[dict[str, Any]]:
    """One Tool object holding every function declaration, then one per hosted tool."""
    declarations: list[dict[str, Any]] = []
    hosted: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if isinstance(tool, FunctionTool):
            declarations.append(_encode_declaration(tool, target, w, path))
        elif tool.dialect is GEMINI:
            hosted.append(dict(tool.config))
        elif tool.name in _HOSTED_FOR_NAME:
            hosted.append({_HOSTED_FOR_NAME[tool.name]: {}})
            if set(tool.config) - {"type", "name"}:  # domains, max uses, location …
                w.drop(f"hosted_tool:{tool.name}", f"Gemini takes no settings for {tool.name}", path)
        else:
            # The model works without it; refusing would make the whole client unusable here (pitfall 17).
            w.drop(f"hosted_tool:{tool.name}", f"Gemini has no hosted tool {tool.name!r}; left out", path)
    return ([{"functionDeclarations": declarations}] if declarations else []) + hosted


def _encode_declaration(tool: FunctionTool, target: TargetOptions, w: Warnings, path: str) -> dict[str, Any]:
    own = dict(extras_for(tool.extras, GEMINI))
    description = tool.description
    parameters = tool.parameters
    if tool.kind is ToolKind.CUSTOM:
        # Gemini has no freeform tools: one string parameter `input`, the grammar in the description.
        w.drop("custom_tool", f"{tool.name} is exposed as a function taking one string `input`", path)
        parameters = input_schema()
        description = describe(tool)
    if tool.strict:
        w.drop("tool_strict", "Gemini has no strict flag on function declarations", path)
    out: dict[str, Any] = {"name": tool.name}
    if description:
        out["description"] = description
    has_original = "parameters" in own or "parametersJsonSchema" in own  # a Gemini client's, restored below
    if parameters is not None and not has_original:
        if target.flags.get(SCHEMA_SUBSET_FLAG):
            out["parameters"] = reduce_schema(parameters, w, path)
        else:
            out["parametersJsonSchema"] = parameters
    out.update(own)
    return out


def reduce_schema(schema: Mapping[str, Any], w: Warnings, path: str) -> dict[str, Any]:
    reduced, dropped = to_gemini_schema(schema)
    if dropped:
        w.drop("json_schema_keywords", f"Gemini's schema subset has no {', '.join(dropped)}", path)
    return reduced


def encode_tool_choice(choice: ToolChoice, validated: bool) -> dict[str, Any]:
    """`functionCallingConfig`. AUTO restricted to a subset is VALIDATED (calls limited to the allowed names,
    text still possible); `validated` restores a Gemini client's own VALIDATED mode."""
    names = choice.allowed
    match choice.mode:
        case ToolChoiceMode.NONE:
            mode = "NONE"
        case ToolChoiceMode.REQUIRED:
            mode = "ANY"
        case ToolChoiceMode.NAMED:
            mode, names = "ANY", (choice.name or "",)
        case ToolChoiceMode.AUTO:
            mode = "VALIDATED" if validated or names is not None else "AUTO"
    config: dict[str, Any] = {"mode": mode}
    if names is not None:
        config["allowedFunctionNames"] = list(names)
    return config
