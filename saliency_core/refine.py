"""Incremental refinement: a finer Integrated Gradients or SmoothGrad estimate that reuses
every gradient evaluation of a coarser one.

- Riemann left and right grids nest when the step count is multiplied (n -> 2n keeps every
  old node); the trapezoid grid nests when its intervals are (n points -> 2n - 1 points).
  Their weights are uniform (the trapezoid's two ends at half weight, whatever n), so one
  running sum of the gradients evaluated so far is all the state a refinement needs.
- Seeded noisy copies always nest (copy s is the same whatever the count), so going from
  n to m samples evaluates only copies n .. m - 1.

Going from n to 2n therefore costs n new evaluations, half of starting over. The sums of the
last few counts are kept, so a count that was already evaluated (going back down, say from
64 to 32 after 16 -> 32 -> 64) costs no model pass, and a refinement starts from the largest
kept count whose grid it contains (50 -> 75 reuses a kept 25). Other changes
(another quadrature, baseline, sigma, or a step count whose grid does not contain the old
one) start over, so ``explain`` always returns what ``saliency_core.explain`` would.

    refiner = Refiner(model, x, "integrated_gradients", target=3, quadrature="riemann_right")
    coarse = refiner.explain(steps=32)
    fine = refiner.explain(steps=64)   # 32 new evaluations, not 64
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .api import (
    Explanation,
    _image_baseline,
    _jsonable,
    check_inputs,
    metadata,
    resolve_targets,
    split_params,
    unwrap_model,
)
from .baselines import RANDOM_BASELINES
from .engine import Stats, check_targets, forward_no_grad, model_lock, module_device
from .errors import MethodNotApplicableError
from .methods import get as method_entry
from .methods.base import Context
from .methods.integrated_gradients import integrated_gradients, path_gradients
from .noise import NoiseSource

REFINABLE = {"integrated_gradients": "steps", "smoothgrad": "samples"}
NESTED_RULES = ("riemann_left", "riemann_right", "riemann_trapezoid")
# Kept sums per Refiner: each is one input-sized tensor (two for SmoothGrad).
KEPT_STATES = 8


def _nodes(quadrature: str, n: int) -> np.ndarray:
    """Grid indices j of the nodes j / d of an n-step rule, and d."""
    if quadrature == "riemann_left":
        return np.arange(n), n
    if quadrature == "riemann_right":
        return np.arange(1, n + 1), n
    return np.arange(n), n - 1  # trapezoid: both ends included


def _refines(quadrature: str, old: int, new: int) -> bool:
    """Whether every node of the old grid is a node of the new one."""
    _, d_old = _nodes(quadrature, old)
    _, d_new = _nodes(quadrature, new)
    return new > old and d_old > 0 and d_new % d_old == 0


def nested_counts(quadrature: str, n: int) -> list[int]:
    """Step counts below n whose grids the n-step grid contains, smallest first (empty for
    rules whose nodes never nest)."""
    if quadrature not in NESTED_RULES:
        return []
    return [m for m in range(2 if quadrature == "riemann_trapezoid" else 1, n) if _refines(quadrature, m, n)]


@dataclass
class _State:
    key: tuple  # every parameter but the refinable count
    count: int  # steps or samples evaluated so far
    sums: torch.Tensor  # IG: weighted gradient sum; SmoothGrad: sum of attributions
    squares: torch.Tensor | None = None  # SmoothGrad: sum of squared attributions
    noise: NoiseSource | None = None
    f_baseline: torch.Tensor | None = None


class Refiner:
    """Explanations of one input batch with one method, refinable in steps or samples."""

    def __init__(self, model, inputs: torch.Tensor, method: str, target="predicted", **params):
        if method not in REFINABLE:
            raise MethodNotApplicableError(
                f"refinement applies to {', '.join(REFINABLE)}; {method!r} evaluates no sequence of points"
            )
        self.fn, self.module, self.facts = unwrap_model(model)
        self.kind = self.facts["kind"] or "image"
        check_inputs(inputs, "input", self.kind)
        self.method = method
        self.inputs = inputs
        self.params = params
        self.device = module_device(self.module) if self.module is not None else inputs.device
        self.x = inputs.detach().to(self.device)
        self.target = target
        self._logits: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._range: tuple[int, int] | None = None
        self._states: list[_State] = []  # most recently used last

    def attribute(self, **changes) -> torch.Tensor:
        return self.explain(**changes).attribution

    def explain(self, **changes) -> Explanation:
        params = {**self.params, **changes}
        p, base_p, options = split_params(self.method, params, self.kind)
        ctx = Context(forward=self.fn, module=self.module, device=self.device, options=options,
                      stats=Stats(), kind=self.kind, normalization=self.facts["normalization"],
                      default_layer=self.facts["default_layer"],
                      make_baseline=partial(_image_baseline, normalization=self.facts["normalization"]),
                      want_completeness=self.method == "integrated_gradients")
        start = time.perf_counter()
        with model_lock(self.module):
            if self._logits is None:
                self._logits = forward_no_grad(self.fn, self.x, ctx.stats)
                self._targets = resolve_targets(self.target, self.x.shape[0], self.device, lambda: self._logits)
                check_targets(self._targets, self._logits.shape[1])
                self._range = (int(self._targets.min()), int(self._targets.max()))
            ctx.target_range = self._range
            if self.method == "integrated_gradients":
                attr, reused = self._integrated_gradients(ctx, p)
            else:
                attr, reused = self._smoothgrad(ctx, p, base_p)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ctx.meta["time_s"] = time.perf_counter() - start
        ctx.meta["params"] = {**_jsonable(p), **(_jsonable(base_p) if base_p else {})}
        targets = self._targets
        score = self._logits.gather(1, targets[:, None]).squeeze(1)
        meta = metadata(ctx, self.method, attr, score)
        meta.update(target=targets.tolist(), reused_passes=reused)
        return Explanation(
            attribution=attr.to(self.inputs.device),
            target=targets.cpu(),
            score=score.cpu(),
            predicted=self._logits.argmax(1).cpu(),
            probabilities=torch.softmax(self._logits.float(), 1).cpu(),
            metadata=meta,
        )

    def _best(self, key: tuple, usable) -> _State | None:
        """The kept state of these parameters with the largest count that ``usable`` accepts."""
        fits = [s for s in self._states if s.key == key and usable(s.count)]
        return max(fits, key=lambda s: s.count, default=None)

    def _keep(self, state: _State) -> None:
        self._states = [s for s in self._states if (s.key, s.count) != (state.key, state.count)]
        self._states.append(state)
        del self._states[:-KEPT_STATES]

    # Integrated Gradients -------------------------------------------------------------

    def _integrated_gradients(self, ctx: Context, p: dict):
        steps, rule = p["steps"], p["quadrature"]
        key = tuple(sorted((k, _key_value(v)) for k, v in p.items() if k != "steps"))
        random_base = isinstance(p["baseline"], str) and p["baseline"] in RANDOM_BASELINES
        if rule not in NESTED_RULES:
            return integrated_gradients(ctx, self.x, self._targets, p), 0
        x = self.x
        m = p["baseline_samples"] if random_base else 1
        baselines = torch.cat([ctx.make_baseline(p["baseline"], x, seed=p["seed"], sample=s) for s in range(m)])
        xs = x.repeat(m, *([1] * (x.dim() - 1)))
        ts = self._targets.repeat(m)
        index, denominator = _nodes(rule, steps)
        state = self._best(key, lambda c: c == steps or _refines(rule, c, steps))
        if state is not None and state.count == steps:
            sums, reused = state.sums, steps * xs.shape[0]
        else:
            reused = 0
            if state is not None:
                _, old_d = _nodes(rule, state.count)
                ratio = denominator // old_d
                index = index[index % ratio != 0]  # the old grid is every ratio-th node
                reused = state.count * xs.shape[0]
                sums = state.sums
            else:
                sums = torch.zeros_like(xs)
            alphas = torch.as_tensor(index / denominator)
            # Trapezoid ends weigh half an interior node, at every resolution.
            weights = torch.ones(len(index), dtype=torch.float64)
            if rule == "riemann_trapezoid":
                weights[(index == 0) | (index == denominator)] = 0.5
            sums = sums + path_gradients(ctx, xs, baselines, ts, alphas, weights)
        f_baseline = state.f_baseline if state is not None else None
        if f_baseline is None:
            f_baseline = forward_no_grad(ctx.forward, baselines, ctx.stats).gather(1, ts[:, None]).squeeze(1)
            f_baseline = f_baseline.view(m, -1).mean(0)
        ctx.meta["f_baseline"] = f_baseline
        self._keep(_State(key=key, count=steps, sums=sums, f_baseline=f_baseline))
        attr = sums / denominator * (xs - baselines)
        return attr.view(m, *x.shape).mean(0), reused

    # SmoothGrad -------------------------------------------------------------------------

    def _smoothgrad(self, ctx: Context, p: dict, base_p: dict):
        samples = p["samples"]
        own = {k: _key_value(v) for k, v in p.items() if k not in ("samples", "variant")}
        key = tuple(sorted(own.items())) + tuple(sorted((k, _key_value(v)) for k, v in base_p.items()))
        # A random IG baseline is drawn per noisy copy's position in the batch, which an
        # increment would shift; such runs start over (or reuse an identical count).
        nests = not (p["base"] == "integrated_gradients" and base_p.get("baseline") in RANDOM_BASELINES)
        state = self._best(key, lambda c: c == samples or (nests and c < samples))
        if state is None:
            state = _State(key=key, count=0, sums=None, squares=None,
                           noise=NoiseSource(self.x, p["sigma"], p["seed"]))
        reused = state.count * self.x.shape[0]
        new = samples - state.count
        if new:
            state.noise.drawn = state.count  # copies are handed out in order from here
            noisy = state.noise.take(new)
            base = method_entry(p["base"]).compute
            attr = base(ctx, noisy, self._targets.repeat_interleave(new), base_p)
            attr = attr.view(self.x.shape[0], new, *attr.shape[1:])
            sums, squares = attr.sum(1), (attr * attr).sum(1)
            if state.sums is not None:
                sums, squares = state.sums + sums, state.squares + squares
        else:
            sums, squares = state.sums, state.squares
        self._keep(_State(key=key, count=samples, sums=sums, squares=squares, noise=state.noise))
        mean = sums / samples
        if p["variant"] == "smoothgrad":
            return mean, reused
        if p["variant"] == "smoothgrad_sq":
            return squares / samples, reused
        return squares / samples - mean * mean, reused


def _key_value(v):
    """Parameters as comparable keys; a tensor baseline by identity and content."""
    if isinstance(v, torch.Tensor):
        return ("tensor", id(v), tuple(v.shape), float(v.double().sum()))
    return v
