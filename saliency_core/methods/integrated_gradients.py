"""Integrated Gradients (Sundararajan et al. 2017) with a choice of quadrature rules."""

from __future__ import annotations

import functools

import numpy as np
import torch

from saliency_core.engine.stream import forward_no_grad
from saliency_core.methods.base import Context, RefineState, Shelf, key_value
from saliency_core.methods.baselines import IMAGE_BASELINES, RANDOM_BASELINES
from saliency_core.methods.specs import MethodSpec, Param

QUADRATURES = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
TEXT_BASELINES = ("pad", "mask", "unk", "zeros")

IG_PARAMS = (
    Param("steps", "int", 50, "Number of gradient evaluations along the path.", min=2, max=1024, step=1, label="Steps"),
    Param("baseline", "choice", "black", "The reference input the path starts from.",
          choices=IMAGE_BASELINES, text_choices=TEXT_BASELINES, text_default="pad", label="Baseline",
          accepts_tensor=True),
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


@functools.lru_cache(maxsize=64)
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    # An eigenvalue problem of size n: milliseconds per call at n = 128, paid once.
    return np.polynomial.legendre.leggauss(n)


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, w = _leggauss(n)
    return nodes.copy(), w.copy()


def passes(p: dict) -> int:
    """The path's points for every baseline sample, and f(baseline)'s forward."""
    return int(p["steps"]) * max(1, int(p.get("baseline_samples", 1))) + 1


def quadrature_rule(name: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) on [0, 1]. Weights sum to 1 for every rule."""
    n = steps
    if name == "gauss_legendre":
        nodes, w = _gauss_legendre(n)
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


def _segments(start: int, stop: int, steps: int):
    """Runs of consecutive points that belong to one input: (input, first step, last step + 1,
    offset in the chunk). Point i is step i % steps of input i // steps."""
    i = start
    while i < stop:
        b, k = divmod(i, steps)
        end = min(stop, (b + 1) * steps)
        yield b, k, k + end - i, i - start
        i = end


def path_gradients(ctx: Context, x: torch.Tensor, baselines: torch.Tensor, targets: torch.Tensor,
                   alphas: torch.Tensor, weights: torch.Tensor, forward=None,
                   on_scores=None) -> torch.Tensor:
    """Σ_k w_k ∇f(b + α_k (x − b)) for each input (not yet times x − b), with every
    (input, node) point in one stream. ``on_scores(input, step, scores)`` sees the target's
    score at each point, e.g. f(baseline) at a node α = 0."""
    steps = alphas.shape[0]
    alphas = alphas.to(device=x.device, dtype=x.dtype)
    weights = weights.to(device=x.device, dtype=x.dtype)
    diff = x - baselines
    acc = torch.zeros_like(x)
    shape = (-1, *([1] * (x.dim() - 1)))

    def make(start, stop):
        segments = list(_segments(start, stop, steps))
        if len(segments) == 1:  # one input's run of steps: no copies at all for the targets
            b, k0, k1, _o = segments[0]
            return torch.addcmul(baselines[b], alphas[k0:k1].view(shape), diff[b]), targets[b:b + 1].expand(k1 - k0)
        points = torch.empty((stop - start, *x.shape[1:]), dtype=x.dtype, device=x.device)
        tgt = torch.empty(stop - start, dtype=torch.long, device=x.device)
        for b, k0, k1, o in segments:
            # One fused pass per input's run of steps: baseline + α (x − baseline).
            torch.addcmul(baselines[b], alphas[k0:k1].view(shape), diff[b], out=points[o:o + k1 - k0])
            tgt[o:o + k1 - k0] = targets[b]
        return points, tgt

    def consume(start, stop, g, scores, _t):
        # Outside any autocast the caller runs the model under: the sum stays in full precision.
        with torch.autocast(x.device.type, enabled=False):
            for b, k0, k1, o in _segments(start, stop, steps):
                # A weighted sum over the run as one matrix-vector product, instead of
                # scaling every gradient and scattering it with index_add.
                acc[b] += (weights[k0:k1] @ g[o:o + k1 - k0].reshape(k1 - k0, -1)).view(x.shape[1:])
                if on_scores is not None:
                    on_scores(b, k0, scores[o:o + k1 - k0])

    ctx.stream(forward).run(x.shape[0] * steps, make, consume)
    return acc


def integrate(ctx: Context, x: torch.Tensor, baselines: torch.Tensor, targets: torch.Tensor,
              steps: int, quadrature: str, forward=None, on_scores=None) -> torch.Tensor:
    """(x − b) · Σ_k w_k ∇f(b + α_k (x − b)) with the given quadrature rule."""
    alphas, weights = quadrature_rule(quadrature, steps)
    acc = path_gradients(ctx, x, baselines, targets, torch.as_tensor(alphas), torch.as_tensor(weights),
                         forward, on_scores)
    return acc * (x - baselines)


def integrated_gradients(ctx: Context, x, targets, params, forward=None):
    base_name = params["baseline"]
    m = params["baseline_samples"] if isinstance(base_name, str) and base_name in RANDOM_BASELINES else 1
    seed = params["seed"]
    drawn = [ctx.make_baseline(base_name, x, seed=seed, sample=s) for s in range(m)]
    baselines = drawn[0] if m == 1 else torch.cat(drawn)
    xs = x if m == 1 else x.repeat(m, *([1] * (x.dim() - 1)))
    ts = targets if m == 1 else targets.repeat(m)
    # Completeness needs f(baseline); rules with a node at α = 0 evaluate it on the way.
    at_zero = {}
    starts_at_zero = params["quadrature"] in ("riemann_left", "riemann_trapezoid")

    def keep_baseline_score(b, k0, scores):
        if k0 == 0:
            at_zero[b] = scores[0]

    on_scores = keep_baseline_score if ctx.want_completeness and starts_at_zero else None
    attr = integrate(ctx, xs, baselines, ts, params["steps"], params["quadrature"], forward, on_scores)
    attr = attr if m == 1 else attr.view(m, *x.shape).mean(0)
    if ctx.want_completeness:
        if len(at_zero) == xs.shape[0]:
            f_base = torch.stack([at_zero[b] for b in range(xs.shape[0])])
        else:
            f_base = forward_no_grad(forward or ctx.forward, baselines, ctx.stats, ctx.options)
            f_base = ctx.score(f_base, ts)[0]  # the score the path differentiates
        ctx.meta.setdefault("f_baseline", f_base.detach().view(m, -1).mean(0))
    return attr


def completeness(ctx: Context, attr: torch.Tensor, score: torch.Tensor) -> dict:
    """Per-sample f(x), f(baseline), the attributions' sum and how far it is from
    f(x) - f(baseline): the axiom Integrated Gradients is built to satisfy."""
    f_b = ctx.meta["f_baseline"].cpu()
    total = attr.detach().flatten(1).sum(1).cpu()
    f_x = score.detach().cpu()
    return {"f_x": f_x.tolist(), "f_baseline": f_b.tolist(), "sum_attribution": total.tolist(),
            "completeness_delta": (total - (f_x - f_b)).tolist()}


# Refinement --------------------------------------------------------------------------------
# Riemann left and right grids nest when the step count is multiplied (n -> 2n keeps every old
# node); the trapezoid grid nests when its intervals are (n points -> 2n - 1 points). Their
# weights are uniform (the trapezoid's two ends at half weight, whatever n), so one running
# sum of the gradients evaluated so far is all the state a refinement needs.

NESTED_RULES = ("riemann_left", "riemann_right", "riemann_trapezoid")


def _nodes(quadrature: str, n: int):
    """Grid indices j of the nodes j / d of an n-step rule, and d."""
    if quadrature == "riemann_left":
        return np.arange(n), n
    if quadrature == "riemann_right":
        return np.arange(1, n + 1), n
    return np.arange(n), n - 1  # trapezoid: both ends included


def refines(quadrature: str, old: int, new: int) -> bool:
    """Whether every node of the old grid is a node of the new one."""
    _, d_old = _nodes(quadrature, old)
    _, d_new = _nodes(quadrature, new)
    return new > old and d_old > 0 and d_new % d_old == 0


def nested_counts(quadrature: str, n: int) -> list[int]:
    """Step counts below n whose grids the n-step grid contains, smallest first (empty for
    rules whose nodes never nest)."""
    if quadrature not in NESTED_RULES:
        return []
    return [m for m in range(2 if quadrature == "riemann_trapezoid" else 1, n) if refines(quadrature, m, n)]


def refine_nested(p: dict, base_p: dict | None, steps: int) -> list[int]:
    """Step counts below ``steps`` whose evaluations a run at ``steps`` reuses."""
    return nested_counts(p["quadrature"], steps)


def refine(ctx: Context, x, targets, p: dict, shelf: Shelf):
    """Integrated Gradients at p["steps"], evaluating only the nodes no kept run has.
    Returns (attribution, points reused)."""
    steps, rule = p["steps"], p["quadrature"]
    if rule not in NESTED_RULES:
        return integrated_gradients(ctx, x, targets, p), 0
    key = tuple(sorted((k, key_value(v)) for k, v in p.items() if k != "steps"))
    random_base = isinstance(p["baseline"], str) and p["baseline"] in RANDOM_BASELINES
    m = p["baseline_samples"] if random_base else 1
    baselines = torch.cat([ctx.make_baseline(p["baseline"], x, seed=p["seed"], sample=s) for s in range(m)])
    xs = x.repeat(m, *([1] * (x.dim() - 1)))
    ts = targets.repeat(m)
    index, denominator = _nodes(rule, steps)
    state = shelf.best(key, lambda c: c == steps or refines(rule, c, steps))
    # (count, gradient sum) of the kept run to build on; a state without sums has nothing to reuse.
    kept = (state.count, state.sums) if state is not None and state.sums is not None else None
    if kept is not None and kept[0] == steps:
        sums, reused = kept[1], steps * xs.shape[0]
    else:
        reused = 0
        if kept is not None:
            _, old_d = _nodes(rule, kept[0])
            ratio = denominator // old_d
            index = index[index % ratio != 0]  # the old grid is every ratio-th node
            reused = kept[0] * xs.shape[0]
            sums = kept[1]
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
        f_baseline = forward_no_grad(ctx.forward, baselines, ctx.stats, ctx.options)
        f_baseline = ctx.score(f_baseline, ts)[0].view(m, -1).mean(0)
    ctx.meta["f_baseline"] = f_baseline
    shelf.keep(RefineState(key=key, count=steps, sums=sums, f_baseline=f_baseline))
    attr = sums / denominator * (xs - baselines)
    return attr.view(m, *x.shape).mean(0), reused
