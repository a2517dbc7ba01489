"""Loaded models shared by every session of the server, bounded in bytes.

Each (model, device) is loaded once per process, however many sessions ask at the same time;
past the byte budget (``SALIENCY_MODEL_CACHE_MB``, default 4096) the least recently used ones
are dropped. A session still computing with a dropped model keeps its reference until it is
done; the next request loads it again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

MODEL_CACHE_MB_ENV = "SALIENCY_MODEL_CACHE_MB"
DEFAULT_MODEL_CACHE_MB = 4096


def model_bytes(loaded: Any) -> int:
    """Parameters and buffers of a LoadedModel (or a plain module)."""
    module = getattr(loaded, "model", loaded)
    if not isinstance(module, torch.nn.Module):
        return 0
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def configured_max_bytes() -> int:
    try:
        megabytes = float(os.environ.get(MODEL_CACHE_MB_ENV, "") or DEFAULT_MODEL_CACHE_MB)
    except ValueError:
        megabytes = DEFAULT_MODEL_CACHE_MB
    return int(megabytes * 1024 * 1024)


class ModelPool:
    def __init__(self, load: Callable[[str, str], Any], max_bytes: int,
                 size_of: Callable[[Any], int] = model_bytes):
        self._load = load
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def get(self, name: str, device: str) -> Any:
        key = (name, device)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per model however many sessions wait for it
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
            loaded = self._load(name, device)
            size = self._size_of(loaded)
            with self._lock:
                self.loads += 1
                self._items[key] = (loaded, size)
                self._evict_locked(keep=key)
                self._loading.pop(key, None)
            return loaded

    def _evict_locked(self, keep: Hashable) -> None:
        freed_cuda = False
        while self.size_bytes > self.max_bytes and len(self._items) > 1:
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            self._items.pop(oldest)
            self.evictions += 1
            freed_cuda = freed_cuda or str(oldest[1]).startswith("cuda")
        if freed_cuda and torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def size_bytes(self) -> int:
        # A snapshot (one C call under the GIL): the metrics thread reads this while a
        # session may be loading a model with the lock held.
        return sum(size for _, size in list(self._items.values()))

    def names(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
