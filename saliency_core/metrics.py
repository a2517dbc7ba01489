"""Evaluation of attribution maps: how alike two maps are, how faithful a map is to the model
(deletion / insertion), how well it localises a known object, and Integrated Gradients'
completeness.

Maps come in two shapes: input-shaped attributions [N, C, H, W] (or [C, H, W]) and CAM maps
[N, H, W] (or [H, W]); every function here reduces them to one 2-D map per sample first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .baselines import RANDOM_BASELINES
from .engine import FORWARD, GradientStream, Options, Stats, forward_no_grad
from .errors import InputShapeError, SaliencyError

SIMILARITY_METRICS = ("spearman_abs", "spearman_signed", "ssim", "hog")
SUBSTRATES = ("blur", "mean")
ENERGIES = ("positive", "absolute")


# ---------------------------------------------------------------------------------------------
# Maps as 2-D arrays


def to_maps(attribution, mode: str = "abs") -> np.ndarray:
    """Attribution -> float64 [N, H, W]: channels summed signed (``mode="signed"``) or as
    absolute values (``mode="abs"``). Adebayo et al. take absolute values before summing over
    channels, so opposite-signed channels cannot cancel in the "absolute" view.
    A 3-D array is read as [N, H, W] CAM maps; use ``[None]`` for a single [C, H, W] map."""
    if mode not in ("abs", "signed"):
        raise SaliencyError(f"mode must be 'abs' or 'signed', got {mode!r}")
    if isinstance(attribution, torch.Tensor):
        attribution = attribution.detach().double().cpu().numpy()
    a = np.asarray(attribution, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        return np.abs(a).sum(1) if mode == "abs" else a.sum(1)
    if a.ndim == 3:
        return np.abs(a) if mode == "abs" else a
    raise InputShapeError(
        f"an attribution must be [H, W], [N, H, W] or [N, C, H, W]; got shape {a.shape}"
    )


def _maps_of(attribution, batch: bool, mode: str) -> np.ndarray:
    """Like to_maps, but an unbatched [C, H, W] input-space map counts as one sample."""
    if not batch:
        a = attribution.detach().cpu().numpy() if isinstance(attribution, torch.Tensor) else np.asarray(attribution)
        if a.ndim == 3:
            attribution = a[None]
    return to_maps(attribution, mode)


def unit_range(map2d: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """An absolute map scaled to [0, 1] by its own percentile, so maps of different scale
    (a randomized model's gradients can be orders of magnitude smaller) are compared on a
    common range; one hot pixel does not flatten the rest."""
    m = np.abs(map2d)
    top = np.percentile(m, percentile)
    if not np.isfinite(top) or top <= 0:
        top = m.max()
    if top <= 0 or not np.isfinite(top):
        return np.zeros_like(m)
    return np.clip(m / top, 0.0, 1.0)


def _constant(a: np.ndarray) -> bool:
    return bool(np.ptp(a) == 0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; two constant vectors count as identical (1), one constant
    vector against a varying one as unrelated (0), instead of NaN."""
    ca, cb = _constant(a), _constant(b)
    if ca or cb:
        return 1.0 if (ca and cb) else 0.0
    a = a - a.mean()
    b = b - b.mean()
    return float(np.clip((a @ b) / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def _rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, method="average")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get average ranks)."""
    a, b = np.ravel(a), np.ravel(b)
    if a.shape != b.shape:
        raise InputShapeError(f"maps differ in size: {a.size} vs {b.size} values")
    return _pearson(_rank(a), _rank(b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two absolute maps, each scaled to [0, 1] first."""
    from skimage.metrics import structural_similarity

    a, b = unit_range(a), unit_range(b)
    if a.shape != b.shape:
        raise InputShapeError(f"maps differ in shape: {a.shape} vs {b.shape}")
    win = min(7, *a.shape)
    win -= 1 - win % 2  # odd window no larger than the map
    if win < 3:
        return float(np.allclose(a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def hog_features(map2d: np.ndarray) -> np.ndarray:
    """Histogram-of-oriented-gradients features of a map scaled to [0, 1]; cells adapt to the
    map so 8 x 8 CAMs and 224 x 224 maps both give a meaningful descriptor."""
    from skimage.feature import hog

    m = unit_range(map2d)
    side = min(m.shape)
    cell = max(2, side // 8)
    if side < 2 * cell:
        return m.ravel()
    return hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
               feature_vector=True)


def hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the two maps' HOG features."""
    return _pearson(hog_features(a), hog_features(b))


def similarities(original, other, batch: bool = True) -> dict[str, np.ndarray]:
    """Every similarity of ``other`` to ``original``, per sample.

    Spearman of absolute maps and of signed maps, SSIM and HOG similarity of the absolute maps
    (scaled to [0, 1]). Returns {metric: float array [N]}; 1 means the same map.
    """
    abs_a, abs_b = _maps_of(original, batch, "abs"), _maps_of(other, batch, "abs")
    sig_a, sig_b = _maps_of(original, batch, "signed"), _maps_of(other, batch, "signed")
    if abs_a.shape != abs_b.shape:
        raise InputShapeError(f"maps differ in shape: {abs_a.shape} vs {abs_b.shape}")
    out = {name: np.empty(abs_a.shape[0]) for name in SIMILARITY_METRICS}
    for i in range(abs_a.shape[0]):
        out["spearman_abs"][i] = spearman(abs_a[i], abs_b[i])
        out["spearman_signed"][i] = spearman(sig_a[i], sig_b[i])
        out["ssim"][i] = ssim(abs_a[i], abs_b[i])
        out["hog"][i] = hog_similarity(abs_a[i], abs_b[i])
    return out


# ---------------------------------------------------------------------------------------------
# Calling the model


def _model_parts(model):
    """(forward, device, facts). The forward holds the model's lock: while another session's
    attribution has hooks on the shared model, a forward pass here would run those hooks too
    (a CAM hook would capture our activations instead of its own)."""
    from .api import unwrap_model
    from .engine import locked_forward, module_device

    fn, module, facts = unwrap_model(model)
    return locked_forward(fn, module), (module_device(module) if module is not None else None), facts


def _probabilities(fn, x: torch.Tensor, options=None) -> torch.Tensor:
    """Softmax of the model at x, through the stream (chunked, retried, stopped on request)."""
    return torch.softmax(forward_no_grad(fn, x, Stats(), options).float(), dim=1)


def _targets(target, x: torch.Tensor, fn) -> torch.Tensor:
    """Targets as a CPU LongTensor [N], checked against the model's number of outputs."""
    from .harness import resolve_targets

    probs = _probabilities(fn, x)
    return resolve_targets(target, x.shape[0], torch.device("cpu"), probs.cpu())


def _pixel_maps(attribution, n: int, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Attribution -> float [n, H, W] at the input's resolution (coarse CAMs are upsampled)."""
    a = attribution.detach().float().cpu() if isinstance(attribution, torch.Tensor) else torch.as_tensor(np.asarray(attribution), dtype=torch.float32)
    if a.dim() == 2:
        a = a[None]
    if a.dim() == 4:
        a = a.abs().sum(1) if mode == "abs" else a.sum(1)
    elif a.dim() == 3 and mode == "abs":
        a = a.abs()
    elif a.dim() != 3:
        raise InputShapeError(f"an attribution must be [N, C, H, W] or [N, H, W]; got {tuple(a.shape)}")
    if a.shape[0] != n:
        raise InputShapeError(f"{a.shape[0]} attribution maps for {n} inputs")
    if tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return a


# ---------------------------------------------------------------------------------------------
# Deletion and insertion (Petsiuk et al. 2018, RISE)


@dataclass
class PerturbationCurve:
    """Target probability as pixels are deleted (or inserted) in the map's order."""

    fractions: np.ndarray  # [S + 1], share of pixels perturbed, 0 .. 1
    scores: np.ndarray  # [N, S + 1] softmax probability of the target
    auc: np.ndarray  # [N], trapezoid area under each curve
    target: np.ndarray  # [N]
    kind: str  # "deletion" or "insertion"
    substrate: str

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def substrate_of(x: torch.Tensor, substrate: str = "blur") -> torch.Tensor:
    """What perturbed pixels become: a strong Gaussian blur of the image (removes shape
    evidence but stays close to the image's statistics) or the per-image channel means."""
    if substrate == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if substrate != "blur":
        raise SaliencyError(f"substrate must be one of {', '.join(SUBSTRATES)}; got {substrate!r}")
    h, w = x.shape[-2:]
    sigma = max(1.0, max(h, w) / 20.0)
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)
    if radius < 1:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def pixel_order(map2d: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Pixel indices, most important first. Ties (flat regions of a CAM, zeros) are broken by
    a seeded shuffle rather than raster order, which would favour the top of the image."""
    flat = map2d.flatten()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=g)
    order = torch.argsort(flat[perm], descending=True, stable=True)
    return perm[order]


def perturbation_curve(model, inputs: torch.Tensor, attribution, target="predicted",
                       kind: str = "deletion", steps: int = 32, substrate: str = "blur",
                       order_by: str = "abs", batch_size: int = 64, seed: int = 0,
                       progress: Callable[[int, int], None] | None = None,
                       cancel=None) -> PerturbationCurve:
    """Deletion (start from the image, replace the most important pixels first with the
    substrate) or insertion (start from the substrate, restore the most important pixels
    first) in ``steps`` equal steps, scoring the target's softmax probability at each step.

    ``order_by="abs"`` ranks pixels by the absolute attribution summed over channels, which
    treats methods whose sign is not evidence (plain gradients, guided backprop) fairly;
    "signed" ranks by the signed sum (positive evidence first).
    Perturbed images are built for a chunk of steps at a time and scored in batches of
    ``batch_size`` without gradients, through the engine's stream: ``cancel`` (an Event or a
    callable) stops between batches, and a batch too big for the device is retried smaller.
    """
    if kind not in ("deletion", "insertion"):
        raise SaliencyError(f"kind must be 'deletion' or 'insertion'; got {kind!r}")
    if order_by not in ("abs", "signed"):
        raise SaliencyError(f"order_by must be 'abs' or 'signed'; got {order_by!r}")
    if not isinstance(steps, int) or steps < 1:
        raise SaliencyError(f"steps must be a positive integer; got {steps!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise InputShapeError("inputs must be an image batch [N, C, H, W]")
    fn, device, _ = _model_parts(model)
    x = inputs.detach().to(device or inputs.device)
    n, _c, h, w = x.shape
    steps = min(steps, h * w)
    maps = _pixel_maps(attribution, n, (h, w), order_by)
    targets = _targets(target, x, fn).to(x.device)
    base = substrate_of(x, substrate)
    start, end = (x, base) if kind == "deletion" else (base, x)
    counts = torch.round(torch.linspace(0, h * w, steps + 1)).long()
    fractions = (counts.double() / (h * w)).numpy()
    scores = np.empty((n, steps + 1))
    ranks = []
    for i in range(n):
        order = pixel_order(maps[i], seed=seed + i)
        rank = torch.empty(h * w, dtype=torch.long)
        rank[order] = torch.arange(h * w)
        ranks.append(rank.to(x.device).view(1, 1, h, w))
    counts = counts.to(x.device)
    per_input = steps + 1

    def make(start, stop):
        """Perturbed images for points start..stop; point j is step j % S of input j // S."""
        parts = []
        for i in range(start // per_input, (stop - 1) // per_input + 1):
            s0, s1 = max(start, i * per_input) - i * per_input, min(stop, (i + 1) * per_input) - i * per_input
            changed = ranks[i] < counts[s0:s1].view(-1, 1, 1, 1)  # the first k pixels of the order
            parts.append(torch.where(changed, end[i:i + 1], start_images[i:i + 1]))
        return (parts[0] if len(parts) == 1 else torch.cat(parts)), None

    def consume(a, b, logits):
        probs = torch.softmax(logits.float(), dim=1)
        idx = torch.arange(a, b, device=probs.device)
        p = probs.gather(1, targets[idx // per_input][:, None]).squeeze(1)
        scores.reshape(-1)[a:b] = p.cpu().numpy()

    start_images = start
    options = Options(batch_size=max(1, batch_size), progress=progress, cancel=cancel)
    GradientStream(fn, x.device, options, Stats()).run(n * per_input, make, consume, step=FORWARD)
    auc = np.trapezoid(scores, fractions, axis=1)
    return PerturbationCurve(fractions, scores, auc, targets.cpu().numpy(), kind, substrate)


def deletion(model, inputs, attribution, target="predicted", **kw) -> PerturbationCurve:
    """Deletion curve: a faithful map makes the probability fall fast (low AUC is better)."""
    return perturbation_curve(model, inputs, attribution, target, kind="deletion", **kw)


def insertion(model, inputs, attribution, target="predicted", **kw) -> PerturbationCurve:
    """Insertion curve: a faithful map makes the probability rise fast (high AUC is better)."""
    return perturbation_curve(model, inputs, attribution, target, kind="insertion", **kw)


# ---------------------------------------------------------------------------------------------
# Localisation against a ground-truth mask


def _masks_of(mask, n: int, size: tuple[int, int]) -> np.ndarray:
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.astype(bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, (n, *m.shape))
    if m.ndim != 3 or m.shape[0] != n:
        raise InputShapeError(f"a mask must be [H, W] or [N, H, W] for {n} maps; got shape {m.shape}")
    if m.shape[1:] != tuple(size):
        raise InputShapeError(f"the mask is {m.shape[1]}x{m.shape[2]} but the map is {size[0]}x{size[1]}")
    return m


def _localisation_maps(attribution, mask, mode):
    a = attribution.detach().float().cpu() if isinstance(attribution, torch.Tensor) else torch.as_tensor(np.asarray(attribution), dtype=torch.float32)
    if a.dim() == 2:
        a = a[None]
    m = mask.shape[-2:] if hasattr(mask, "shape") else np.asarray(mask).shape[-2:]
    n = a.shape[0]
    maps = _pixel_maps(a, n, tuple(m), mode).numpy().astype(np.float64)
    return maps, _masks_of(mask, n, maps.shape[1:])


def pointing_game(attribution, mask, tolerance: int = 0) -> np.ndarray:
    """Per sample, 1.0 when the map's maximum falls in the mask grown by ``tolerance`` pixels
    (Zhang et al. 2016 use 15 px at 224), else 0.0. Signed maps point with their largest
    positive value; a constant map points nowhere and misses."""
    maps, masks = _localisation_maps(attribution, mask, "signed")
    if tolerance < 0:
        raise SaliencyError("tolerance must be >= 0 pixels")
    hits = np.zeros(maps.shape[0])
    for i, (m, gt) in enumerate(zip(maps, masks)):
        if _constant(m):
            continue
        if tolerance > 0:
            from scipy.ndimage import binary_dilation

            yy, xx = np.mgrid[-tolerance:tolerance + 1, -tolerance:tolerance + 1]
            gt = binary_dilation(gt, structure=(yy**2 + xx**2) <= tolerance**2)
        hits[i] = float(gt[m == m.max()].any())
    return hits


def mass_in_mask(attribution, mask, energy: str = "positive") -> np.ndarray:
    """Per sample, the share of attribution mass inside the mask: of the positive part of the
    channel-summed map (``energy="positive"``) or of its absolute values ("absolute").
    A map with no such mass scores 0."""
    if energy not in ENERGIES:
        raise SaliencyError(f"energy must be one of {', '.join(ENERGIES)}; got {energy!r}")
    maps, masks = _localisation_maps(attribution, mask, "signed" if energy == "positive" else "abs")
    mass = np.clip(maps, 0, None) if energy == "positive" else np.abs(maps)
    total = mass.sum(axis=(1, 2))
    inside = (mass * masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0)


# ---------------------------------------------------------------------------------------------
# Scoreboard


def scoreboard(model, inputs: torch.Tensor, attributions: dict, target="predicted", mask=None,
               steps: int = 32, substrate: str = "blur", order_by: str = "abs",
               batch_size: int = 64, tolerance: int = 0,
               progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Rank methods on the same input(s) by faithfulness and, given a mask, localisation.

    ``attributions`` maps a method name to its attribution (input-shaped or [N, H, W] CAM).
    Each row: method, deletion_auc (lower is better), insertion_auc (higher is better),
    pointing and mass_in_mask when a mask is given (higher is better), each criterion's rank
    (1 = best), and ``rank``, the order of the mean of those ranks (ties share a rank).
    Rows come best first.
    """
    if not attributions:
        raise SaliencyError("no attributions to compare; pick at least one method")
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
        inputs = inputs.unsqueeze(0)
    fn, device, _ = _model_parts(model)
    x = inputs.detach().to(device or inputs.device)
    targets = _targets(target, x, fn)
    rows = []
    total = len(attributions) * 2
    for j, (name, attr) in enumerate(attributions.items()):
        row = {"method": name}
        for k, kind in enumerate(("deletion", "insertion")):
            curve = perturbation_curve(model, x, attr, targets, kind=kind, steps=steps,
                                       substrate=substrate, order_by=order_by,
                                       batch_size=batch_size)
            row[f"{kind}_auc"] = curve.mean_auc
            row[f"{kind}_curve"] = curve.scores.mean(0).tolist()
            if progress is not None:
                progress(2 * j + k + 1, total)
        row["fractions"] = curve.fractions.tolist()
        if mask is not None:
            row["pointing"] = float(pointing_game(attr, mask, tolerance).mean())
            row["mass_in_mask"] = float(mass_in_mask(attr, mask).mean())
        rows.append(row)
    criteria = {"deletion_auc": False, "insertion_auc": True}
    if mask is not None:
        criteria.update(pointing=True, mass_in_mask=True)
    for key, higher in criteria.items():
        ranks = _competition_ranks([r[key] for r in rows], higher)
        for r, rk in zip(rows, ranks):
            r[f"{key}_rank"] = rk
    mean_ranks = [float(np.mean([r[f"{k}_rank"] for k in criteria])) for r in rows]
    for r, rk, mr in zip(rows, _competition_ranks(mean_ranks, False), mean_ranks):
        r["mean_rank"] = mr
        r["rank"] = rk
    return sorted(rows, key=lambda r: (r["rank"], r["method"]))


def _competition_ranks(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1 = best; equal values share the better rank ("1, 2, 2, 4")."""
    keyed = [-v if higher_is_better else v for v in values]
    return [1 + sum(1 for o in keyed if o < v - 1e-12) for v in keyed]


# ---------------------------------------------------------------------------------------------
# Integrated Gradients: completeness and automatic steps


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
    from .api import attribute, explain

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
