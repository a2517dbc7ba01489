"""Departed browser sessions are shut down when their reconnect time is over, and the memory
they held goes back to the system once nobody is on the server.

Streamlit (1.67) keeps the session of a closed tab in its MemorySessionStorage for
``server.disconnectedSessionTTL`` seconds, so that a browser whose connection dropped can
resume it. That store is a TTLCache that removes an expired session only when something is
written to it later (the next tab that closes), and then just drops it: the session is shut
down by ``AppSession.__del__`` whenever the garbage collector gets to it, in whichever thread
that happens. Until then the files it uploaded stay in Streamlit's uploaded-file manager and the
pictures of its last run in the media file manager (measured: about 0.5 MB of photo and 1.1 MB
of pictures per upload-and-explain visit), on an idle server for as long as nobody closes a
tab. Here the store's cache is Streamlit's own TTLCache with the release it documents for
subclasses (override ``expire`` and ``_evict_lru``, release after ``super()``), a timer thread
asks it to expire every ``REAP_EVERY_S``, and each session it gives up is shut down on the
runtime's event loop, where Streamlit itself closes sessions.

When no session is connected or stored any more, the thread runs the garbage collector and
glibc's ``malloc_trim(0)``, so the server's resident memory falls back to what it really holds
instead of keeping the freed pages of the sessions that left. It also sets the Prometheus
gauges ``saliency_sessions_connected`` and ``saliency_sessions_stored`` (after the trim, so
that both at 0 mean "idle and trimmed"); ``saliency_sessions_stored`` is NaN where the store
could not be taken over.

All of this reaches into Streamlit's internals (the runtime's session manager, its storage
lock and the storage's cache). Each is checked before use; if one is missing the server runs
as Streamlit alone would, logs why, and tests/test_session_reaper.py fails.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from workbench.hosting import telemetry

REAP_EVERY_S = 2.0
log = logging.getLogger("workbench.hosting.reaper")


def make_releasing_cache(maxsize: float, ttl: float, released: deque,
                         timer: Callable[[], float] = time.monotonic):
    """Streamlit's TTLCache that appends every session it expires or evicts to ``released``."""
    from streamlit.runtime.caching.ttl_cache import TTLCache

    class ReleasingCache(TTLCache):
        def expire(self, at_time=None):
            removed = super().expire(at_time)
            released.extend(info.session for _, info in removed)
            return removed

        def _evict_lru(self, reason):
            info = super()._evict_lru(reason)
            released.append(info.session)
            return info

    return ReleasingCache(maxsize=maxsize, ttl=ttl, timer=timer)


def take_over_storage(manager, released: deque) -> str | None:
    """Give ``manager``'s session store a releasing cache (same size and TTL, same entries);
    None when done, else why it could not be."""
    from streamlit.runtime.caching.ttl_cache import TTLCache
    from streamlit.runtime.memory_session_storage import MemorySessionStorage

    storage = getattr(manager, "_session_storage", None)
    lock = getattr(manager, "_storage_lock", None)
    if not isinstance(storage, MemorySessionStorage) or lock is None:
        return f"the session manager {type(manager).__name__} has no MemorySessionStorage and lock"
    old = getattr(storage, "_cache", None)
    if not isinstance(old, TTLCache):
        return "MemorySessionStorage keeps its sessions in something other than a TTLCache"
    with lock:
        cache = make_releasing_cache(old.maxsize, old.ttl, released, old.timer)
        for key, value in old.lru_items():  # a session that connected already
            cache[key] = value
        storage._cache = cache
    return None


def malloc_trim() -> bool:
    """Hand freed heap pages back to the system (glibc); False where there is no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


class Reaper:
    """Shuts down the sessions the store gives up, trims memory when idle, sets the gauges."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.manager = runtime._session_mgr
        self.loop = runtime._get_async_objs().eventloop
        self.released: deque = deque()
        self.problem = take_over_storage(self.manager, self.released)
        self.cache = None if self.problem else self.manager._session_storage._cache
        self.used_since_trim = False

    def _release_on_loop(self) -> tuple[int, int]:
        """On the event loop: expire the store, shut its given-up sessions down; returns
        (sessions connected, sessions stored)."""
        if self.cache is not None:
            with self.manager._storage_lock:
                stored = len(self.cache)  # len() expires first (TTLCache's contract)
        else:
            stored = -1
        while self.released:
            session = self.released.popleft()
            try:
                session.shutdown()
            except Exception:  # one broken session must not keep the others
                log.exception("shutting down a departed session failed")
            telemetry.SESSIONS_RELEASED.inc()
        return self.manager.num_active_sessions(), stored

    async def _tick_on_loop(self) -> tuple[int, int]:
        return self._release_on_loop()

    def tick(self) -> tuple[int, int]:
        future = asyncio.run_coroutine_threadsafe(self._tick_on_loop(), self.loop)
        connected, stored = future.result(timeout=60)
        if connected or stored:
            self.used_since_trim = True
        elif self.used_since_trim:
            gc.collect()
            malloc_trim()
            telemetry.MEMORY_TRIMS.inc()
            self.used_since_trim = False
        telemetry.SESSIONS_CONNECTED.set(connected)
        telemetry.SESSIONS_STORED.set(stored if stored >= 0 else float("nan"))
        return connected, stored

    def run_forever(self, every_s: float = REAP_EVERY_S) -> None:
        while not self.loop.is_closed():
            try:
                self.tick()
            except Exception:  # the server goes on as Streamlit alone runs it
                log.exception("the session reaper's round failed")
            time.sleep(every_s)


def _started_runtime(timeout_s: float):
    """The Streamlit runtime once its event loop runs, or None after ``timeout_s``."""
    from streamlit import runtime

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if runtime.exists():
            instance = runtime.get_instance()
            if getattr(instance, "_async_objs", None) is not None:
                return instance
        time.sleep(0.05)
    return None


def start(timeout_s: float = 300.0) -> threading.Thread:
    """Start the reaper's thread; it waits for the runtime to start, then runs."""
    def main() -> None:
        telemetry.start_metrics_server()
        instance = _started_runtime(timeout_s)
        reaper = None
        try:
            if instance is None:
                raise RuntimeError("the Streamlit runtime did not start")
            reaper = Reaper(instance)
            problem = reaper.problem
        except (AttributeError, RuntimeError, ImportError) as exc:
            problem = str(exc)
        if problem:
            log.warning("departed sessions are left to Streamlit (%s): their uploads stay in "
                        "memory", problem)
        if reaper is None:
            telemetry.SESSIONS_STORED.set(float("nan"))
            return
        reaper.run_forever()  # without the store it still trims and sets the gauges

    thread = threading.Thread(target=main, name="session-reaper", daemon=True)
    thread.start()
    return thread
