"""Process-wide singletons for the jobs layer: one result cache, one queue per device, one
model pool for every session of the server, made on first use (outside Streamlit as well)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Shared(Generic[T]):
    """``make(*args)`` called once per distinct ``args`` (under a lock, so sessions asking at
    the same time share one); ``clear()`` forgets them, so the next call makes new ones."""

    def __init__(self, make: Callable[..., T]):
        self._make = make
        self._made: dict[tuple[Hashable, ...], T] = {}
        self._lock = threading.Lock()
        self.__doc__ = make.__doc__
        self.__name__ = getattr(make, "__name__", "shared")

    def __call__(self, *args: Hashable) -> T:
        made = self._made.get(args)
        if made is not None:
            return made
        with self._lock:
            if args not in self._made:
                self._made[args] = self._make(*args)
            return self._made[args]

    def clear(self) -> None:
        with self._lock:
            self._made.clear()


def shared(make: Callable[..., T]) -> Shared[T]:
    return Shared(make)
