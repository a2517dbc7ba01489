"""Procedural "shapes" images with ground truth, for models whose right answer is known.

Every image holds exactly one filled shape of one class on a textured background crossed by a
few thin distractor lines, so the evidence for the class is the shape and nothing else (object
masks say where it is). With ``spurious=True`` a small class-coded watermark is stamped in the
top-left corner: a model may learn it as a shortcut, and saliency should then point there.

Image ``i`` depends only on ``(seed, i)``, so ``generate(10, s)`` is the first ten images of
``generate(1000, s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ["circle", "square", "triangle", "cross", "star", "ring"]
IMAGE_SIZE = 64

# Shapes are drawn SUPERSAMPLE times larger and box-filtered down: smooth edges, and a coverage
# fraction per pixel from which the boolean mask is taken at one half.
SUPERSAMPLE = 4

# The watermark: a 3 x 3 code of black/white cells, WATERMARK_CELL pixels each, whose top-left
# corner sits at WATERMARK_OFFSET. Shapes never overlap the corner box, with or without it, so
# the two variants differ only by the stamp.
WATERMARK_CELL = 2
WATERMARK_OFFSET = 2
WATERMARK_SIZE = 3 * WATERMARK_CELL
CORNER_BOX = (
    WATERMARK_OFFSET + WATERMARK_SIZE + 2
)  # shapes stay out of [0, CORNER_BOX)^2

# One code per class, all different and each with both colours, so no code is a plain patch.
WATERMARK_CODES = np.array(
    [
        [[1, 0, 1], [0, 1, 0], [1, 0, 1]],
        [[1, 1, 1], [1, 0, 1], [1, 1, 1]],
        [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
        [[1, 1, 0], [1, 0, 0], [0, 0, 0]],
        [[1, 0, 0], [1, 0, 0], [1, 1, 1]],
        [[0, 0, 1], [0, 1, 1], [1, 1, 1]],
    ],
    dtype=bool,
)


@dataclass
class ShapesData:
    """What ``generate`` returns.

    images: uint8 [n, H, W, 3]; labels: int64 [n] indexing CLASS_NAMES; masks: bool [n, H, W],
    the pixels of the shape. With ``spurious=True`` also watermark_masks (bool [n, H, W], the
    stamp's pixels) and watermark_labels (int64 [n], the class the stamp encodes).

    Unpacks like a tuple: ``images, labels, masks = generate(n, seed)`` and, when spurious,
    ``images, labels, masks, watermark_masks = generate(n, seed, spurious=True)``.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    watermark_masks: np.ndarray | None = None
    watermark_labels: np.ndarray | None = None

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        yield self.images
        yield self.labels
        yield self.masks
        if self.watermark_masks is not None:
            yield self.watermark_masks


def generate(
    n: int,
    seed: int,
    spurious: bool = False,
    size: int = IMAGE_SIZE,
    watermark_conflicts: bool = False,
) -> ShapesData:
    """``n`` images of ``size`` x ``size`` pixels; see ShapesData for what comes back.

    ``watermark_conflicts=True`` (with ``spurious=True``) stamps the code of a different,
    random class, to measure whether a model follows the shape or the stamp.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    masks = np.empty((n, size, size), dtype=bool)
    wm_masks = np.zeros((n, size, size), dtype=bool) if spurious else None
    wm_labels = np.empty(n, dtype=np.int64) if spurious else None
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = int(rng.integers(len(CLASS_NAMES)))
        image, mask = _render(rng, label, size)
        if wm_masks is not None and wm_labels is not None:
            code = label
            if watermark_conflicts:
                code = (label + 1 + int(rng.integers(len(CLASS_NAMES) - 1))) % len(
                    CLASS_NAMES
                )
            wm_masks[i] = _stamp_watermark(image, code)
            wm_labels[i] = code
        images[i] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        labels[i] = label
        masks[i] = mask
    return ShapesData(images, labels, masks, wm_masks, wm_labels)


def _render(
    rng: np.random.Generator, label: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    background = _background(rng, size)
    image = background
    for _ in range(int(rng.integers(1, 4))):
        line = _coverage(size, lambda draw, s: _draw_line(draw, s, rng, size))
        image = _composite(image, line, rng.uniform(0, 1, 3))

    radius = rng.uniform(0.16, 0.34) * size
    cx, cy = _place(rng, radius, size)
    angle = rng.uniform(0, 2 * math.pi)
    colour = _contrasting_colour(rng, background.mean(axis=(0, 1)))
    shape = _coverage(
        size, lambda draw, s: _draw_shape(draw, s, label, cx, cy, radius, angle)
    )
    image = _composite(image, shape, colour)
    noise = rng.normal(0, 0.015, image.shape)
    return np.clip(image + noise, 0, 1), shape >= 0.5


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A two-colour texture of moderate contrast: gradient, stripes, smooth noise or checks."""
    base = rng.uniform(0.05, 0.95, 3)
    other = np.clip(base + rng.uniform(-0.3, 0.3, 3), 0, 1)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    kind = int(rng.integers(4))
    theta = rng.uniform(0, 2 * math.pi)
    along = x * math.cos(theta) + y * math.sin(theta)
    if kind == 0:
        t = (along - along.min()) / max(along.max() - along.min(), 1e-6)
    elif kind == 1:
        t = 0.5 + 0.5 * np.sin(
            2 * math.pi * rng.uniform(2, 8) * along + rng.uniform(0, 6.3)
        )
    elif kind == 2:
        coarse = rng.uniform(0, 1, (int(rng.integers(3, 9)),) * 2).astype(np.float32)
        t = np.asarray(
            Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        )
        t = np.clip(t, 0, 1).astype(np.float64)
    else:
        cell = int(rng.integers(4, 12))
        t = (
            ((np.arange(size)[:, None] // cell) + (np.arange(size)[None, :] // cell))
            % 2
        ) * 1.0
    return base * (1 - t[..., None]) + other * t[..., None]


def _place(rng: np.random.Generator, radius: float, size: int) -> tuple[float, float]:
    """A centre keeping the whole shape inside the image and out of the watermark corner."""
    margin = radius + 1
    while True:
        cx, cy = rng.uniform(margin, size - margin, 2)
        if cx - radius >= CORNER_BOX or cy - radius >= CORNER_BOX:
            return float(cx), float(cy)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    best, best_distance = None, -1.0
    for _ in range(30):
        colour = rng.uniform(0, 1, 3)
        distance = float(np.linalg.norm(colour - background))
        if distance >= 0.55:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    assert best is not None  # every distance beats -1, so the first draw is kept
    return best


def _coverage(size: int, paint) -> np.ndarray:
    """Fraction [H, W] of each pixel covered by what ``paint(draw, scale)`` draws."""
    big = size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    paint(ImageDraw.Draw(canvas), SUPERSAMPLE)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _composite(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return image * (1 - a) + colour * a


def _draw_line(
    draw: ImageDraw.ImageDraw, s: int, rng: np.random.Generator, size: int
) -> None:
    points = [
        tuple(rng.uniform(0, size, 2) * s) for _ in range(int(rng.integers(2, 4)))
    ]
    draw.line(points, fill=255, width=int(rng.integers(1, 3)) * s)


def _polygon(
    cx: float, cy: float, radii: list[float], angle: float
) -> list[tuple[float, float]]:
    """Vertices at the given radii, evenly spaced in angle from ``angle``."""
    k = len(radii)
    return [
        (
            cx + r * math.cos(angle + 2 * math.pi * j / k),
            cy + r * math.sin(angle + 2 * math.pi * j / k),
        )
        for j, r in enumerate(radii)
    ]


def _cross(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    w = 0.36 * r  # half the arm width
    outline = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
               (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]  # fmt: skip
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in outline]


def _draw_shape(
    draw, s: int, label: int, cx: float, cy: float, r: float, angle: float
) -> None:
    cx, cy, r = cx * s, cy * s, r * s
    name = CLASS_NAMES[label]
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        inner = 0.55 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, [r] * 4, angle), fill=255)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, [r] * 3, angle), fill=255)
    elif name == "cross":
        draw.polygon(_cross(cx, cy, r, angle), fill=255)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, [r, 0.45 * r] * 5, angle), fill=255)
    else:  # pragma: no cover - labels come from range(len(CLASS_NAMES))
        raise ValueError(f"unknown shape {name}")


def stamp_watermark(pixels: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray]:
    """The watermark of class ``code`` stamped on a copy of uint8 ``pixels`` [H, W, 3], exactly
    as ``generate(spurious=True)`` stamps it; returns (stamped copy, the stamp's mask)."""
    image = pixels.astype(np.float64) / 255.0
    mask = _stamp_watermark(image, code)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), mask


def _stamp_watermark(image: np.ndarray, code: int) -> np.ndarray:
    """Paint the class code into ``image`` (float, in place); return the stamp's mask."""
    size = image.shape[0]
    mask = np.zeros((size, size), dtype=bool)
    cells = np.kron(
        WATERMARK_CODES[code], np.ones((WATERMARK_CELL, WATERMARK_CELL), dtype=bool)
    )
    box = (slice(WATERMARK_OFFSET, WATERMARK_OFFSET + WATERMARK_SIZE),) * 2
    image[box] = np.where(cells[..., None], 1.0, 0.0)
    mask[box] = True
    return mask
