"""How a codec reports loss: warnings for "dropped, carried on", `TranslationError` for "refuse".

Policy (protocols.md §6): drop + warn when the meaning survives without the item (sampling params, cache
hints, foreign signatures); refuse with a 400 naming the feature when the answer would be wrong without it
(n > 1, an unmappable hosted tool, previous_response_id without state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from translation.errors import ApiError, ErrorKind

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TranslationWarning:
    """Something the target cannot express and that was dropped or approximated.

    `feature` is a stable short name for dashboards and the `x-llmproxy-warnings` header ("top_k",
    "thinking_signature", "hosted_tool:web_search"); `path` points at the item in the source wire body when
    known ("tools[3]", "messages[2].content[0]"); `detail` is one human sentence.
    """

    feature: str
    detail: str
    path: str | None = None


class TranslationError(Exception):
    """The request cannot be translated without changing its meaning: answer 400 in the client's dialect."""

    def __init__(self, feature: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature
        self.message = message
        self.param = param

    def to_api_error(self) -> ApiError:
        return ApiError(kind=ErrorKind.INVALID_REQUEST, message=self.message, param=self.param, code=self.feature)


@dataclass(frozen=True, slots=True)
class Translated(Generic[T]):
    """A translation's output and what it had to give up to produce it."""

    value: T
    warnings: tuple[TranslationWarning, ...] = ()


@dataclass(slots=True)
class Warnings:
    """A mutable collector a codec threads through its helpers, then closes with `result()`."""

    items: list[TranslationWarning] = field(default_factory=list)

    def drop(self, feature: str, detail: str, path: str | None = None) -> None:
        self.items.append(TranslationWarning(feature, detail, path))

    def result(self, value: T) -> Translated[T]:
        return Translated(value, tuple(self.items))
