"""Integrated Gradients (Sundararajan et al. 2017) with a choice of quadrature rules."""

from __future__ import annotations

import numpy as np
import torch

from ..baselines import IMAGE_BASELINES, RANDOM_BASELINES
from ..engine import forward_no_grad, logits_of  # noqa: F401 - logits_of re-exported for methods
from ..specs import MethodSpec, Param
from .base import Context, expand_like

QUADRATURES = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
TEXT_BASELINES = ("pad", "mask", "unk", "zeros")

IG_PARAMS = (
    Param("steps", "int", 50, "Number of gradient evaluations along the path.", min=2, max=1024, step=1, label="Steps"),
    Param("baseline", "choice", "black", "The reference input the path starts from.",
          choices=IMAGE_BASELINES, text_choices=TEXT_BASELINES, text_default="pad", label="Baseline"),
    Param("quadrature", "choice", "gauss_legendre",
          "Rule for the path integral; Gauss-Legendre converges fastest on smooth paths, "
          "left/right/trapezoid grids nest when steps double.",
          choices=QUADRATURES, label="Quadrature", advanced=True),
    Param("baseline_samples", "int", 1,
          "Random baselines (uniform, gaussian) averaged, expected-gradients style.",
          min=1, max=64, step=1, label="Baseline samples", advanced=True),
    Param("seed", "int", 0, "Seed for random baselines.", min=0, max=2**31 - 1, step=1, label="Seed", advanced=True),
)

INTEGRATED_GRADIENTS = MethodSpec(
    name="integrated_gradients",
    label="Integrated Gradients",
    description="Gradients averaged along the straight path from a baseline to the input, "
    "times (input − baseline); attributions sum to f(x) − f(baseline).",
    family="input",
    params=IG_PARAMS,
    text=True,
    reference="Sundararajan et al. 2017",
)


def quadrature_rule(name: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) on [0, 1]. Weights sum to 1 for every rule."""
    n = steps
    if name == "gauss_legendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1), 0.5 * w
    if name == "riemann_left":
        return np.arange(n) / n, np.full(n, 1 / n)
    if name == "riemann_right":
        return np.arange(1, n + 1) / n, np.full(n, 1 / n)
    if name == "riemann_middle":
        return (np.arange(n) + 0.5) / n, np.full(n, 1 / n)
    if name == "riemann_trapezoid":
        # n points including both ends; Captum's variant gives the ends 1/(2n) instead of
        # 1/(2(n-1)), so its weights sum to (n-1)/n and its completeness is off by that factor.
        w = np.full(n, 1 / (n - 1))
        w[0] = w[-1] = 1 / (2 * (n - 1))
        return np.linspace(0, 1, n), w
    raise ValueError(name)


def integrate(ctx: Context, x: torch.Tensor, baselines: torch.Tensor, targets: torch.Tensor,
              steps: int, quadrature: str, forward=None) -> torch.Tensor:
    """(x − b) · Σ_k w_k ∇f(b + α_k (x − b)), with every (input, step) point in one stream."""
    alphas_np, weights_np = quadrature_rule(quadrature, steps)
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    diff = x - baselines
    acc = torch.zeros_like(x)

    def make(start, stop):
        idx = torch.arange(start, stop, device=x.device)
        b, k = idx // steps, idx % steps
        return baselines[b] + expand_like(alphas[k], x) * diff[b], targets[b]

    def consume(start, stop, g, _scores, _t):
        idx = torch.arange(start, stop, device=x.device)
        b, k = idx // steps, idx % steps
        acc.index_add_(0, b, g * expand_like(weights[k], x))

    ctx.stream(forward).run(x.shape[0] * steps, make, consume)
    return acc * diff


def integrated_gradients(ctx: Context, x, targets, params, forward=None):
    base_name = params["baseline"]
    m = params["baseline_samples"] if isinstance(base_name, str) and base_name in RANDOM_BASELINES else 1
    seed = params["seed"]
    baselines = torch.cat([ctx.make_baseline(base_name, x, seed=seed, sample=s) for s in range(m)])
    xs = x.repeat(m, *([1] * (x.dim() - 1)))
    ts = targets.repeat(m)
    attr = integrate(ctx, xs, baselines, ts, params["steps"], params["quadrature"], forward)
    attr = attr.view(m, *x.shape).mean(0)
    # Completeness: Σ attributions should equal f(x) − f(baseline) (averaged over baselines).
    f_base = forward_no_grad(forward or ctx.forward, baselines, ctx.stats)
    f_base = f_base.gather(1, ts[:, None]).squeeze(1).view(m, -1).mean(0)
    ctx.meta.setdefault("f_baseline", f_base.detach())
    return attr
