"""Typed registries of named components, stamped with the plugin each came from."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from genbench.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a registered component came from: a plugin name and its distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        if self.plugin == self.distribution:
            return f"{self.distribution} {self.version}"
        return f"plugin {self.plugin} ({self.distribution} {self.version})"


class Registry(Generic[T]):
    """Named components of one kind (``kind`` is e.g. "measure", used in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}

    def add(self, name: str, item: T, origin: Origin) -> None:
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(f"{origin} registered a {self.kind} without a name")
        if name in self._items:
            raise DuplicateNameError(
                f"{self.kind} '{name}' is registered twice: by {self._origins[name]} and by {origin}"
            )
        self._items[name] = item
        self._origins[name] = origin

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        available = sorted(self._items)
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        listing = ", ".join(available) if available else "none"
        return f"unknown {self.kind} '{name}'; {hint}available: {listing}"

    def origin(self, name: str) -> Origin:
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
