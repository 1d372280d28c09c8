"""One small name -> object registry, used for architectures, datasets, metrics and searchers.

Registries replace if/elif chains: adding an architecture or a searcher is one decorated
function, and the CLI lists the choices from the same place the code looks them up.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import LcpTuneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; duplicate names are a programming error, unknown names a user error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """Register `obj` under `name`; without `obj`, return a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(fn: T) -> T:
            self._add(name, fn)
            return fn

        return decorator

    def _add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise LcpTuneError(
                f"unknown {self.kind} {name!r}: must be one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def drop_none(**kwargs) -> dict:
    """Factories drop None kwargs, so an unset CLI flag never overrides a registry default."""
    return {k: v for k, v in kwargs.items() if v is not None}


Factory = Callable[..., object]
