"""What every method receives: how to call the model, where, and the engine to use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from saliency_core.engine.stream import GradientStream, LogitsCollector, Options, Stats
from saliency_core.methods.noise import NoiseSource
from saliency_core.targets import Objective, class_objective


@dataclass
class Context:
    forward: Callable[[torch.Tensor], object]  # points -> model output (logits inside)
    module: nn.Module | None  # for layer hooks; None for plain callables
    device: torch.device
    # Builds a named baseline for inputs x (image or text): (name, x, seed=, sample=) -> tensor.
    make_baseline: Callable[..., torch.Tensor]
    options: Options = field(default_factory=Options)
    stats: Stats = field(default_factory=Stats)
    meta: dict = field(default_factory=dict)  # per-call facts reported in metadata
    task: str = "image"
    normalization: tuple | None = None
    default_layer: str | None = None
    # explain() reads completeness terms (f(baseline)) from metadata; attribute() does not,
    # so the forward pass they cost is only paid when they will be read.
    want_completeness: bool = False
    # explain() needs the model's logits at the inputs; a method whose first pass runs at the
    # inputs hands them over (ctx.meta["input_logits"]) instead of a separate forward.
    capture_logits: bool = False
    # What the call explains: the score every pass differentiates (saliency_core.targets).
    objective: Objective = field(default_factory=class_objective)

    def score(self, logits: torch.Tensor, targets: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, targets) at a chunk of points whose per-point targets are ``targets``."""
        return self.objective.score(logits, targets)

    def stream(self, forward: Callable | None = None) -> GradientStream:
        stream = GradientStream(forward or self.forward, self.device, self.options, self.stats,
                                module=self.module)
        stream.score = self.objective.score
        return stream

    def logits_sink(self, total: int):
        """A collector for the logits at the inputs, or None when nobody asked or one already
        ran (Guided Grad-CAM makes two passes at the same inputs)."""
        if not self.capture_logits or "input_logits" in self.meta:
            return None
        collector = LogitsCollector(total)
        self.meta["input_logits"] = collector
        return collector

    def input_logits(self) -> torch.Tensor | None:
        collector = self.meta.pop("input_logits", None)
        return None if collector is None else collector.logits


def expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-point vector shaped to broadcast over points like x: [m] -> [m, 1, 1, ...]."""
    return v.view(-1, *([1] * (x.dim() - 1)))


@dataclass
class RefineState:
    """What a refinable method keeps of one run so a finer one can reuse it."""

    key: tuple  # every parameter but the refinable count
    count: int  # steps or samples evaluated so far
    sums: torch.Tensor | None  # IG: weighted gradient sum; SmoothGrad: sum of attributions
    squares: torch.Tensor | None = None  # SmoothGrad: sum of squared attributions
    noise: NoiseSource | None = None  # SmoothGrad: where the copies come from
    f_baseline: torch.Tensor | None = None


class Shelf:
    """The last few RefineStates of one Refiner, so that going back to a count, or up from
    any kept one, reuses what was evaluated."""

    def __init__(self, size: int = 8):
        self.size = size
        self.states: list[RefineState] = []  # most recently used last

    def best(self, key: tuple, usable) -> RefineState | None:
        """The kept state of these parameters with the largest count ``usable`` accepts."""
        fits = [s for s in self.states if s.key == key and usable(s.count)]
        return max(fits, key=lambda s: s.count, default=None)

    def keep(self, state: RefineState) -> None:
        self.states = [s for s in self.states if (s.key, s.count) != (state.key, state.count)]
        self.states.append(state)
        del self.states[:-self.size]


def key_value(v):
    """Parameters as comparable keys; a tensor baseline by identity and content."""
    if isinstance(v, torch.Tensor):
        return ("tensor", id(v), tuple(v.shape), float(v.double().sum()))
    return v
