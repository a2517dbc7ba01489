"""Results of attribution runs, kept per (model, device, input content, method, parameters,
target) in a least-recently-used cache bounded in bytes.

Display options act on these stored raw results, so changing a colormap or a clipping
percentile never runs the model again; the cache is shared by all sessions of the server
(identical requests give identical results) and drops the oldest entries past its budget.

Behind the memory tier there can be a shared tier in the storage backend (workbench/hosting/storage.py):
object storage when configured, or the folder ``SALIENCY_RESULT_DIR``. App replicas sharing it
reuse each other's results, and a link opened on another replica shows the run that was shared
without running the model again. Results are stored as safetensors + JSON (saliency_core.serve.wire),
never pickled; a damaged or unreadable entry is only a miss.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saliency_core.computation import digest_key
from saliency_core.serve.wire import WireError, decode_value, encode_value, pack, unpack
from workbench.hosting.storage import (
    PruneTimer,
    Storage,
    StorageUnavailable,
    storage_for,
)

log = logging.getLogger(__name__)

RESULT_CACHE_MB_ENV = "SALIENCY_RESULT_CACHE_MB"
RESULT_DIR_ENV = "SALIENCY_RESULT_DIR"
RESULT_STORE_MB_ENV = "SALIENCY_RESULT_STORE_MB"
DEFAULT_RESULT_CACHE_MB = 256
DEFAULT_RESULT_STORE_MB = 2048
STORE_RETRY_S = 30.0


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
class GenerationResult:
    """A language model's next-word attribution (saliency_core's GenerationAttribution), kept
    in memory only: the shared tier stores the four result types above."""

    attribution: Any

    @property
    def metadata(self) -> dict:
        """The run's facts (its engine timings teach the cost model, as other results do)."""
        return self.attribution.metadata

    @property
    def nbytes(self) -> int:
        a = self.attribution
        return int(a.matrix.nbytes) + 96 * len(a.source_tokens) + 4096


@dataclass(frozen=True)
class Scoreboard:
    rows: list[dict]
    nbytes: int = 4096


@dataclass(frozen=True)
class SanityResult:
    """The sanity checks of one setting: evaluation.RandomizationResult and, when a
    shuffled-label model was compared, evaluation.DataRandomizationResult (stored in the
    shared tier as the engine service's structured values: arrays bit for bit)."""

    cascade: Any
    data: Any | None = None
    # Why the data randomization test did not run though a partner was given. A result with a
    # problem is never cached (the next Run tries again), so it is not stored either.
    data_problem: str | None = None

    @property
    def nbytes(self) -> int:
        total = 4096
        for part in (self.cascade, self.data):
            if part is None:
                continue
            total += sum(a.nbytes for per_metric in part.similarity.values()
                         for a in per_metric.values())
            total += sum(m.abs.nbytes + m.signed.nbytes for maps in part.maps.values()
                         for m in maps)
        return int(total)


# The result cache's keys, one rule with the library's Computation keys.
result_key = digest_key


def to_bytes(value) -> bytes | None:
    """A result as safetensors + JSON; None for what cannot be stored faithfully."""
    try:
        if isinstance(value, ImageResult):
            arrays = {"attribution": value.attribution, "probabilities": value.probabilities}
            doc = {"type": "image", "target": value.target, "predicted": value.predicted,
                   "metadata": value.metadata}
        elif isinstance(value, TextResult):
            arrays = {"scores": value.scores, "probabilities": value.probabilities}
            doc = {"type": "text", "tokens": value.tokens, "special": value.special,
                   "target": value.target, "predicted": value.predicted,
                   "metadata": value.metadata}
        elif isinstance(value, Scoreboard):
            arrays, doc = {}, {"type": "scoreboard", "rows": value.rows}
        elif isinstance(value, SanityResult):
            named: dict[str, torch.Tensor] = {}
            parts = encode_value({"cascade": value.cascade, "data": value.data}, named)
            return pack(named, {"type": "sanity", "parts": parts})
        else:
            return None
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return pack(tensors, doc)
    except (TypeError, ValueError):  # metadata that JSON cannot hold exactly: memory only
        return None


def from_bytes(data: bytes):
    tensors, doc = unpack(data)
    arrays = {k: t.numpy() for k, t in tensors.items()}
    kind = doc.get("type")
    try:
        if kind == "image":
            return ImageResult(attribution=arrays["attribution"],
                               probabilities=arrays["probabilities"], target=int(doc["target"]),
                               predicted=int(doc["predicted"]), metadata=doc["metadata"])
        if kind == "text":
            return TextResult(tokens=list(doc["tokens"]), special=list(doc["special"]),
                              scores=arrays["scores"], probabilities=arrays["probabilities"],
                              target=int(doc["target"]), predicted=int(doc["predicted"]),
                              metadata=doc["metadata"])
        if kind == "scoreboard":
            return Scoreboard(rows=list(doc["rows"]))
        if kind == "sanity":
            parts = decode_value(doc["parts"], tensors)
            return SanityResult(cascade=parts["cascade"], data=parts["data"])
    except KeyError as exc:
        raise WireError(f"stored result lacks {exc}") from None
    raise WireError(f"unknown stored result type {kind!r}")


def storage_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".st"


class ResultCache:
    def __init__(self, max_bytes: int, store: Storage | None = None,
                 store_limit_bytes: int | None = None):
        self.max_bytes = max_bytes
        self.store = store
        self.store_limit_bytes = store_limit_bytes or DEFAULT_RESULT_STORE_MB * 1024 * 1024
        self._prune_timer = PruneTimer()
        # After a failure the shared tier is skipped for a while: a store that is down must
        # not add its timeouts to every page run.
        self._store_down_until = 0.0
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0

    def get(self, key: str):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return value
        value = self._from_store(key)
        with self._lock:
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self.shared_hits += 1
        self._remember(key, value)
        return value

    def _store_usable(self) -> bool:
        return self.store is not None and time.monotonic() >= self._store_down_until

    def _store_failed(self, exc: Exception) -> None:
        log.warning("shared result cache unavailable for %.0f s: %s", STORE_RETRY_S, exc)
        self._store_down_until = time.monotonic() + STORE_RETRY_S

    def _from_store(self, key: str):
        if not self._store_usable():
            return None
        try:
            return from_bytes(self.store.read(storage_key(key)))
        except KeyError:
            return None
        except WireError as exc:
            log.warning("shared result cache: damaged entry: %s", exc)
            return None
        except StorageUnavailable as exc:
            self._store_failed(exc)
            return None

    def put(self, key: str, value) -> None:
        self._remember(key, value)
        if not self._store_usable():
            return
        data = to_bytes(value)
        if data is None:
            return
        name = storage_key(key)
        try:
            self.store.write(name, data)
            if self._prune_timer.due():
                self.store.prune(self.store_limit_bytes, keep=name)
        except StorageUnavailable as exc:  # the memory tier still has it
            self._store_failed(exc)

    def _remember(self, key: str, value) -> None:
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


def result_dir() -> Path | None:
    configured = os.environ.get(RESULT_DIR_ENV)
    return Path(configured).expanduser() if configured else None


def _megabytes(env: str, default: float) -> int:
    raw = os.environ.get(env)
    try:
        megabytes = float(raw) if raw else default
    except ValueError:
        megabytes = default
    return int(megabytes * 1024 * 1024)


def configured_store_bytes() -> int:
    return _megabytes(RESULT_STORE_MB_ENV, DEFAULT_RESULT_STORE_MB)


def configured_cache() -> ResultCache:
    """The cache as configured: memory, plus the shared tier where storage is configured."""
    return ResultCache(configured_max_bytes(), store=storage_for("results", result_dir()),
                       store_limit_bytes=configured_store_bytes())


def configured_max_bytes() -> int:
    return _megabytes(RESULT_CACHE_MB_ENV, DEFAULT_RESULT_CACHE_MB)
