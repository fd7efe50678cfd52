"""Tool definitions and tool_choice: Chat `tools` / `functions` (legacy) <-> IR tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from translation.custom_tools import custom_tool_names, describe, input_schema
from translation.ir import (
    FunctionTool,
    Grammar,
    HostedTool,
    Request,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolKind,
    TranslationError,
    Warnings,
    extras_for,
    own_extras,
)
from translation.openai_chat.wire import DIALECT, unknown_fields

# Chat's only hosted capability is web search on the search models, asked for with a top-level field.
WEB_SEARCH = "web_search"
WEB_SEARCH_FIELD = "web_search_options"
_TOOL_LEVEL = "tool"  # extras key for unknown fields next to `function` rather than inside it
# Upstream flag: the server takes Chat `custom` (freeform) tools as they are. Only OpenAI does; elsewhere a CUSTOM
# tool is a function taking one string `input` (translation/custom_tools.py, pitfall 16).
CUSTOM_TOOLS_FLAG = "custom_tools"


# -- decode --------------------------------------------------------------------------------------------------


def decode_tools(body: Mapping[str, Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = [_decode_tool(t) for t in body.get("tools") or ()]
    tools += [_decode_function(f) for f in body.get("functions") or ()]
    if body.get(WEB_SEARCH_FIELD) is not None:
        tools.append(HostedTool(WEB_SEARCH, DIALECT, {WEB_SEARCH_FIELD: body[WEB_SEARCH_FIELD]}))
    return tuple(tools)


def _decode_tool(tool: Mapping[str, Any]) -> Tool:
    if tool.get("type") == "custom":
        custom = tool["custom"]
        grammar = None
        fmt = custom.get("format") or {}
        if fmt.get("type") == "grammar":
            grammar = Grammar(fmt["grammar"]["syntax"], fmt["grammar"]["definition"])
        return FunctionTool(
            custom["name"],
            custom.get("description"),
            kind=ToolKind.CUSTOM,
            grammar=grammar,
            extras=own_extras(DIALECT, unknown_fields(tool, ("type", "custom"))),
        )
    if tool.get("type") != "function":
        return HostedTool(str(tool.get("type")), DIALECT, dict(tool))
    return _decode_function(tool["function"], unknown_fields(tool, ("type", "function")))


def _decode_function(function: Mapping[str, Any], rest: Mapping[str, Any] | None = None) -> FunctionTool:
    """Unknown keys inside `function` are kept as extras; unknown keys beside it under `_TOOL_LEVEL`."""
    unknown = unknown_fields(function, ("name", "description", "parameters", "strict"))
    if rest:
        unknown[_TOOL_LEVEL] = dict(rest)
    return FunctionTool(
        function["name"],
        function.get("description"),
        function.get("parameters"),
        strict=function.get("strict"),
        extras=own_extras(DIALECT, unknown),
    )


_ALLOWED_MODES = ("auto", "required")


def decode_tool_choice(body: Mapping[str, Any]) -> ToolChoice | None:
    choice = body.get("tool_choice", body.get("function_call"))  # function_call: the legacy spelling
    match choice:
        case None:
            return None
        case "auto" | "none" | "required":
            return ToolChoice(ToolChoiceMode(choice))
        case {"type": "allowed_tools", "allowed_tools": allowed} if allowed.get("mode", "auto") in _ALLOWED_MODES:
            names = tuple(_tool_name(t) for t in allowed.get("tools") or ())
            return ToolChoice(ToolChoiceMode(allowed.get("mode", "auto")), allowed=names)
        case {"type": "function" | "custom"}:
            return ToolChoice(ToolChoiceMode.NAMED, _tool_name(choice))
        case {"name": str(name)}:
            return ToolChoice(ToolChoiceMode.NAMED, name)
    raise TranslationError("tool_choice", f"unsupported tool_choice {choice!r}", "tool_choice")


def _tool_name(ref: Mapping[str, Any]) -> str:
    inner = ref.get(ref.get("type") or "function")
    return str(inner.get("name", ref.get("name", "")) if isinstance(inner, Mapping) else ref.get("name", ""))


# -- encode --------------------------------------------------------------------------------------------------


def encode_tools(
    tools: Sequence[Tool], w: Warnings, *, web_search: bool = False, custom_tools: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the `tools` list, top-level fields hosted tools turn into).

    CUSTOM tools are sent as Chat `custom` tools only when the upstream takes them (flag `custom_tools`: OpenAI);
    otherwise as a function with one string parameter `input` and the grammar in the description.

    Another provider's web search becomes `web_search_options` only when the upstream is known to take it
    (flag `web_search_options`: OpenAI's search models); other Chat servers would reject the field, so there
    the tool is left out with a warning and the model answers without searching (pitfall 44).
    """
    out: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        match tool:
            case FunctionTool(kind=ToolKind.CUSTOM) if custom_tools:
                out.append(_encode_custom(tool))
            case FunctionTool(kind=ToolKind.CUSTOM):
                out.append(_encode_wrapped_custom(tool, w, path))
            case FunctionTool():
                out.append(_encode_function(tool))
            case HostedTool(dialect=dialect, config=config) if dialect is DIALECT:
                if WEB_SEARCH_FIELD in config:
                    fields.update(config)
                else:
                    out.append(dict(config))
            case HostedTool(name=name) if name == WEB_SEARCH and web_search:
                # Same capability, but its settings are spelled differently per provider: keep the capability.
                fields[WEB_SEARCH_FIELD] = {}
                w.drop("hosted_tool:web_search", "web search settings are not translated to Chat", path)
            case HostedTool(name=name) if name == WEB_SEARCH:
                w.drop("hosted_tool:web_search", "this Chat upstream has no web search; the tool was left out", path)
            case HostedTool(name=name):
                # The model works without it; refusing would make the whole client unusable here (pitfall 17).
                w.drop(f"hosted_tool:{name}", f"Chat Completions has no hosted tool {name!r}; left out", path)
    return out, fields


def _encode_function(tool: FunctionTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    extras = dict(extras_for(tool.extras, DIALECT))
    beside = extras.pop(_TOOL_LEVEL, {})
    return {"type": "function", "function": {**function, **extras}, **beside}


def _encode_wrapped_custom(tool: FunctionTool, w: Warnings, path: str) -> dict[str, Any]:
    """A CUSTOM tool for a server without freeform tools; the decoders turn its calls back (custom_tools.py)."""
    if tool.grammar is not None:
        w.drop("custom_tool_grammar", "the grammar is described to the model, not enforced", path)
    function: dict[str, Any] = {"name": tool.name}
    description = describe(tool)
    if description is not None:
        function["description"] = description
    function["parameters"] = input_schema()
    return {"type": "function", "function": function}


def _encode_custom(tool: FunctionTool) -> dict[str, Any]:
    custom: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        custom["description"] = tool.description
    if tool.grammar is not None:
        grammar = {"syntax": tool.grammar.syntax, "definition": tool.grammar.definition}
        custom["format"] = {"type": "grammar", "grammar": grammar}
    return {"type": "custom", "custom": custom, **extras_for(tool.extras, DIALECT)}


def encode_tool_choice(choice: ToolChoice, request: Request, *, custom_tools: bool = False) -> str | dict[str, Any]:
    """A named custom tool is a `custom` reference only where `encode_tools` declared it as one."""
    custom_names = custom_tool_names(request) if custom_tools else frozenset()

    def ref(name: str) -> dict[str, Any]:
        kind = "custom" if name in custom_names else "function"
        return {"type": kind, kind: {"name": name}}

    if choice.mode is ToolChoiceMode.NAMED and choice.name is not None:
        return ref(choice.name)
    if choice.allowed is not None and choice.mode in (ToolChoiceMode.AUTO, ToolChoiceMode.REQUIRED):
        allowed = {"mode": choice.mode.value, "tools": [ref(name) for name in choice.allowed]}
        return {"type": "allowed_tools", "allowed_tools": allowed}
    return choice.mode.value
