"""Executors run training groups (one ensemble each). The driver alone writes the store."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

from genbench.hookspecs import hookimpl


class Executor(Protocol):
    name: str
    description: str

    def map(self, function: Callable[[Any], Any], groups: Iterable[Any]) -> Iterator[Any]: ...


class LocalExecutor:
    """Runs each group in this process, one after another (the default)."""

    name: ClassVar[str] = "local"
    description: ClassVar[str] = "train groups one after another in this process"

    def map(self, function: Callable[[Any], Any], groups: Iterable[Any]) -> Iterator[Any]:
        for group in groups:
            yield function(group)


@hookimpl
def register_executors(register) -> None:
    register(LocalExecutor())
