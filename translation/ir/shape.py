"""The JSON types a request body must have where a decoder reads it: one declarative shape per dialect, checked
before decoding, so a wrong type is a 400 naming the field (`messages[2].content[0].text: expected a string,
got an array`) rather than a TypeError deep in a decoder or an encoder, answered 500.

A shape describes only what the proxy reads; every other field passes unchecked (the upstream judges it).
JSON `null` is accepted wherever a field is optional, as the decoders treat it as absent; a required field
(`Obj(required=…)`) must be present and not null. The shapes are no stricter than the providers' own APIs:
they name the JSON type of a field, never its allowed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translation.ir.diagnostics import TranslationError

INVALID_TYPE = "invalid_type"  # the `feature` (OpenAI `code`) of every shape error


@dataclass(frozen=True, slots=True)
class Scalar:
    name: str  # "a string", for the message

    def matches(self, value: Any) -> bool:
        if self is STR:
            return isinstance(value, str)
        if self is BOOL:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return self is ANY
        if self is INT:
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if self is NUM:
            return isinstance(value, int | float)
        return True  # ANY


STR = Scalar("a string")
INT = Scalar("an integer")
NUM = Scalar("a number")
BOOL = Scalar("a boolean")
ANY = Scalar("any value")


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Spec
    name: str = "an array"


@dataclass(frozen=True, slots=True)
class Obj:
    """A JSON object. `fields`: the checked ones. `variants`: extra fields by the value of `tag` (e.g. a content
    block's `type`); `otherwise`: the variant for any other value (None: an unknown value is not checked
    further, as the upstream may know it)."""

    fields: Mapping[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    variants: Mapping[str, Obj] = field(default_factory=dict)
    tag: str = "type"
    otherwise: Obj | None = None
    name: str = "an object"


@dataclass(frozen=True, slots=True, init=False)
class Either:
    """One of several JSON types (a string or an array of blocks); the first whose type matches is checked."""

    options: tuple[Spec, ...]

    def __init__(self, *options: Spec) -> None:
        object.__setattr__(self, "options", options)

    @property
    def name(self) -> str:
        names = [option.name for option in self.options]
        return ", ".join(names[:-1]) + " or " + names[-1]


Spec = Scalar | ListOf | Obj | Either

OBJ = Obj()  # any object, its fields unchecked


def check(body: Mapping[str, Any], shape: Obj) -> None:
    """Raise `TranslationError` (400, `param` = the field's path) at the first value of the wrong type."""
    _check_object(body, shape, "")


def _check(value: Any, spec: Spec, path: str) -> None:
    if isinstance(spec, Either):
        for option in spec.options:
            if _kind_matches(value, option):
                _check(value, option, path)
                return
        raise _wrong(path, spec.name, value)
    if not _kind_matches(value, spec):
        raise _wrong(path, spec.name, value)
    if isinstance(spec, ListOf):
        for index, item in enumerate(value):
            _check(item, spec.item, f"{path}[{index}]")
    elif isinstance(spec, Obj):
        _check_object(value, spec, path)


def _check_object(value: Mapping[str, Any], shape: Obj, path: str) -> None:
    prefix = f"{path}." if path else ""
    for name in shape.required:
        if value.get(name) is None:
            raise TranslationError(INVALID_TYPE, f"{prefix}{name}: required", f"{prefix}{name}")
    for name, spec in shape.fields.items():
        item = value.get(name)
        if item is not None:
            _check(item, spec, f"{prefix}{name}")
    if shape.variants or shape.otherwise is not None:
        tag = value.get(shape.tag)
        variant = shape.variants.get(tag) if isinstance(tag, str) else None
        if variant is None:
            variant = shape.otherwise
        if variant is not None:
            _check_object(value, variant, path)


def _kind_matches(value: Any, spec: Spec) -> bool:
    if isinstance(spec, Scalar):
        return spec.matches(value)
    if isinstance(spec, ListOf):
        return isinstance(value, list)
    if isinstance(spec, Obj):
        return isinstance(value, Mapping)
    return any(_kind_matches(value, option) for option in spec.options)


_JSON_NAMES = ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number"), (list, "an array"))


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    return next((name for kind, name in _JSON_NAMES if isinstance(value, kind)), type(value).__name__)


def _wrong(path: str, expected: str, value: Any) -> TranslationError:
    where = path or "request body"
    return TranslationError(INVALID_TYPE, f"{where}: expected {expected}, got {json_type_name(value)}", path or None)
