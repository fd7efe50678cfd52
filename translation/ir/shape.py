"""The JSON types a request body must have where a decoder reads it: one declarative shape per dialect, checked
before decoding, so a wrong type is a 400 naming the field (`messages[2].content[0].text: expected a string,
got an array`) rather than a TypeError deep in a decoder or an encoder, answered 500.

A shape describes only what the proxy reads; every other field passes unchecked (the upstream judges it).
JSON `null` is accepted wherever a field is optional, as the decoders treat it as absent; a required field
(`Obj(required=…)`) must be present and not null. The shapes are no stricter than the providers' own APIs:
they name the JSON type of a field, never its allowed values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from translation.ir.diagnostics import TranslationError

INVALID_TYPE = "invalid_type"  # the `feature` (OpenAI `code`) of every shape error


@dataclass(frozen=True, slots=True)
class Scalar:
    name: str  # "a string", for the message

    def matches(self, value: Any) -> bool:
        # Exact types: json.loads makes nothing else, and a bool is not a number in JSON.
        kind = type(value)
        if self is STR:
            return kind is str
        if self is INT:
            return kind is int or (kind is float and value.is_integer())
        if self is NUM:
            return kind is int or kind is float
        if self is BOOL:
            return kind is bool
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


T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    def __call__(self, body: Mapping[str, Any], *, model: str | None = None) -> T_co: ...


def validated(shape: Obj) -> Callable[[Decoder[T_co]], Decoder[T_co]]:
    """A dialect's `decode_request`, checked against its `shape` first. A body nested deeper than the decoder
    can follow (a JSON Schema hundreds of levels deep: its conversion recurses) is a 400 as well."""

    def wrap(decode: Decoder[T_co]) -> Decoder[T_co]:
        @functools.wraps(decode)
        def decode_checked(body: Mapping[str, Any], *, model: str | None = None) -> T_co:
            check(body, shape)
            try:
                return decode(body, model=model)
            except RecursionError as exc:
                raise TranslationError(INVALID_TYPE, "request body is nested too deeply") from exc

        return decode_checked

    return wrap


# Where a value is, as (parent, key) links: built as the walk goes, spelt out only for an error.
_Path = tuple[Any, str | int] | None


def check(body: Mapping[str, Any], shape: Obj) -> None:
    """Raise `TranslationError` (400, `param` = the field's path) at the first value of the wrong type."""
    _check_object(body, shape, None)


def _check(value: Any, spec: Spec, path: _Path) -> None:
    if type(spec) is Either:
        for option in spec.options:
            if _kind_matches(value, option):
                _check(value, option, path)
                return
        raise _wrong(path, spec.name, value)
    if not _kind_matches(value, spec):
        raise _wrong(path, spec.name, value)
    if type(spec) is ListOf:
        item_spec = spec.item
        for index, item in enumerate(value):
            _check(item, item_spec, (path, index))
    elif type(spec) is Obj:
        _check_object(value, spec, path)


def _check_object(value: Mapping[str, Any], shape: Obj, path: _Path) -> None:
    for name in shape.required:
        if value.get(name) is None:
            where = _spell((path, name))
            raise TranslationError(INVALID_TYPE, f"{where}: required", where)
    for name, spec in shape.fields.items():
        item = value.get(name)
        if item is not None:
            _check(item, spec, (path, name))
    if shape.variants or shape.otherwise is not None:
        tag = value.get(shape.tag)
        variant = shape.variants.get(tag) if type(tag) is str else None
        if variant is None:
            variant = shape.otherwise
        if variant is not None:
            _check_object(value, variant, path)


def _kind_matches(value: Any, spec: Spec) -> bool:
    kind = type(spec)
    if kind is Scalar:
        return spec.matches(value)  # type: ignore[union-attr]
    if kind is ListOf:
        return type(value) is list
    if kind is Obj:
        return type(value) is dict or isinstance(value, Mapping)
    return any(_kind_matches(value, option) for option in spec.options)  # type: ignore[union-attr]


def _spell(path: _Path) -> str:
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    out = ""
    for key in reversed(keys):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


_JSON_NAMES = ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number"), (list, "an array"))


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    return next((name for kind, name in _JSON_NAMES if isinstance(value, kind)), type(value).__name__)


def _wrong(path: _Path, expected: str, value: Any) -> TranslationError:
    where = _spell(path)
    message = f"{where or 'request body'}: expected {expected}, got {json_type_name(value)}"
    return TranslationError(INVALID_TYPE, message, where or None)
