"""Results of attribution runs, kept per (model, device, input content, method, parameters,
target) in a least-recently-used cache bounded in bytes.

Display options act on these stored raw results, so changing a colormap or a clipping
percentile never runs the model again; the cache is shared by all sessions of the server
(identical requests give identical results) and drops the oldest entries past its budget.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESULT_CACHE_MB_ENV = "SALIENCY_RESULT_CACHE_MB"
DEFAULT_RESULT_CACHE_MB = 256


@dataclass(frozen=True)
class ImageResult:
    attribution: np.ndarray  # raw, signed: [C, H, W] for input methods, [H, W] for CAMs
    probabilities: np.ndarray  # [K]
    target: int
    predicted: int
    metadata: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.attribution.nbytes + self.probabilities.nbytes) + 2048


@dataclass(frozen=True)
class TextResult:
    tokens: list[str]
    special: list[bool]
    scores: np.ndarray  # [T] one signed score per token
    probabilities: np.ndarray  # [K]
    target: int
    predicted: int
    metadata: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.scores.nbytes + self.probabilities.nbytes) + 64 * len(self.tokens) + 2048


@dataclass(frozen=True)
class Scoreboard:
    rows: list[dict]
    nbytes: int = 4096


def result_key(*parts: Any) -> str:
    """A stable text key; dicts are sorted so parameter order never matters."""
    return json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))


class ResultCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value) -> None:
        size = int(getattr(value, "nbytes", 0))
        if size > self.max_bytes:
            return  # would evict everything else and still not fit
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= int(getattr(old, "nbytes", 0))
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= int(getattr(dropped, "nbytes", 0))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


def configured_max_bytes() -> int:
    raw = os.environ.get(RESULT_CACHE_MB_ENV)
    try:
        megabytes = float(raw) if raw else DEFAULT_RESULT_CACHE_MB
    except ValueError:
        megabytes = DEFAULT_RESULT_CACHE_MB
    return int(megabytes * 1024 * 1024)
