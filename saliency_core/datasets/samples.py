"""The bundled sample datasets: generated shapes with a planted shortcut, built on the fly
(deterministic, nothing to download or commit).

``shapes_watermark`` draws the shapes of ``saliency_core.training.shapes`` and stamps the
class-coded corner watermark on part of ONE class only (half of the squares by default), the
Clever-Hans setting of Lapuschkin et al. 2019: ``shapes-cnn-watermark`` learned the stamp, so the
stamped squares are explained by the corner, and spectral relevance analysis of that class
should put them in a cluster of their own; ``shapes-cnn`` never saw a stamp and looks at the
shapes in every image.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from saliency_core.datasets.sources import DatasetItem, ImageSet

SHAPES_WATERMARK = "shapes-watermark"
DEFAULT_COUNT = 240
DEFAULT_SEED = 2026
WATERMARKED_CLASS = "square"


@dataclass
class ShapesSample:
    """A generated dataset: pictures, true labels, names and which images carry the stamp."""

    images: np.ndarray  # uint8 [n, H, W, 3]
    labels: list[str]
    names: list[str]  # "<label>/<index>.png": the sub-folder is the label
    watermarked: np.ndarray  # bool [n]

    def image_set(self) -> ImageSet:
        """The sample as an ``ImageSet`` (what ``explain_dataset`` reads)."""
        items = [DatasetItem(name, label, _returns(a))
                 for name, label, a in zip(self.names, self.labels, self.images, strict=True)]
        return ImageSet(items, [], SHAPES_WATERMARK)

    def write_folder(self, folder: str | Path) -> Path:
        """PNG files in one sub-folder per class (the layout ``saliency explain`` and the
        Dataset page read), plus ``watermarked.txt`` naming the stamped ones."""
        root = Path(folder)
        for name, pixels in zip(self.names, self.images, strict=True):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name)
        stamped = [n for n, w in zip(self.names, self.watermarked, strict=True) if w]
        (root / "watermarked.txt").write_text("\n".join(stamped) + "\n")
        return root

    def zip_bytes(self) -> bytes:
        """The same layout as one zip archive (what a user uploads)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, pixels in zip(self.names, self.images, strict=True):
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, format="PNG")
                archive.writestr(name, png.getvalue())
        return buffer.getvalue()


def _returns(pixels: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: pixels


def shapes_watermark(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED,
                     watermarked_class: str = WATERMARKED_CLASS,
                     fraction: float = 0.5) -> ShapesSample:
    """Shapes with the corner watermark stamped on ``fraction`` of one class (every other
    image of it at 0.5), the class's own code, as the watermark model was trained with.

    Example:
        >>> s = shapes_watermark(60)
        >>> len(s.names), int(s.watermarked.sum()) > 0, s.names[0].split("/")[0] in s.labels
        (60, True, True)
        >>> set(np.array(s.labels)[s.watermarked]) == {"square"}
        True
    """
    from saliency_core.training.shapes import CLASS_NAMES, generate, stamp_watermark

    if watermarked_class not in CLASS_NAMES:
        raise ValueError(f"unknown class {watermarked_class!r}; classes are {', '.join(CLASS_NAMES)}")
    code = CLASS_NAMES.index(watermarked_class)
    data = generate(n, seed)
    images = data.images.copy()
    watermarked = np.zeros(n, dtype=bool)
    seen = 0
    for i in range(n):
        if int(data.labels[i]) != code:
            continue
        # Bresenham-like spacing: the stamped share of every prefix stays close to fraction.
        if int((seen + 1) * fraction) > int(seen * fraction):
            images[i], _mask = stamp_watermark(images[i], code)
            watermarked[i] = True
        seen += 1
    labels = [CLASS_NAMES[int(c)] for c in data.labels]
    names = [f"{label}/{i:04d}.png" for i, label in enumerate(labels)]
    return ShapesSample(images, labels, names, watermarked)
