"""IR <-> plain JSON, for golden vectors and debugging (never on the hot path).

Rules: a dataclass becomes an object of its fields, with fields still at their default left out so vectors
stay short; a class with a `TAG` (a member of a union: parts, sources, tools, stream events) also gets
`"type": TAG` so the right class can be rebuilt; enums become their values; tuples become lists.
Decoding is driven by the type hints, so it rebuilds exactly the classes that were encoded.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")

TYPE_KEY = "type"


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        tag = getattr(value, "TAG", None)
        if tag is not None:
            out[TYPE_KEY] = tag
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if not _is_default(f, item):
                out[f.name] = to_json(item)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


@typing.overload
def from_json(cls: type[T], data: Any) -> T: ...
@typing.overload
def from_json(cls: Any, data: Any) -> Any: ...
def from_json(cls: Any, data: Any) -> Any:
    """Rebuild an instance of `cls` (a dataclass, or a union alias such as `Part`) from `to_json` output."""
    return _decode(cls, data)


def _is_default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


def _decode(hint: Any, data: Any) -> Any:
    if hint is Any:
        return data
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(typing.get_args(hint), data)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        return tuple(_decode(item_hint, v) for v in data)
    if origin is list:
        return [_decode(typing.get_args(hint)[0], v) for v in data]
    if origin in (dict, typing.get_origin(typing.Mapping[str, Any])):
        value_hint = typing.get_args(hint)[1]
        return {k: _decode(value_hint, v) for k, v in data.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _field_hints(hint)
        kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k != TYPE_KEY or k in hints}
        return hint(**kwargs)
    return data


def _decode_union(members: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in members:
        return None
    candidates = [m for m in members if m is not type(None)]
    if isinstance(data, dict) and TYPE_KEY in data:
        for member in candidates:
            if getattr(member, "TAG", None) == data[TYPE_KEY]:
                return _decode(member, data)
    if len(candidates) == 1:
        return _decode(candidates[0], data)
    raise ValueError(f"cannot tell which of {candidates} this is: {data!r}")


@cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
