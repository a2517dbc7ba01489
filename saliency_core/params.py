"""The types of the public API's arguments: targets, models and every method's keyword
parameters as TypedDicts, so a type checker (and an editor) knows what ``attribute(...,
steps=64)`` accepts.

The method specs are the one declaration of the parameters: the block between the GENERATED
markers is written from them by ``python -m saliency_core.methods.typed_params --write``
(tests/test_methods_declared_once.py fails, naming that command, when it is out of date), and
PARAMS_BY_METHOD is read from them at import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict, Union

import torch
from torch import nn

from saliency_core.methods import specs as _method_specs

# What to explain is declared with the target values; it is part of the typed API here too.
from saliency_core.targets import Target  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from saliency_core.models.base import LoadedModel

#: A plain ``nn.Module`` (or a callable returning logits), or a model from ``load_model``.
Model = Union[nn.Module, "LoadedModel", Callable[[torch.Tensor], torch.Tensor]]  # a forward reference


class EngineOptions(TypedDict, total=False):
    """Options every method accepts besides its own parameters."""

    batch_size: int | None  # points per model pass; None sizes batches to the device's memory
    progress: Callable[[int, int], None] | None  # called with (done, total) passes
    cancel: threading.Event | Callable[[], bool] | None  # set/True stops with CancelledError
    memory_budget: int | None  # bytes of autograd state per chunk (automatic when None)
    # How a plain nn.Module's inputs were normalised, (mean, std) per channel: the "black",
    # "white" and "uniform" baselines are built in pixel space through it.
    normalization: tuple[Sequence[float], Sequence[float]] | None


# BEGIN GENERATED from the method specs by `python -m saliency_core.methods.typed_params --write`:
# edit the specs (saliency_core/methods), not this block.

#: The choices of integrated_gradients.baseline for image models.
ImageBaseline = Literal["zeros", "black", "white", "blur", "uniform", "gaussian"]
#: The choices of integrated_gradients.baseline for text models.
TextBaseline = Literal["pad", "mask", "unk", "zeros"]
#: The choices of integrated_gradients.quadrature.
Quadrature = Literal["gauss_legendre", "riemann_left", "riemann_right", "riemann_middle",
                     "riemann_trapezoid"]
#: The choices of smoothgrad.base.
SmoothBase = Literal["gradient", "gradient_x_input", "integrated_gradients", "guided_backprop",
                     "deconvnet", "guided_gradcam"]
#: The choices of smoothgrad.variant.
SmoothVariant = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


class IntegratedGradientsParams(EngineOptions, total=False):
    """The keyword parameters of ``integrated_gradients``, as its spec declares them."""

    # Number of gradient evaluations along the path.
    steps: int
    # The reference input the path starts from.
    baseline: ImageBaseline | TextBaseline | float | torch.Tensor
    # Rule for the path integral; Gauss-Legendre converges fastest on smooth paths,
    # left/right/trapezoid grids nest when steps double.
    quadrature: Quadrature
    # Random baselines (uniform, gaussian) averaged, expected-gradients style.
    baseline_samples: int
    # Seed for random baselines.
    seed: int


class SmoothGradParams(EngineOptions, total=False):
    """The keyword parameters of ``smoothgrad``, as its spec declares them."""

    # Noisy copies averaged.
    samples: int
    # Noise std as a fraction of the input's value range.
    sigma: float
    # The method applied to each noisy copy.
    base: SmoothBase
    # Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad).
    variant: SmoothVariant
    # Seed of the noise.
    seed: int


class CamParams(EngineOptions, total=False):
    """The keyword parameters of ``gradcam``, ``gradcam_plus_plus``, ``hirescam``, ``layercam``,
    ``xgradcam``, as their specs declare them."""

    # Module path of the target layer (e.g. layer4, features.28); empty = the model's default, a
    # late spatial layer.
    layer: str | nn.Module | None
    # Bilinear upsampling to the input size; off keeps the layer's own resolution.
    upsample: bool


class AttentionParams(EngineOptions, total=False):
    """The keyword parameters of ``attention_rollout``, ``attention_relevance``, as their specs
    declare them."""

    # Bilinear upsampling to the input size; off keeps the patch grid.
    upsample: bool


class GuidedGradCamParams(EngineOptions, total=False):
    """The keyword parameters of ``guided_gradcam``, as its spec declares them."""

    # Module path of the target layer (e.g. layer4, features.28); empty = the model's default, a
    # late spatial layer.
    layer: str | nn.Module | None


class MethodParams(EngineOptions, total=False):
    """Every method's keyword parameters in one mapping (``attribute(..., **params)``).

    Each method reads only its own (see the per-method TypedDicts above and
    ``saliency_core.get_method(name).params``); passing one a method does not use raises
    ``ParameterError``. With ``method="smoothgrad"`` the base method's parameters (for
    instance ``steps`` when ``base="integrated_gradients"``) are accepted too.
    """

    # Number of gradient evaluations along the path.
    steps: int
    # The reference input the path starts from.
    baseline: ImageBaseline | TextBaseline | float | torch.Tensor
    # Rule for the path integral; Gauss-Legendre converges fastest on smooth paths,
    # left/right/trapezoid grids nest when steps double.
    quadrature: Quadrature
    # Random baselines (uniform, gaussian) averaged, expected-gradients style.
    baseline_samples: int
    # Seed for random baselines.
    seed: int
    # Noisy copies averaged.
    samples: int
    # Noise std as a fraction of the input's value range.
    sigma: float
    # The method applied to each noisy copy.
    base: SmoothBase
    # Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad).
    variant: SmoothVariant
    # Module path of the target layer (e.g. layer4, features.28); empty = the model's default, a
    # late spatial layer.
    layer: str | nn.Module | None
    # Bilinear upsampling to the input size; off keeps the layer's own resolution.
    upsample: bool


# END GENERATED


class CamTargetParams(CamParams, total=False):
    """``cam_for_targets``: a CAM method's parameters and how many top classes."""

    top_k: int | None


#: The per-method parameter mappings, by method name (methods without parameters:
#: EngineOptions), read from the specs: a method whose TypedDict has not been generated yet is
#: missing here (tests/test_api_typing.py says so).
PARAMS_BY_METHOD: dict[str, type] = {
    spec.name: globals()[spec.params_type] for spec in _method_specs() if spec.params_type in globals()
}
