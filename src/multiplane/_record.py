"""A tiny base for value classes: equality and repr from __slots__.

dataclasses costs ~10 ms of import time (it pulls in inspect); every CNI call pays start-up
cost, so value types here are plain slotted classes.
"""

from __future__ import annotations

__all__ = ["Record"]


class Record:
    __slots__ = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"
