"""What every model source (zoo, bundled, uploaded) returns from ``load_model`` (LoadedModel), and
the catalogue entry that lists it (ModelInfo). Both say image or text as ``task``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class LoadedModel:
    name: str
    task: str  # "image" or "text"
    model: nn.Module  # in eval mode; never modified by attribution code
    labels: list[str]
    # Image models: PIL.Image -> float tensor [1, C, H, W] in the model's input space.
    preprocess: Callable[[Any], torch.Tensor] | None = None
    # Per-channel (mean, std) used by preprocess; lets methods build "black"/"white" baselines
    # and lets unpreprocess map back to pixels. None means inputs are plain [0, 1] pixels.
    normalization: tuple[list[float], list[float]] | None = None
    input_size: tuple[int, int] | None = None  # (H, W) for image models
    tokenizer: Any = None  # text models: a Hugging Face-style tokenizer
    default_layer: str | None = None  # module path for CAM methods
    source: str = "bundled"  # "bundled", "zoo" or "uploaded"
    card: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The older name of ``task`` ("image" or "text"), still read and accepted by the
        constructor (``LoadedModel(name, kind="image", ...)``) for code written before."""
        return self.task

    def unpreprocess(self, x: torch.Tensor) -> np.ndarray:
        """Model-space tensor [1, C, H, W] or [C, H, W] -> uint8 RGB image [H, W, 3]."""
        if x.dim() == 4:
            x = x[0]
        x = x.detach().float().cpu()
        if self.normalization is not None:
            mean = torch.tensor(self.normalization[0]).view(-1, 1, 1)
            std = torch.tensor(self.normalization[1]).view(-1, 1, 1)
            x = x * std + mean
        img = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        return img

    def candidate_layers(self) -> list[tuple[str, tuple[int, ...]]]:
        """Module paths usable by CAM methods with their output shapes, best first."""
        from saliency_core.engine.layers import candidate_layers

        return candidate_layers(
            self.model, self.example_input(), preferred=self.default_layer
        )

    def example_input(self) -> torch.Tensor:
        h, w = self.input_size or (224, 224)
        device = next(self.model.parameters()).device
        return torch.zeros(1, 3, h, w, device=device)


def _accept_kind(generated_init):
    """The dataclass's own constructor, also taking ``kind=`` where it used to be the field."""

    @functools.wraps(generated_init)
    def init(self, *args, kind: str | None = None, **kwargs) -> None:
        if kind is not None:
            if "task" in kwargs or len(args) > 1:
                raise TypeError("LoadedModel takes task or its older name kind, not both")
            kwargs["task"] = kind
        generated_init(self, *args, **kwargs)

    return init


LoadedModel.__init__ = _accept_kind(LoadedModel.__init__)  # type: ignore[method-assign]


@dataclass(frozen=True)
class ModelInfo:
    """One model in the catalogue (``available_models()``), loaded or not."""

    name: str
    task: str  # "image" or "text"
    source: str  # "bundled", "zoo" or "uploaded"
    # Weights on this machine, or in the model source it copies from (models/source.py):
    # load_model works without the internet.
    present: bool
    # Bytes on disk when present; for absent zoo models the expected download size if known.
    size_bytes: int | None
    description: str
