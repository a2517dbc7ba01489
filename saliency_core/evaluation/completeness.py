"""Integrated Gradients' completeness (attributions sum to f(x) - f(baseline)) and steps chosen
automatically until it holds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from saliency_core.errors import SaliencyError
from saliency_core.methods.baselines import RANDOM_BASELINES


def completeness(explanation) -> dict[str, np.ndarray]:
    """Per sample: f(x), f(baseline), the attributions' sum, the gap Σattr − (f(x) − f(b)) and
    the gap relative to |f(x) − f(b)|, from an integrated_gradients Explanation."""
    meta = explanation.metadata
    missing = [k for k in ("f_x", "f_baseline", "sum_attribution", "completeness_delta") if k not in meta]
    if missing:
        raise SaliencyError(
            f"completeness needs an Integrated Gradients explanation; this one ({meta.get('method')}) "
            f"lacks {', '.join(missing)}"
        )
    f_x, f_b = np.asarray(meta["f_x"]), np.asarray(meta["f_baseline"])
    delta = np.asarray(meta["completeness_delta"])
    return {
        "f_x": f_x,
        "f_baseline": f_b,
        "sum_attribution": np.asarray(meta["sum_attribution"]),
        "delta": delta,
        "relative_delta": _relative(delta, f_x - f_b),
    }


def _relative(delta: np.ndarray, gap: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(delta) / np.abs(gap)
    return np.where(np.abs(gap) > 0, rel, np.where(np.abs(delta) > 0, np.inf, 0.0))


@dataclass
class AutoStepsResult:
    """Integrated Gradients with as many steps as completeness needed, per sample."""

    attribution: torch.Tensor
    target: np.ndarray  # [N] classes explained
    steps: np.ndarray  # [N] intervals of the trapezoid rule used for each sample
    delta: np.ndarray  # [N] Σattr − (f(x) − f(baseline))
    relative_delta: np.ndarray  # [N] |delta| / |f(x) − f(baseline)|
    converged: np.ndarray  # [N] bool, relative_delta < tol
    tol: float
    history: list[dict] = field(default_factory=list)  # per round: steps, relative deltas


def integrated_gradients_auto(model, inputs: torch.Tensor, target="predicted", tol: float = 0.01,
                              start_steps: int = 16, max_steps: int = 512,
                              progress: Callable[[int, int], None] | None = None,
                              **params) -> AutoStepsResult:
    """Integrated Gradients with steps doubled until |completeness gap| < tol·|f(x) − f(b)|
    for every sample, or ``max_steps`` is reached.

    The path integral uses the trapezoid rule on a grid that nests when the intervals double:
    the finer rule is the average of the coarser one and the midpoint rule on the same
    intervals, T(2m) = (T(m) + M(m)) / 2, so each round only evaluates the new midpoints and
    no gradient is computed twice. Samples that have converged stop being refined.
    ``params`` go to the method (baseline, baseline_samples, seed, batch_size, ...).
    """
    from saliency_core.api import attribute, explain

    for key in ("steps", "quadrature"):
        if key in params:
            raise SaliencyError(f"{key} is chosen automatically here; use start_steps/max_steps")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise SaliencyError(f"tol must be a positive number; got {tol!r}")
    if not (isinstance(start_steps, int) and 1 <= start_steps <= max_steps):
        raise SaliencyError("start_steps must be an integer between 1 and max_steps")
    if start_steps > 1023:
        raise SaliencyError("start_steps must be at most 1023 (the method's step limit)")
    first = explain(model, inputs, "integrated_gradients", target, steps=start_steps + 1,
                    quadrature="riemann_trapezoid", **params)
    targets = first.target
    info = completeness(first)
    gap = info["f_x"] - info["f_baseline"]
    attr = first.attribution.clone()
    n = attr.shape[0]
    steps = np.full(n, start_steps)
    delta = info["delta"].copy()
    rel = info["relative_delta"].copy()
    history = [{"steps": start_steps, "relative_delta": rel.tolist()}]
    # Random and per-sample tensor baselines are drawn per position in the batch, so a subset
    # would get different baselines: those refine the whole batch together.
    baseline = params.get("baseline", "black")
    can_subset = isinstance(baseline, str) and baseline not in RANDOM_BASELINES
    rounds = math.floor(math.log2(max_steps / start_steps))
    for r in range(rounds):
        todo = np.flatnonzero(rel >= tol)
        if todo.size == 0:
            break
        if not can_subset:
            todo = np.arange(n)
        m = start_steps * 2**r
        idx = torch.as_tensor(todo, dtype=torch.long, device=attr.device)
        mid = attribute(model, inputs[idx.to(inputs.device)], "integrated_gradients",
                        targets[todo].tolist(), steps=m, quadrature="riemann_middle", **params)
        attr[idx] = 0.5 * (attr[idx] + mid.to(attr.device))
        sums = attr[idx].detach().flatten(1).sum(1).double().cpu().numpy()
        delta[todo] = sums - gap[todo]
        rel[todo] = _relative(delta[todo], gap[todo])
        steps[todo] = 2 * m
        history.append({"steps": 2 * m, "relative_delta": rel.tolist()})
        if progress is not None:
            progress(r + 1, rounds)
    return AutoStepsResult(attr, targets.numpy(), steps, delta, rel, rel < tol, float(tol), history)
