"""Per-map measures that sort a dataset's maps without looking at them: how concentrated a map
is, and how much of its mass sits on the image's border and in its corners, where watermarks,
logos and frame artefacts live (a shortcut's usual address).

All take non-negative maps [N, h, w] and return one number per map; a map of zeros scores 0.
"""

from __future__ import annotations

import numpy as np

#: Border: the outer frame, one eighth of the side wide (43.75 % of the area).
BORDER_FRACTION = 1 / 8
#: Corners: the four squares of a quarter of the side (25 % of the area together).
CORNER_FRACTION = 1 / 4


def _flat(maps: np.ndarray) -> np.ndarray:
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"maps must be [N, h, w]; got shape {m.shape}")
    return np.clip(np.nan_to_num(m.reshape(len(m), -1)), 0, None)


def gini(maps: np.ndarray) -> np.ndarray:
    """Gini coefficient of each map's values: 0 for a flat map, near 1 when one pixel holds
    all the mass.

    Example:
        >>> import numpy as np
        >>> flat, spike = np.ones((1, 4, 4)), np.zeros((1, 4, 4))
        >>> spike[0, 1, 2] = 1
        >>> float(gini(flat)[0]), round(float(gini(spike)[0]), 3)
        (0.0, 0.938)
    """
    x = np.sort(_flat(maps), axis=1)
    n = x.shape[1]
    total = x.sum(1)
    rank = np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (2 * (x * rank).sum(1) / (n * total)) - (n + 1) / n
    return np.where(total > 0, g, 0.0)


def top_mass(maps: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Share of each map's mass in its top ``fraction`` of pixels (1/fraction times the
    fraction itself for a flat map)."""
    x = _flat(maps)
    k = max(1, round(fraction * x.shape[1]))
    top = -np.partition(-x, k - 1, axis=1)[:, :k]
    total = x.sum(1)
    return np.where(total > 0, top.sum(1) / np.where(total > 0, total, 1), 0.0)


def _region_share(maps: np.ndarray, region: np.ndarray) -> np.ndarray:
    x = _flat(maps)
    total = x.sum(1)
    inside = x[:, region.reshape(-1)].sum(1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0)


def border_mask(h: int, w: int, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """bool [h, w]: the outer frame ``fraction`` of the side wide (at least one pixel)."""
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    mask = np.ones((h, w), dtype=bool)
    mask[bh:h - bh, bw:w - bw] = False
    return mask


def corner_mask(h: int, w: int, fraction: float = CORNER_FRACTION,
                which: str = "all") -> np.ndarray:
    """bool [h, w]: the corner squares ``fraction`` of the side; ``which`` is "all",
    "top_left", "top_right", "bottom_left" or "bottom_right"."""
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    boxes = {"top_left": (slice(0, ch), slice(0, cw)), "top_right": (slice(0, ch), slice(w - cw, w)),
             "bottom_left": (slice(h - ch, h), slice(0, cw)),
             "bottom_right": (slice(h - ch, h), slice(w - cw, w))}
    if which != "all" and which not in boxes:
        raise ValueError(f"which must be 'all' or one of {', '.join(boxes)}; got {which!r}")
    mask = np.zeros((h, w), dtype=bool)
    for name, box in boxes.items():
        if which in ("all", name):
            mask[box] = True
    return mask


def border_share(maps: np.ndarray) -> np.ndarray:
    """Share of each map's mass on the border frame (0.4375 for a flat map)."""
    _n, h, w = np.shape(maps)
    return _region_share(maps, border_mask(h, w))


def corner_share(maps: np.ndarray, which: str = "all") -> np.ndarray:
    """Share of each map's mass in the corner squares (0.25 for a flat map and all four;
    0.0625 for one corner).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 8, 8)); m[0, 0, 0] = 3; m[0, 4, 4] = 1
        >>> float(corner_share(m)[0]), float(corner_share(m, "bottom_right")[0])
        (0.75, 0.0)
    """
    _n, h, w = np.shape(maps)
    return _region_share(maps, corner_mask(h, w, which=which))


#: One corner square holds 1/16 of an even map's mass; four times that is a map drawn there.
CORNER_FLAGGED = 0.25
#: The frame holds 44 % of an even map's mass; 70 % is a map that avoids the middle.
BORDER_FLAGGED = 0.7
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def hottest_corner_share(maps: np.ndarray) -> np.ndarray:
    """The largest share of each map's mass in any one corner square (0.0625 when even)."""
    return np.max([corner_share(maps, which) for which in CORNERS], axis=0)


def looks_at_the_edges(maps: np.ndarray) -> np.ndarray:
    """bool [N]: maps whose mass sits in one corner or on the frame, where watermarks, logos
    and frame artefacts live (the shortcut flag of the Dataset page and the CLI report).

    Example:
        >>> import numpy as np
        >>> m = np.ones((2, 8, 8)); m[1, :2, :2] = 40
        >>> looks_at_the_edges(m).tolist()
        [False, True]
    """
    return (hottest_corner_share(maps) >= CORNER_FLAGGED) | (border_share(maps) >= BORDER_FLAGGED)
