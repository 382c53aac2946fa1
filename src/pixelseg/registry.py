"""A tiny name -> builder registry. Entries are added by explicit imports (see models/__init__.py),
never by scanning, so a missing registration is an import error, not a silent absence."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from pixelseg.errors import PixelsegError


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable
    info: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **info):
        def deco(fn):
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, fn, info)
            return fn
        return deco

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise PixelsegError(f"unknown {self.kind} '{name}'; {hint}valid: {', '.join(sorted(self._entries))}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())
