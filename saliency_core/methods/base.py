"""What every method receives: how to call the model, where, and the engine to use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..engine import GradientStream, Options, Stats


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
    cache_key: object = None

    def stream(self, forward: Callable | None = None) -> GradientStream:
        return GradientStream(forward or self.forward, self.device, self.options, self.stats,
                              cache_key=self.cache_key)


def expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-point vector shaped to broadcast over points like x: [m] -> [m, 1, 1, ...]."""
    return v.view(-1, *([1] * (x.dim() - 1)))
