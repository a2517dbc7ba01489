"""Localisation against a ground-truth mask: the pointing game and the share of mass inside."""

from __future__ import annotations

import numpy as np
import torch

from saliency_core.errors import InputShapeError, SaliencyError
from saliency_core.evaluation.maps import is_constant, pixel_maps
from saliency_core.io.interop import as_tensor

ENERGIES = ("positive", "absolute")


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
    a = as_tensor(attribution)
    if a.dim() == 2:
        a = a[None]
    m = mask.shape[-2:] if hasattr(mask, "shape") else np.asarray(mask).shape[-2:]
    n = a.shape[0]
    maps = pixel_maps(a, n, tuple(m), mode).numpy().astype(np.float64)
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
        if is_constant(m):
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
