"""SmoothGrad (Smilkov et al. 2017) and its variants, as a wrapper around any input-space
method: the base method runs once on all noisy copies, so every point shares one stream."""

from __future__ import annotations

import torch

from saliency_core.methods.base import Context, RefineState, Shelf, key_value
from saliency_core.methods.baselines import RANDOM_BASELINES
from saliency_core.methods.noise import NoiseSource
from saliency_core.methods.specs import MethodSpec, Param

# The "base" choices are left empty here: the registry (methods/__init__.py) offers every
# method declared smoothable there, so a new method is smoothed without an edit here.
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
              label="Base method", type_name="SmoothBase"),
        Param("variant", "choice", "smoothgrad",
              "Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad).",
              choices=("smoothgrad", "smoothgrad_sq", "vargrad"), label="Variant",
              type_name="SmoothVariant"),
        Param("seed", "int", 0, "Seed of the noise.", min=0, max=2**31 - 1, step=1, label="Seed", advanced=True),
    ),
    text=True,
    reference="Smilkov et al. 2017; Adebayo et al. 2018 (VarGrad)",
    params_type="SmoothGradParams",
)


def noisy_copies(x: torch.Tensor, samples: int, sigma: float, seed: int) -> torch.Tensor:
    """[N * samples, ...] copies; copy s of input i is the same whatever the total count, so
    doubling the samples extends, rather than replaces, an earlier estimate."""
    return NoiseSource(x, sigma, seed).take(samples)


def _on_copies(base, ctx, noisy, targets, per_input: int, base_params):
    """The base method on every noisy copy at once: [N, copies, ...]."""
    attr = base.compute(ctx, noisy, targets.repeat_interleave(per_input), base_params)
    return attr.view(-1, per_input, *attr.shape[1:])


def combine_samples(variant: str, sums, squares, count: int):
    """The variant's statistic from the running sum and sum of squares over ``count`` noisy
    samples: what callers that fold samples as they come (language models) need."""
    mean = sums / count
    if variant == "smoothgrad":
        return mean
    if variant == "smoothgrad_sq":
        return squares / count
    return squares / count - mean * mean


def smooth(ctx: Context, x, targets, params, base, base_params):
    """SmoothGrad around ``base`` (a registered Method), as Captum's NoiseTunnel wraps any
    attribution method."""
    s = params["samples"]
    attr = _on_copies(base, ctx, noisy_copies(x, s, params["sigma"], params["seed"]), targets, s,
                      base_params)
    variant = params["variant"]
    if variant == "smoothgrad":
        return attr.mean(1)
    if variant == "smoothgrad_sq":
        return (attr * attr).mean(1)
    mean = attr.mean(1)
    return (attr * attr).mean(1) - mean * mean


def passes(p: dict) -> int:
    """The base method runs once per noisy copy."""
    return int(p["samples"])


def refine_nested(p: dict, base_p: dict, samples: int) -> list[int]:
    """Sample counts below ``samples`` whose copies a run at ``samples`` reuses: all of them,
    unless a random baseline is drawn per copy's position (see refine)."""
    return [] if base_p.get("baseline") in RANDOM_BASELINES else list(range(1, samples))


def refine(ctx: Context, x, targets, p: dict, base, base_p: dict, shelf: Shelf):
    """SmoothGrad at p["samples"], evaluating only copies no kept run has: seeded copies
    nest (copy s is the same whatever the count). Returns (attribution, points reused)."""
    samples = p["samples"]
    own = {k: key_value(v) for k, v in p.items() if k not in ("samples", "variant")}
    key = tuple(sorted(own.items())) + tuple(sorted((k, key_value(v)) for k, v in base_p.items()))
    # A random baseline is drawn per noisy copy's position in the batch, which an increment
    # would shift; such runs start over (or reuse an identical count).
    nests = base_p.get("baseline") not in RANDOM_BASELINES
    state = shelf.best(key, lambda c: c == samples or (nests and c < samples))
    if state is None:
        state = RefineState(key=key, count=0, sums=None)
    # Copies are seeded and nested, so a fresh source hands out the same copies a kept one would.
    noise = state.noise if state.noise is not None else NoiseSource(x, p["sigma"], p["seed"])
    reused = state.count * x.shape[0]
    new = samples - state.count
    sums, squares = state.sums, state.squares
    if new:
        noise.drawn = state.count  # copies are handed out in order from here
        attr = _on_copies(base, ctx, noise.take(new), targets, new, base_p)
        more_sums, more_squares = attr.sum(1), (attr * attr).sum(1)
        sums = more_sums if sums is None else sums + more_sums
        squares = more_squares if squares is None else squares + more_squares
    shelf.keep(RefineState(key=key, count=samples, sums=sums, squares=squares, noise=noise))
    return combine_samples(p["variant"], sums, squares, samples), reused
