"""What every method receives: how to call the model, where, and the engine to use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..engine import GradientStream, LogitsCollector, Options, Stats


@dataclass
class Context:
    forward: Callable[[torch.Tensor], object]  # points -> model output (logits inside)
    module: nn.Module | None  # for layer hooks; None for plain callables
    device: torch.device
    options: Options = field(default_factory=Options)
    stats: Stats = field(default_factory=Stats)
    meta: dict = field(default_factory=dict)  # per-call facts reported in metadata
    kind: str = "image"
    normalization: tuple | None = None
    default_layer: str | None = None
    # Builds a named baseline for inputs x (image or text); set by the caller.
    make_baseline: Callable | None = None
    # explain() reads completeness terms (f(baseline)) from metadata; attribute() does not,
    # so the forward pass they cost is only paid when they will be read.
    want_completeness: bool = False
    # explain() needs the model's logits at the inputs; a method whose first pass runs at the
    # inputs hands them over (ctx.meta["input_logits"]) instead of a separate forward.
    capture_logits: bool = False
    # (min, max) of the explicit targets, read once on the host, so no chunk has to
    # synchronise with the device to validate its targets.
    target_range: tuple[int, int] | None = None

    def stream(self, forward: Callable | None = None) -> GradientStream:
        stream = GradientStream(forward or self.forward, self.device, self.options, self.stats,
                                module=self.module)
        stream.target_range = self.target_range
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
