"""A registry of named entries (editing methods, models, data sources …) that names the known ones in its errors.

Entries are plain values, usually small frozen dataclasses that point at the code by import path, so
registering costs nothing and the code behind an entry is imported only when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not in a registry; the message lists the names that are."""


class Registry(Generic[T]):
    """Named entries in registration order; ``get`` of an unknown name raises :class:`UnknownName`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r} — choose one of {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def import_object(path: str) -> Any:
    """The object at ``"package.module:attribute"`` (imported on first use)."""
    module, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"import path {path!r} must look like 'package.module:attribute'")
    return getattr(importlib.import_module(module), attribute)
