"""The types of the public API's arguments: targets, models and every method's keyword
parameters as TypedDicts, so a type checker (and an editor) knows what ``attribute(...,
steps=64)`` accepts. The method specs (saliency_core/methods/specs.py) stay the runtime source of truth
for defaults, ranges and choices; tests/test_api_typing.py checks that these declarations name
exactly the specs' parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict, Union

import torch
from torch import nn

from saliency_core.targets import Contrast

if TYPE_CHECKING:
    from saliency_core.models.base import LoadedModel

#: What to explain (saliency_core.targets): "predicted" (each input's top class), one class
#: index or name for every input, one per input, a Contrast (one class rather than another),
#: or a function of the logits [N, K] -> scores [N].
Target = (int | str | Sequence[int | str] | torch.Tensor | Literal["predicted"] | Contrast
          | Callable[[torch.Tensor], torch.Tensor])

#: A plain ``nn.Module`` (or a callable returning logits), or a model from ``load_model``.
Model = Union[nn.Module, "LoadedModel", Callable[[torch.Tensor], torch.Tensor]]  # a forward reference

#: Image baselines by name, a number (a constant input) or a tensor of the input's shape.
ImageBaseline = Literal["zeros", "black", "white", "blur", "uniform", "gaussian"]
TextBaseline = Literal["pad", "mask", "unk", "zeros"]
Quadrature = Literal["gauss_legendre", "riemann_left", "riemann_right", "riemann_middle",
                     "riemann_trapezoid"]
SmoothBase = Literal["gradient", "gradient_x_input", "integrated_gradients", "guided_backprop",
                     "deconvnet", "guided_gradcam"]
SmoothVariant = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


class EngineOptions(TypedDict, total=False):
    """Options every method accepts besides its own parameters."""

    batch_size: int | None  # points per model pass; None sizes batches to the device's memory
    progress: Callable[[int, int], None] | None  # called with (done, total) passes
    cancel: threading.Event | Callable[[], bool] | None  # set/True stops with CancelledError
    memory_budget: int | None  # bytes of autograd state per chunk (automatic when None)
    # How a plain nn.Module's inputs were normalised, (mean, std) per channel: the "black",
    # "white" and "uniform" baselines are built in pixel space through it.
    normalization: tuple[Sequence[float], Sequence[float]] | None


class IntegratedGradientsParams(EngineOptions, total=False):
    """``integrated_gradients``: the path integral from a baseline to the input."""

    steps: int
    baseline: ImageBaseline | TextBaseline | float | torch.Tensor
    quadrature: Quadrature
    baseline_samples: int  # random baselines (uniform, gaussian) averaged
    seed: int


class SmoothGradParams(EngineOptions, total=False):
    """``smoothgrad``: the average of a base method over noisy copies of the input."""

    samples: int
    sigma: float  # noise standard deviation, as a fraction of the input's range
    base: SmoothBase
    variant: SmoothVariant
    seed: int


class CamParams(EngineOptions, total=False):
    """``gradcam``, ``gradcam_plus_plus``, ``hirescam``, ``layercam``, ``xgradcam``: maps over
    a layer's grid."""

    layer: str | nn.Module | None  # module path (see candidate_layers) or the module itself
    upsample: bool  # False keeps the layer's resolution


class CamTargetParams(CamParams, total=False):
    """``cam_for_targets``: a CAM method's parameters and how many top classes."""

    top_k: int | None


class GuidedGradCamParams(EngineOptions, total=False):
    """``guided_gradcam``: Guided Backprop times the upsampled Grad-CAM map."""

    layer: str | nn.Module | None


class MethodParams(EngineOptions, total=False):
    """Every method's keyword parameters in one mapping (``attribute(..., **params)``).

    Each method reads only its own (see the per-method TypedDicts above and
    ``saliency_core.get_method(name).params``); passing one a method does not use raises
    ``ParameterError``. With ``method="smoothgrad"`` the base method's parameters (for
    instance ``steps`` when ``base="integrated_gradients"``) are accepted too.
    """

    steps: int
    baseline: ImageBaseline | TextBaseline | float | torch.Tensor
    quadrature: Quadrature
    baseline_samples: int
    seed: int
    samples: int
    sigma: float
    base: SmoothBase
    variant: SmoothVariant
    layer: str | nn.Module | None
    upsample: bool


#: The per-method parameter mappings, by method name (methods without parameters: EngineOptions).
PARAMS_BY_METHOD: dict[str, type] = {
    "gradient": EngineOptions,
    "gradient_x_input": EngineOptions,
    "integrated_gradients": IntegratedGradientsParams,
    "smoothgrad": SmoothGradParams,
    "guided_backprop": EngineOptions,
    "deconvnet": EngineOptions,
    "gradcam": CamParams,
    "gradcam_plus_plus": CamParams,
    "hirescam": CamParams,
    "layercam": CamParams,
    "xgradcam": CamParams,
    "guided_gradcam": GuidedGradCamParams,
}
