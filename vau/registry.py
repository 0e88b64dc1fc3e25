"""Name -> builder registries (instead of branching on name substrings)."""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar
from vau.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping whose lookup errors list the valid names.

    Args:
        kind: What the entries are, used in error messages (e.g. ``"strategy"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """Adds ``entry`` under ``name``; without ``entry`` returns a decorator."""
        if entry is not None:
            self._add(name, entry)
            return entry

        def deco(obj: T) -> T:
            self._add(name, obj)
            return obj

        return deco

    def _add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """Returns the entry for ``name`` or raises KeyError naming the closest valid names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r} (valid: {', '.join(sorted(self._entries))}){hint}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_object(path: str) -> Callable:
    """Imports ``"package.module:attr"`` lazily (keeps `vau config` free of torch imports)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
