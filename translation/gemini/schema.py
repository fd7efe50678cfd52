"""JSON Schema <-> Gemini `Schema` (the OpenAPI 3.0 subset of `parameters` and `responseSchema`).

`to_gemini_schema` is pitfall 13: Gemini rejects `$schema`, `additionalProperties`, `exclusiveMinimum`,
`propertyNames`, `const`, type arrays, `allOf`, `$ref`, `default`, most string formats, … so the encoder reduces a
JSON Schema to the subset and reports every keyword it had to drop. `from_gemini_schema` goes the other way for
the decoder (upper-case types, `nullable`), so other dialects receive plain JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keywords of Gemini's Schema type (google.genai types.Schema) kept as they are.
_KEPT = frozenset(
    {
        "title",
        "description",
        "nullable",
        "enum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "propertyOrdering",
    }
)
_STRING_FORMATS = frozenset({"enum", "date-time"})
_MAX_REF_DEPTH = 8  # recursive $refs are cut here: Gemini has no recursion in declarations


class _Reducer:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.definitions: dict[str, Any] = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.dropped: list[str] = []

    def drop(self, keyword: str) -> None:
        if keyword not in self.dropped:
            self.dropped.append(keyword)

    def reduce(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, Mapping):
            return {}
        if "$ref" in schema:
            depth += 1  # each reference followed counts, so a self-referencing definition ends
            schema = self._resolve(schema, depth)
        if "allOf" in schema:
            schema = self._flatten_all_of(schema)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _KEPT:
                out[key] = value
            elif key == "type":
                self._set_type(out, value)
            elif key == "const":
                out["enum"] = [value]
                if isinstance(value, str):
                    out.setdefault("type", "STRING")  # Gemini enums are string-typed
            elif key == "format":
                self._set_format(out, value, schema.get("type"))
            elif key == "properties" and isinstance(value, Mapping):
                out["properties"] = {name: self.reduce(sub, depth) for name, sub in value.items()}
            elif key == "items" and isinstance(value, Mapping):
                out["items"] = self.reduce(value, depth)
            elif key in ("anyOf", "oneOf") and isinstance(value, list):
                self._set_any_of(out, value, depth)
            elif key not in ("required", "$defs", "definitions"):  # definitions are inlined where referenced
                self.drop(key)
        required = schema.get("required")
        if isinstance(required, list):
            # Gemini rejects required names that are not declared properties.
            declared = out.get("properties", {})
            out["required"] = [name for name in dict.fromkeys(required) if name in declared]
        return out

    def _resolve(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        target = self.definitions.get(ref.rsplit("/", 1)[-1])
        if target is None or depth > _MAX_REF_DEPTH:
            self.drop("$ref")
            return {"type": "object"}
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return self._resolve(merged, depth + 1) if "$ref" in target else merged

    def _flatten_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = self._resolve(sub, 0) if isinstance(sub, Mapping) else {}
            for key, value in sub.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _set_type(self, out: dict[str, Any], value: Any) -> None:
        types = value if isinstance(value, list) else [value]
        concrete = [t for t in types if t != "null"]
        if len(concrete) < len(types):
            out["nullable"] = True
        if len(concrete) == 1:
            out["type"] = str(concrete[0]).upper()
        elif concrete:
            out["anyOf"] = [{"type": str(t).upper()} for t in concrete]

    def _set_format(self, out: dict[str, Any], value: Any, type_: Any) -> None:
        if type_ == "string" and value not in _STRING_FORMATS:
            self.drop("format")
        else:
            out["format"] = value

    def _set_any_of(self, out: dict[str, Any], options: list[Any], depth: int) -> None:
        # anyOf [X, {type: null}] is X with nullable: what the Google SDK itself does (_transformers.py).
        concrete = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
        if len(concrete) < len(options):
            out["nullable"] = True
        if len(concrete) == 1:
            out.update(self.reduce(concrete[0], depth))
        else:
            out["anyOf"] = [self.reduce(o, depth) for o in concrete]


def to_gemini_schema(schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the schema reduced to Gemini's subset, the keywords that were dropped)."""
    reducer = _Reducer(schema)
    reduced = reducer.reduce(schema)
    return reduced, reducer.dropped


def from_gemini_schema(schema: Any) -> Any:
    """A Gemini Schema (or a JSON Schema written with Gemini's upper-case type names) as plain JSON Schema."""
    if isinstance(schema, list):
        return [from_gemini_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, Mapping):
            out["properties"] = {name: from_gemini_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "$defs", "defs", "not"):
            out[key] = (
                {n: from_gemini_schema(s) for n, s in value.items()}
                if isinstance(value, Mapping) and key in ("$defs", "defs")
                else from_gemini_schema(value)
            )
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
