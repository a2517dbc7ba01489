"""SmoothGrad (Smilkov et al. 2017) and its variants, as a wrapper around any input-space
method: the base method runs once on all noisy copies, so every point shares one stream."""

from __future__ import annotations

import torch

from ..noise import NoiseSource
from ..specs import MethodSpec, Param

SMOOTHABLE = ("gradient", "gradient_x_input", "integrated_gradients", "guided_backprop", "deconvnet")

SMOOTHGRAD = MethodSpec(
    name="smoothgrad",
    label="SmoothGrad",
    description="Average of a base method over noisy copies of the input; removes the "
    "high-frequency speckle of raw gradients.",
    family="input",
    params=(
        Param("samples", "int", 32, "Noisy copies averaged.", min=1, max=1024, step=1, label="Samples"),
        Param("sigma", "float", 0.15, "Noise std as a fraction of the input's value range.",
              min=0.0, max=1.0, step=0.01, label="Noise σ"),
        Param("base", "method", "gradient", "The method applied to each noisy copy.",
              choices=SMOOTHABLE, label="Base method"),
        Param("variant", "choice", "smoothgrad",
              "Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad).",
              choices=("smoothgrad", "smoothgrad_sq", "vargrad"), label="Variant"),
        Param("seed", "int", 0, "Seed of the noise.", min=0, max=2**31 - 1, step=1, label="Seed", advanced=True),
    ),
    text=True,
    reference="Smilkov et al. 2017; Adebayo et al. 2018 (VarGrad)",
)


def noisy_copies(x: torch.Tensor, samples: int, sigma: float, seed: int) -> torch.Tensor:
    """[N * samples, ...] copies; copy s of input i is the same whatever the total count, so
    doubling the samples extends, rather than replaces, an earlier estimate."""
    return NoiseSource(x, sigma, seed).take(samples)


def smooth(base_fn, ctx, x, targets, params, base_params):
    s = params["samples"]
    noisy = noisy_copies(x, s, params["sigma"], params["seed"])
    attr = base_fn(ctx, noisy, targets.repeat_interleave(s), base_params)
    attr = attr.view(x.shape[0], s, *attr.shape[1:])
    variant = params["variant"]
    if variant == "smoothgrad":
        return attr.mean(1)
    if variant == "smoothgrad_sq":
        return (attr * attr).mean(1)
    mean = attr.mean(1)
    return (attr * attr).mean(1) - mean * mean
