"""Who may run a shared model when: one fair, reentrant lock per model, held for one pass.

Every browser session shares the loaded models; hooks and evaluation mode are put on a model
only while its lock is held (see model_lock).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from torch import nn

from saliency_core.engine.model_state import model_state


class FairLock:
    """A reentrant lock that waiting threads get in the order they asked for it.

    The model lock is taken and released once per pass; with a plain lock the thread that
    just released it usually wins it straight back, so a long request would still starve a
    short one. Here a thread that asks again queues behind those already waiting.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque = deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._owner is not None or self._queue[0] is not ticket:
                    self._cond.wait()
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1
            self._held()
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._released()
                self._owner = None
                self._cond.notify_all()

    def _held(self) -> None:
        """Runs when a thread has just taken the lock (not on re-entry)."""

    def _released(self) -> None:
        """Runs when the holding thread lets the lock go for good."""

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class ModelLock(FairLock):
    """A model's lock; while it is held the model computes in evaluation mode.

    A model handed over in training mode would otherwise update its BatchNorm running
    statistics (and num_batches_tracked) on every pass, drop units at random, and, worse,
    normalise with batch statistics that couple the points of one chunk (an IG path's points
    would explain each other). Each submodule's own flag is set aside and restored on
    release, so a model left mixed (a BatchNorm frozen in eval mode inside a training
    network) comes back exactly as it was. The flags are set directly, not through
    ``train()``, which some models override with side effects.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self._module = weakref.ref(module)  # the lock is the value of a weak-keyed dict
        self._training: list[nn.Module] = []

    def _held(self) -> None:
        module = self._module()
        self._training = [m for m in module.modules() if m.training] if module is not None else []
        for m in self._training:
            m.training = False

    def _released(self) -> None:
        for m in self._training:
            m.training = True
        self._training = []


_locks_guard = threading.Lock()


def model_lock(module: nn.Module | None) -> FairLock:
    """One lock per shared model, held for one model pass at a time (never a whole request).

    Hooks live on modules shared by every browser session: a hook registered by one thread
    would run inside another thread's forward pass (a CAM hook capturing the wrong
    activations, a guided rule changing someone else's gradients), and registering one while
    another thread iterates the hook dictionary can corrupt that iteration. So every forward
    pass holds the lock (``locked_forward``), and so does every span in which hooks are on the
    model (registration, the forward pass, removal). Backward passes need no lock: they only
    follow their own graph. Holding it per pass lets a short request on the same model run
    between the chunks of a long one. While held, the model is in evaluation mode
    (ModelLock). A fresh lock serves callables without a module.
    """
    if module is None:
        return FairLock()
    with _locks_guard:
        state = model_state(module)
        lock = state.get("lock")
        if lock is None:
            lock = state["lock"] = ModelLock(module)
        return lock


class LockedForward:
    """A forward that holds its module's lock for the length of each call; it remembers the
    module so wrapping it again for the same module is a no-op."""

    def __init__(self, forward: Callable, module: nn.Module):
        self.forward = forward
        self.locked_module = module
        self._lock = model_lock(module)

    def __call__(self, points: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.forward(points, *args, **kwargs)


def locked_forward(forward: Callable, module: nn.Module | None) -> Callable:
    """``forward`` holding ``module``'s lock for the length of each call."""
    if module is None or (isinstance(forward, LockedForward) and forward.locked_module is module):
        return forward
    return LockedForward(forward, module)
