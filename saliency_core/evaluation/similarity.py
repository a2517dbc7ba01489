"""How alike two maps are: Spearman rank correlation of absolute and of signed maps, SSIM and
HOG similarity (the measures of Adebayo et al.'s sanity checks)."""

from __future__ import annotations

import math

import numpy as np

from saliency_core.errors import InputShapeError
from saliency_core.evaluation.maps import is_constant, maps_of, unit_range

SIMILARITY_METRICS = ("spearman_abs", "spearman_signed", "ssim", "hog")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; two constant vectors count as identical (1), one constant
    vector against a varying one as unrelated (0), instead of NaN."""
    ca, cb = is_constant(a), is_constant(b)
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
    abs_a, abs_b = maps_of(original, batch, "abs"), maps_of(other, batch, "abs")
    sig_a, sig_b = maps_of(original, batch, "signed"), maps_of(other, batch, "signed")
    if abs_a.shape != abs_b.shape:
        raise InputShapeError(f"maps differ in shape: {abs_a.shape} vs {abs_b.shape}")
    out = {name: np.empty(abs_a.shape[0]) for name in SIMILARITY_METRICS}
    for i in range(abs_a.shape[0]):
        out["spearman_abs"][i] = spearman(abs_a[i], abs_b[i])
        out["spearman_signed"][i] = spearman(sig_a[i], sig_b[i])
        out["ssim"][i] = ssim(abs_a[i], abs_b[i])
        out["hog"][i] = hog_similarity(abs_a[i], abs_b[i])
    return out
