"""Dataset runs for the app: one request through the budget, the rate limit and the device's
queue like any other model work, computed by ``saliency_core.explain_dataset`` on the app's
engine (in this process, or the engine service) with a server-wide cache of compact maps.

The cache holds per image its 32 x 32 map and probabilities under (settings, pixels), so a
rerun with the same settings (after Stop, another sort, a shared link, another session with the
same data) computes only the images it has not seen, and Stop keeps every chunk already done.
It is bounded in bytes (``SALIENCY_DATASET_CACHE_MB``, 256) and drops the least recently used.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from saliency_core.computation import digest_key
from saliency_core.datasets import DatasetExplanation, ImageSet, explain_dataset
from saliency_core.datasets.explain import settings_key
from workbench.jobs import admission, costs, engine
from workbench.jobs.shared import shared
from workbench.jobs.visitor import Visitor

POINTS_PER_CHUNK = 256
MAX_CHUNK = 32
CACHE_ENV = "SALIENCY_DATASET_CACHE_MB"
DEFAULT_CACHE_MB = 256


class MapCache(MutableMapping[str, tuple]):
    """A thread-safe LRU mapping bounded by the bytes of its numpy values."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(value: tuple) -> int:
        return sum(getattr(v, "nbytes", 8) for v in value) + 100

    def __getitem__(self, key: str) -> tuple:
        with self._lock:
            value = self._items[key]
            self._items.move_to_end(key)
            return value

    def __setitem__(self, key: str, value: tuple) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._size(self._items.pop(key))
            self._items[key] = value
            self._bytes += self._size(value)
            while self._bytes > self.max_bytes and self._items:
                _old, dropped = self._items.popitem(last=False)
                self._bytes -= self._size(dropped)

    def __delitem__(self, key: str) -> None:
        with self._lock:
            self._bytes -= self._size(self._items.pop(key))

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes


def _cache_bytes() -> int:
    try:
        return int(float(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB)) * 2**20)
    except ValueError:
        return DEFAULT_CACHE_MB * 2**20


@shared
def map_cache() -> MapCache:
    return MapCache(_cache_bytes())


def run_key(loaded, device: str, source: str, method: str, params: dict, target,
            deletion: bool) -> str:
    """What a dataset view's result depends on: the dataset's source, model, settings."""
    return digest_key("dataset", source, device,
                      settings_key(loaded, method, params, target, 32), deletion)


def explain(visitor: Visitor, loaded, device: str, images: ImageSet, source: str, method: str,
            params: dict, target: Any = "predicted", deletion: bool = False,
            progress: Callable[[int, int], None] | None = None,
            cancel=None) -> DatasetExplanation:
    """The dataset through the queue: admitted by its estimate (passes per image times the
    images), run in turns (the progress callback lets other sessions' work go first between
    chunks) and kept compact in ``map_cache()``."""
    runner = engine.for_models(loaded)
    passes = costs.estimate_passes(method, params, "image")
    key = run_key(loaded, device, source, method, params, target, deletion)

    # Stop keeps the chunks that finished: a chunk of about POINTS_PER_CHUNK model passes loses
    # at most a few images of a heavy method (IG at 64 steps: 4 images a chunk).
    chunk = int(min(MAX_CHUNK, max(1, POINTS_PER_CHUNK // max(1, passes))))

    def run_batch(_payloads):
        return [explain_dataset(loaded, images, method, target=target, progress=progress,
                                cancel=cancel, deletion=deletion, cache=map_cache(),
                                engine=runner, chunk=chunk, **params)]

    request = admission.Request(
        page="dataset", model=loaded.name, device=device, method=method, key=key, payload=None,
        run_batch=run_batch, passes=max(1, passes * len(images)), explicit=True)
    return admission.submit(visitor, request, progress=progress)


def collected(loaded, images: ImageSet, method: str, params: dict, target: Any = "predicted",
              deletion: bool = False) -> DatasetExplanation:
    """What the cache already holds for this dataset and these settings, computing nothing
    (after Stop: the images done are kept)."""
    stop = threading.Event()
    stop.set()
    return explain_dataset(loaded, images, method, target=target, cancel=stop, deletion=deletion,
                           cache=map_cache(), **params)
