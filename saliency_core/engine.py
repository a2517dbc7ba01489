"""The one hot path: gradients of a target score with respect to many input points.

Integrated Gradients asks for gradients along a path, SmoothGrad at noisy copies, their
combination at noisy paths; all of them describe their points lazily and hand them here. This
module alone decides chunk sizes, device placement, out-of-memory retries, cancellation and
progress, so those concerns are solved once.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import CancelledError, SaliencyError, TargetError
from .model_state import model_state, remembered

# Default memory budget for one chunk's autograd state. CPU RAM is not measurable per
# allocation, so the budget is enforced by estimating the bytes autograd saves per point.
# On the CPU it is also the faster choice: beyond about 1 GiB of autograd state per chunk
# the time per point rises (ResNet-50 at 224 px: +25% at 2 GiB against 0.5-1 GiB; at 112 px
# +24% at 1.4 GiB against 1 GiB; measured on a 2-core EPYC), so bigger chunks buy nothing.
DEFAULT_CPU_BUDGET = 1024**3
MAX_CHUNK = {"cpu": 64, "cuda": 512, "mps": 128}

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


def locked_forward(forward: Callable, module: nn.Module | None) -> Callable:
    """``forward`` holding ``module``'s lock for the length of each call."""
    if module is None or getattr(forward, "locked_module", None) is module:
        return forward
    lock = model_lock(module)

    def call(points, *args, **kwargs):
        with lock:
            return forward(points, *args, **kwargs)

    call.locked_module = module
    return call


def logits_of(output) -> torch.Tensor:
    """Hugging Face output objects, dicts, tuples and plain tensors all yield their logits."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise SaliencyError(
        f"the model returned {type(output).__name__}; expected logits as a tensor, a dict or "
        "an object with .logits"
    )


def module_device(module: nn.Module | None) -> torch.device:
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return torch.device("cpu")


@dataclass
class Stats:
    """What the engine did, reported in explanation metadata."""

    passes: int = 0  # points that went through forward + input backward
    forwards: int = 0  # points that went through forward only
    chunks: int = 0
    chunk_size: int = 0
    oom_retries: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Options:
    """Engine options every method accepts besides its own hyperparameters."""

    batch_size: int | None = None
    progress: Callable[[int, int], None] | None = None
    cancel: object = None  # threading.Event or callable returning True to stop
    memory_budget: int | None = None  # bytes of autograd state per chunk

    def cancelled(self) -> bool:
        c = self.cancel
        if c is None:
            return False
        if hasattr(c, "is_set"):
            return bool(c.is_set())
        return bool(c())


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _budget(device: torch.device, options: Options) -> int:
    if options.memory_budget:
        return options.memory_budget
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    return DEFAULT_CPU_BUDGET


def check_targets(targets: torch.Tensor, num_classes: int) -> None:
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = int(targets.max()) if int(targets.max()) >= num_classes else int(targets.min())
        raise TargetError(f"target class {bad} is out of range: the model has {num_classes} outputs (0..{num_classes - 1})")


def check_target_range(target_range: tuple[int, int], num_classes: int) -> None:
    """check_targets for targets whose (min, max) is already known on the host."""
    low, high = target_range
    if low < 0 or high >= num_classes:
        bad = high if high >= num_classes else low
        raise TargetError(f"target class {bad} is out of range: the model has {num_classes} outputs (0..{num_classes - 1})")


def _score(logits: torch.Tensor, targets: torch.Tensor | None,
           target_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's logit at each point (targets None: each point's argmax). With the
    targets' range known on the host the check costs no device synchronisation, which on a
    GPU would stall every chunk between its forward and backward pass."""
    if logits.dim() != 2:
        logits = logits.reshape(logits.shape[0], -1)
    if targets is None:
        targets = logits.detach().argmax(dim=1)
    elif target_range is not None:
        check_target_range(target_range, logits.shape[1])
    else:
        check_targets(targets, logits.shape[1])
    return logits.gather(1, targets[:, None]).squeeze(1), targets


class GradientStream:
    """Evaluates d score[target] / d point for ``total`` points described lazily.

    ``make_chunk(start, stop)`` returns the points (detached, on the model's device) and their
    targets (None = each point's own argmax); ``consume(start, stop, grads, scores, targets)``
    folds the result into the method's accumulators, so no more than one chunk of points and
    gradients exists at a time.
    """

    def __init__(self, forward: Callable, device: torch.device, options: Options, stats: Stats,
                 module: nn.Module | None = None):
        self.forward = forward
        self.device = device
        self.options = options
        self.stats = stats
        self.module = module
        self.target_range: tuple[int, int] | None = None  # (min, max) of every target, if known
        # Optional callable(start, stop, logits [m, K]): lets explain() read the model's output
        # at the inputs from the gradient pass instead of paying for a forward of its own.
        self.logits_sink: Callable | None = None

    def chunk_size(self, total: int, make_chunk: Callable) -> int:
        """Points per pass: the caller's batch_size, else as many as the memory budget allows,
        spread evenly over the passes that need."""
        if self.options.batch_size:
            return self.options.batch_size
        return balanced_chunk(total, self._chunk_for(self._bytes_per_point(make_chunk)))

    def run(self, total: int, make_chunk: Callable, consume: Callable) -> None:
        chunk = self.chunk_size(total, make_chunk)
        start = 0
        self._report(0, total)
        while start < total:
            if self.options.cancelled():
                raise CancelledError("stopped on request")
            stop = min(total, start + chunk)
            try:
                self._one_chunk(start, stop, make_chunk, consume)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if stop - start == 1:
                    raise SaliencyError(
                        "out of memory even for a single point; use a smaller input or the CPU"
                    ) from exc
                chunk = max(1, (stop - start) // 2)
                self.stats.oom_retries += 1
                continue
            self.stats.chunk_size = max(self.stats.chunk_size, stop - start)
            start = stop
            self._report(start, total)

    def _bytes_per_point(self, make_chunk) -> int:
        """Autograd state one point keeps alive, measured once per model and input shape by
        a one-point forward pass whose saved tensors are counted (then discarded).

        Each storage counts once (ops often save the same activation twice), and the model's
        own parameters and buffers not at all: they exist once whatever the chunk size, and
        counting them per point would make chunks needlessly small."""
        points, _targets = make_chunk(0, 1)
        key = (tuple(points.shape[1:]), points.dtype, self.device.type,
               torch.is_autocast_enabled(self.device.type))
        owner = self.module if self.module is not None else self.forward
        return remembered(owner, "saved_bytes_per_point", key, lambda: self._measure(points))

    def _measure(self, points: torch.Tensor) -> int:
        fixed = set()
        if self.module is not None:
            for t in (*self.module.parameters(), *self.module.buffers()):
                fixed.add(t.untyped_storage().data_ptr())
        saved: dict = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in fixed:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits_of(self.forward(points[:1].detach().requires_grad_(True)))
        self.stats.forwards += 1
        # Saved activations plus the point, its gradient and transient buffers.
        per_point = sum(saved.values()) + 4 * points[0].numel() * points.element_size()
        return int(per_point * 1.5)

    def _report(self, done: int, total: int) -> None:
        if self.options.progress is not None:
            self.options.progress(done, total)

    def _chunk_for(self, per_point: int) -> int:
        budget = _budget(self.device, self.options)
        limit = MAX_CHUNK.get(self.device.type, 64)
        return int(max(1, min(limit, budget // max(1, per_point))))

    def _one_chunk(self, start, stop, make_chunk, consume):
        points, targets = make_chunk(start, stop)
        points = points.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = logits_of(self.forward(points))
            scores, targets = _score(logits, targets, self.target_range if targets is not None else None)
            # Only the input gradient is asked for: autograd then skips every parameter
            # gradient, which is what keeps a pass at the floor cost.
            (grads,) = torch.autograd.grad(scores.sum(), points)
        if self.logits_sink is not None:
            self.logits_sink(start, stop, logits.detach().reshape(stop - start, -1))
        self.stats.passes += stop - start
        self.stats.chunks += 1
        consume(start, stop, grads.detach(), scores.detach(), targets)


def balanced_chunk(total: int, limit: int, slack: float = 0.1) -> int:
    """Equal chunks, as few as the limit allows: 100 points under a limit of 64 go as
    50 + 50, not 64 + 36, so no pass runs on a tail-sized batch. The limit comes from an
    estimate, so it may be exceeded by ``slack`` where that saves a pass: 32 points under a
    limit of 31 go as one chunk of 32, not two of 16."""
    limit = max(1, limit)
    chunks = max(1, -(-total // max(1, int(limit * (1 + slack)))))
    return max(1, -(-total // chunks))


class LogitsCollector:
    """A GradientStream.logits_sink that keeps the model's output at every point, in order."""

    def __init__(self, total: int):
        self.total = total
        self.logits: torch.Tensor | None = None

    def __call__(self, start: int, stop: int, logits: torch.Tensor) -> None:
        if self.logits is None:
            self.logits = logits.new_empty((self.total, logits.shape[1]))
        self.logits[start:stop] = logits


def forward_no_grad(forward: Callable, points: torch.Tensor, stats: Stats, chunk: int = 64) -> torch.Tensor:
    """Logits at points without building a graph (targets, baselines, f(x))."""
    outs = []
    with torch.no_grad():
        for i in range(0, points.shape[0], chunk):
            outs.append(logits_of(forward(points[i:i + chunk])).reshape(min(chunk, points.shape[0] - i), -1))
    stats.forwards += points.shape[0]
    return torch.cat(outs) if outs else torch.empty(0)
