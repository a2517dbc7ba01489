"""Attributions as one 2-D map per sample, the shape every evaluation measure works on.

Maps come in two shapes: input-shaped attributions [N, C, H, W] (or [C, H, W]) and CAM maps
[N, H, W] (or [H, W]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from saliency_core.errors import InputShapeError, SaliencyError
from saliency_core.io.interop import as_array, as_tensor


def to_maps(attribution, mode: str = "abs") -> np.ndarray:
    """Attribution -> float64 [N, H, W]: channels summed signed (``mode="signed"``) or as
    absolute values (``mode="abs"``). Adebayo et al. take absolute values before summing over
    channels, so opposite-signed channels cannot cancel in the "absolute" view.
    A 3-D array is read as [N, H, W] CAM maps; use ``[None]`` for a single [C, H, W] map."""
    if mode not in ("abs", "signed"):
        raise SaliencyError(f"mode must be 'abs' or 'signed', got {mode!r}")
    a = as_array(attribution)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        return np.abs(a).sum(1) if mode == "abs" else a.sum(1)
    if a.ndim == 3:
        return np.abs(a) if mode == "abs" else a
    raise InputShapeError(
        f"an attribution must be [H, W], [N, H, W] or [N, C, H, W]; got shape {a.shape}"
    )


def maps_of(attribution, batch: bool, mode: str) -> np.ndarray:
    """Like to_maps, but an unbatched [C, H, W] input-space map counts as one sample."""
    if not batch:
        a = as_array(attribution)
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


def is_constant(a: np.ndarray) -> bool:
    return bool(np.ptp(a) == 0)



def pixel_maps(attribution, n: int, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Attribution -> float [n, H, W] at the input's resolution (coarse CAMs are upsampled)."""
    a = as_tensor(attribution)
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
