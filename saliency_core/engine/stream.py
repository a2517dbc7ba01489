"""The one hot path: every model pass over many points goes through one stream.

Integrated Gradients asks for gradients along a path, SmoothGrad at noisy copies, CAM for a
layer's activations and gradients, the perturbation curves and f(x) for plain forward passes;
all of them describe their points lazily and hand them here with the kind of step each chunk
takes (input gradient, layer gradient, forward only). This module alone decides chunk sizes,
device placement, out-of-memory retries, cancellation and progress, so those concerns are
solved once and Stop interrupts every method alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from saliency_core.engine.locks import FairLock, ModelLock, locked_forward, model_lock  # noqa: F401 - re-exported
from saliency_core.engine.model_state import remembered
from saliency_core.errors import CancelledError, SaliencyError

# Default memory budget for one chunk's autograd state. CPU RAM is not measurable per
# allocation, so the budget is enforced by estimating the bytes autograd saves per point.
# On the CPU it is also the faster choice: beyond about 1 GiB of autograd state per chunk
# the time per point rises (ResNet-50 at 224 px: +25% at 2 GiB against 0.5-1 GiB; at 112 px
# +24% at 1.4 GiB against 1 GiB; measured on a 2-core EPYC), so bigger chunks buy nothing.
DEFAULT_CPU_BUDGET = 1024**3
MAX_CHUNK = {"cpu": 64, "cuda": 512, "mps": 128}

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
        for parameter in module.parameters():
            return parameter.device
        for buffer in module.buffers():
            return buffer.device
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
    # (points, seconds) of each gradient chunk, the cost model's measurement of a batched
    # pass (workbench.jobs.costs): a pass timed alone costs several times one inside a batch.
    chunk_times: list[tuple[int, float]] = field(default_factory=list)

    def timing(self, keep: int = 32) -> dict:
        """The chunk timings in JSON-able form: every chunk's total, and at most ``keep``
        chunks themselves (spread over the run) so that metadata stays small."""
        times = self.chunk_times
        step = max(1, -(-len(times) // keep))
        return {"chunks": len(times), "chunk_s": round(sum(s for _, s in times), 6),
                "sample": [[n, round(s, 6)] for n, s in times[::step]]}


@runtime_checkable
class SupportsIsSet(Protocol):
    """What Stop needs of an event: ``is_set()``."""

    def is_set(self) -> bool: ...


@dataclass
class Options:
    """Engine options every method accepts besides its own hyperparameters."""

    batch_size: int | None = None
    progress: Callable[[int, int], None] | None = None
    cancel: SupportsIsSet | Callable[[], bool] | None = None  # an Event, or True to stop
    memory_budget: int | None = None  # bytes of autograd state per chunk

    def cancelled(self) -> bool:
        c = self.cancel
        if c is None:
            return False
        if isinstance(c, SupportsIsSet):  # threading, multiprocessing or asyncio events alike
            return bool(c.is_set())
        return bool(c())


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device or host running out of memory (what the stream retries
    with a smaller chunk; a caller's own fallback must let it through)."""
    return _is_oom(exc)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def chunk_memory_budget(device: torch.device, options: Options) -> int:
    if options.memory_budget:
        return options.memory_budget
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    return DEFAULT_CPU_BUDGET


#: How a chunk's scores are read off the model's output: (logits [m, K], the chunk's per-point
#: targets or None) -> (scores [m], targets [m]). The stream differentiates the scores; what a
#: target is (a class, a contrast, a function) is the caller's (saliency_core.targets).
ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Step:
    """What one chunk of points goes through. ``take(stream, points, targets)`` returns the
    logits (or None) and the values handed to ``consume`` after ``(start, stop)``."""

    kind: str  # "input_gradient", "layer_gradient" or "forward"
    take: Callable

    @property
    def needs_graph(self) -> bool:
        return self.kind != "forward"


def _input_gradient(stream: GradientStream, points, targets):
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(stream.forward(points))
        scores, targets = stream.scores(logits, targets)
        # Only the input gradient is asked for: autograd then skips every parameter
        # gradient, which is what keeps a pass at the floor cost.
        (grads,) = torch.autograd.grad(scores.sum(), points)
    return logits, (grads.detach(), scores.detach(), targets)


def _forward_only(stream: GradientStream, points, _targets):
    with torch.no_grad():
        logits = logits_of(stream.forward(points)).reshape(points.shape[0], -1)
    return None, (logits,)


INPUT_GRADIENT = Step("input_gradient", _input_gradient)
FORWARD = Step("forward", _forward_only)


def layer_gradient(take: Callable) -> Step:
    """A step whose gradients are taken at a layer (CAM methods); ``take`` as for Step."""
    return Step("layer_gradient", take)


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
        self.score: ScoreFn | None = None  # what a gradient step differentiates
        # Optional callable(start, stop, logits [m, K]): lets explain() read the model's output
        # at the inputs from the gradient pass instead of paying for a forward of its own.
        self.logits_sink: Callable | None = None

    def scores(self, logits: torch.Tensor, targets: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.score is None:
            raise SaliencyError("a gradient pass needs a score function (GradientStream.score)")
        return self.score(logits, targets)

    def chunk_size(self, total: int, make_chunk: Callable, step: Step = INPUT_GRADIENT,
                   weight: float = 1.0) -> int:
        """Points per pass: the caller's batch_size, else as many as the memory budget allows,
        spread evenly over the passes that need. A forward-only pass keeps no autograd state,
        so only the device's chunk limit bounds it. ``weight``: how many times the measured
        autograd state of one point a point of this step holds at its peak (a backward
        batched over several targets holds one gradient per target)."""
        if self.options.batch_size:
            return self.options.batch_size
        if not step.needs_graph:
            return balanced_chunk(total, MAX_CHUNK.get(self.device.type, 64))
        per_point = int(self._bytes_per_point(make_chunk) * max(1.0, weight))
        return balanced_chunk(total, self._chunk_for(per_point))

    def run(self, total: int, make_chunk: Callable, consume: Callable,
            step: Step = INPUT_GRADIENT, chunk: int | None = None, report: bool = True,
            weight: float = 1.0) -> None:
        """``consume(start, stop, *values)`` for every chunk in order. ``chunk`` fixes the
        chunk size (else chunk_size decides, ``weight`` as there); ``report=False`` keeps an
        auxiliary pass (f(x), a baseline's score) out of the caller's progress, though Stop
        still ends it."""
        if total <= 0:
            return
        chunk = chunk or self.chunk_size(total, make_chunk, step, weight)
        start = 0
        progress = self.options.progress if report else None
        if progress is not None:
            progress(0, total)
        while start < total:
            if self.options.cancelled():
                raise CancelledError("stopped on request")
            stop = min(total, start + chunk)
            try:
                self._one_chunk(start, stop, make_chunk, consume, step)
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
            start = stop
            if progress is not None:
                progress(start, total)

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

    def _chunk_for(self, per_point: int) -> int:
        budget = chunk_memory_budget(self.device, self.options)
        limit = MAX_CHUNK.get(self.device.type, 64)
        return int(max(1, min(limit, budget // max(1, per_point))))

    def _one_chunk(self, start, stop, make_chunk, consume, step: Step):
        began = time.perf_counter()
        points, targets = make_chunk(start, stop)
        logits, values = step.take(self, points, targets)
        if not step.needs_graph:
            self.stats.forwards += stop - start
        else:
            if self.logits_sink is not None and logits is not None:
                self.logits_sink(start, stop, logits.detach().reshape(stop - start, -1))
            self.stats.passes += stop - start
            self.stats.chunks += 1
            self.stats.chunk_size = max(self.stats.chunk_size, stop - start)
        consume(start, stop, *values)
        if step.needs_graph:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # else the time is only the launch's
            self.stats.chunk_times.append((stop - start, time.perf_counter() - began))


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


def forward_no_grad(forward: Callable, points: torch.Tensor, stats: Stats,
                    options: Options | None = None) -> torch.Tensor:
    """Logits at points without building a graph (targets, baselines, f(x)), through the
    stream: chunked, retried on out-of-memory and stopped on request like every pass."""
    outs: list[torch.Tensor] = []
    stream = GradientStream(forward, points.device, options or Options(), stats)
    stream.run(points.shape[0], lambda a, b: (points[a:b], None),
               lambda a, b, logits: outs.append(logits), step=FORWARD, report=False)
    return (outs[0] if len(outs) == 1 else torch.cat(outs)) if outs else torch.empty(0)
