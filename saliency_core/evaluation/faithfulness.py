"""Deletion and insertion curves (Petsiuk et al. 2018, RISE): how fast the target's probability
falls as the most important pixels are removed, or rises as they are restored."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from saliency_core.engine.stream import FORWARD, GradientStream, Options, Stats
from saliency_core.errors import InputShapeError, SaliencyError
from saliency_core.evaluation.maps import pixel_maps
from saliency_core.evaluation.model_calls import model_parts, targets_of

SUBSTRATES = ("blur", "mean")
DIRECTIONS = ("deletion", "insertion")


@dataclass
class PerturbationCurve:
    """Target probability as pixels are deleted (or inserted) in the map's order."""

    fractions: np.ndarray  # [S + 1], share of pixels perturbed, 0 .. 1
    scores: np.ndarray  # [N, S + 1] softmax probability of the target
    auc: np.ndarray  # [N], trapezoid area under each curve
    target: np.ndarray  # [N]
    direction: str  # "deletion" (pixels removed) or "insertion" (pixels restored)
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
                       direction: str = "deletion", steps: int = 32, substrate: str = "blur",
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
    if direction not in DIRECTIONS:
        raise SaliencyError(f"direction must be 'deletion' or 'insertion'; got {direction!r}")
    if order_by not in ("abs", "signed"):
        raise SaliencyError(f"order_by must be 'abs' or 'signed'; got {order_by!r}")
    if not isinstance(steps, int) or steps < 1:
        raise SaliencyError(f"steps must be a positive integer; got {steps!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise InputShapeError("inputs must be an image batch [N, C, H, W]")
    fn, device, _ = model_parts(model)
    x = inputs.detach().to(device or inputs.device)
    n, _c, h, w = x.shape
    steps = min(steps, h * w)
    maps = pixel_maps(attribution, n, (h, w), order_by)
    targets = targets_of(target, x, fn).to(x.device)
    base = substrate_of(x, substrate)
    start, end = (x, base) if direction == "deletion" else (base, x)
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
    return PerturbationCurve(fractions, scores, auc, targets.cpu().numpy(), direction, substrate)


def deletion(model, inputs, attribution, target="predicted", **kw) -> PerturbationCurve:
    """Deletion curve: a faithful map makes the probability fall fast (low AUC is better)."""
    return perturbation_curve(model, inputs, attribution, target, direction="deletion", **kw)


def insertion(model, inputs, attribution, target="predicted", **kw) -> PerturbationCurve:
    """Insertion curve: a faithful map makes the probability rise fast (high AUC is better)."""
    return perturbation_curve(model, inputs, attribution, target, direction="insertion", **kw)
