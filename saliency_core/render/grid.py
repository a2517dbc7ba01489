"""A grid of maps over one input (``grid``): maps computed anywhere (this library's results,
Captum's [N, C, H, W] tensors, pytorch-grad-cam's [N, H, W] arrays), as a PIL image or a
matplotlib figure. ``model_grids`` computes the maps of several methods or classes for it.

Figures are made with matplotlib's object API on an Agg canvas, never through pyplot, so a
grid leaves no global figure behind and works from threads and in any backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

import numpy as np
from PIL import Image

from saliency_core.errors import InputShapeError, ParameterError
from saliency_core.render.maps import (
    DEFAULT_DIVERGING,
    DIVERGING_CMAPS,
    _as_numpy,
    aggregate_channels,
    clip_value,
    colorize,
    normalize,
    overlay,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


Output = Literal["pil", "figure"]
OUTPUTS = ("pil", "figure")


class GridStyle(TypedDict, total=False):
    """How ``method_grid`` and ``class_grid`` draw their maps (the keywords of ``grid``)."""

    cmap: str
    alpha: float
    aggregation: str
    sign: str
    percentile: float
    shared_scale: bool
    columns: int | None
    cell_inches: float
    show_input: bool


def _checked_index(index: int, n: int) -> int:
    if not -n <= index < n:
        raise InputShapeError(f"index {index} is out of range for a batch of {n}")
    return index


def attribution_map(attribution: Any, index: int = 0, aggregation: str = "max_abs") -> np.ndarray:
    """One input's attribution as a float map [H, W], whoever computed it.

    Layouts are read batch first, as Captum, pytorch-grad-cam and this library return them:
    [N, C, H, W] (input-space methods) gives input ``index``'s channels combined by
    ``aggregation``; [N, H, W] (CAM maps, e.g. pytorch-grad-cam's NumPy output) gives map
    ``index``; [H, W] is taken as it is.

    Args:
        attribution: A torch tensor or anything NumPy reads, in one of the layouts above.
        index: Which input of the batch.
        aggregation: One of ``AGGREGATIONS`` (for [N, C, H, W]).

    Returns:
        float64 [H, W], signed as the attribution was.

    Raises:
        InputShapeError: Another number of dimensions, or ``index`` outside the batch.
        ValueError: An unknown aggregation.

    Example:
        >>> import numpy as np
        >>> attribution_map(np.ones((2, 3, 8, 8)), index=1).shape
        (8, 8)
    """
    a = _as_numpy(attribution)
    if a.ndim == 4:
        return aggregate_channels(a[_checked_index(index, a.shape[0])], aggregation)
    if a.ndim == 3:
        return a[_checked_index(index, a.shape[0])].copy()
    if a.ndim == 2:
        return a.copy()
    raise InputShapeError(
        f"an attribution must be [N, C, H, W], [N, H, W] or [H, W]; got shape {a.shape}"
    )


def input_image(x: Any, index: int = 0,
                normalization: tuple[Sequence[float], Sequence[float]] | None = None) -> np.ndarray:
    """An input as the uint8 RGB picture [H, W, 3] a grid shows.

    Args:
        x: A model input [N, C, H, W] or [C, H, W] (tensor or array, channels first), a uint8
            picture [H, W, 3] or [H, W], or a PIL image.
        index: Which input of a batch.
        normalization: (mean, std) per channel that the input was normalised with; undone
            first. Without it, values in [0, 1] are taken as pixels and anything else is
            stretched to the full range.

    Returns:
        uint8 [H, W, 3].

    Raises:
        InputShapeError: A shape that is not an image.

    Example:
        >>> import torch
        >>> input_image(torch.zeros(1, 3, 4, 4)).shape
        (4, 4, 3)
    """
    if isinstance(x, Image.Image):
        return np.asarray(x.convert("RGB"))
    if not hasattr(x, "detach"):  # a picture already: uint8 [H, W] or [H, W, 3 or 4]
        raw = np.asarray(x)
        if raw.dtype == np.uint8 and raw.ndim == 2:
            return np.repeat(raw[..., None], 3, axis=2)
        if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] in (3, 4):
            return np.ascontiguousarray(raw[..., :3])
    a = _as_numpy(x)
    if a.ndim == 4:
        a = a[_checked_index(index, a.shape[0])]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise InputShapeError(f"expected an image [N, C, H, W] or [C, H, W] with 1 or 3 channels; got {a.shape}")
    if normalization is not None:
        mean = np.asarray(normalization[0], dtype=np.float64).reshape(-1, 1, 1)
        std = np.asarray(normalization[1], dtype=np.float64).reshape(-1, 1, 1)
        a = a * std + mean
    lo, hi = float(a.min()), float(a.max())
    if normalization is None and (lo < 0.0 or hi > 1.0):
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    pixels = np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def figure_of_cells(cells: Sequence[tuple[str, np.ndarray]], heading: str | None,
                    columns: int | None, cell_inches: float) -> Figure:
    """Titled pictures (uint8 [H, W, 3]) in rows of ``columns``, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(columns or len(cells), len(cells)))
    rows = math.ceil(len(cells) / cols)
    fig = Figure(figsize=(cols * cell_inches, rows * (cell_inches + 0.35) + (0.4 if heading else 0.0)),
                 layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (title, picture) in zip(axes.flat, cells):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    if heading:
        fig.suptitle(heading, fontsize=10)
    return fig


def figure_to_image(fig: Figure) -> Image.Image:
    """A matplotlib figure drawn to a PIL RGB image (at the figure's dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


@overload
def grid(image: Any, maps: Mapping[str, Any], *, output: Literal["pil"] = ..., index: int = ...,
         heading: str | None = ..., cmap: str = ..., alpha: float = ..., aggregation: str = ...,
         sign: str = ..., percentile: float = ..., shared_scale: bool = ...,
         columns: int | None = ..., cell_inches: float = ..., show_input: bool = ...,
         normalization: tuple[Sequence[float], Sequence[float]] | None = ...) -> Image.Image: ...
@overload
def grid(image: Any, maps: Mapping[str, Any], *, output: Literal["figure"], index: int = ...,
         heading: str | None = ..., cmap: str = ..., alpha: float = ..., aggregation: str = ...,
         sign: str = ..., percentile: float = ..., shared_scale: bool = ...,
         columns: int | None = ..., cell_inches: float = ..., show_input: bool = ...,
         normalization: tuple[Sequence[float], Sequence[float]] | None = ...) -> Figure: ...
@overload
def grid(image: Any, maps: Mapping[str, Any], *, output: Output, index: int = ...,
         heading: str | None = ..., cmap: str = ..., alpha: float = ..., aggregation: str = ...,
         sign: str = ..., percentile: float = ..., shared_scale: bool = ...,
         columns: int | None = ..., cell_inches: float = ..., show_input: bool = ...,
         normalization: tuple[Sequence[float], Sequence[float]] | None = ...) -> Image.Image | Figure: ...
def grid(image: Any, maps: Mapping[str, Any], *, output: Output = "pil", index: int = 0,
         heading: str | None = None, cmap: str = "inferno", alpha: float = 0.5,
         aggregation: str = "max_abs", sign: str = "absolute", percentile: float = 99.0,
         shared_scale: bool = False, columns: int | None = None, cell_inches: float = 2.4,
         show_input: bool = True,
         normalization: tuple[Sequence[float], Sequence[float]] | None = None) -> Image.Image | Figure:
    """Maps of one input side by side, each over the input, with a title each.

    Args:
        image: The input (anything ``input_image`` reads: a model input, a uint8 picture,
            a PIL image), or None to show the coloured maps alone.
        maps: Title -> attribution in any layout ``attribution_map`` reads (this library's
            results, Captum's [N, C, H, W] tensors, pytorch-grad-cam's [N, H, W] arrays).
        output: "pil" for a PIL image, "figure" for a matplotlib ``Figure``.
        index: Which input of a batch (of ``image`` and of every map).
        heading: A line above the grid.
        cmap: A matplotlib colormap; signed maps switch a sequential one to a diverging one.
        alpha: Overlay opacity in [0, 1].
        aggregation: How channels become one value per pixel (``AGGREGATIONS``).
        sign: "absolute", "positive", "negative" or "signed" (``SIGN_MODES``).
        percentile: Each map is clipped at this percentile of its magnitudes.
        shared_scale: One clip value for all maps (the largest), so their strengths compare.
        columns: Cells per row (default: all in one row).
        cell_inches: The size of one cell.
        show_input: Whether the first cell is the input itself.
        normalization: (mean, std) the input was normalised with, to show its pixels.

    Returns:
        A PIL RGB image, or a matplotlib ``Figure`` with ``output="figure"``.

    Raises:
        ParameterError: No maps, or an unknown ``output``.
        InputShapeError: An attribution or image of a shape that cannot be shown.
        ValueError: An unknown colormap, aggregation or sign mode, or alpha outside [0, 1].

    Example:
        >>> import numpy as np
        >>> picture = np.zeros((16, 16, 3), np.uint8)
        >>> grid(picture, {"a": np.random.rand(1, 16, 16), "b": np.random.rand(1, 3, 16, 16)}).mode
        'RGB'
    """
    if output not in OUTPUTS:
        raise ParameterError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
    if not maps:
        raise ParameterError("give at least one map to show")
    heat = {title: attribution_map(a, index, aggregation) for title, a in maps.items()}
    if sign == "signed" and cmap not in DIVERGING_CMAPS:
        cmap = DEFAULT_DIVERGING  # zero must sit on the neutral middle colour
    scale = max(clip_value(m, sign, percentile) for m in heat.values()) if shared_scale else None
    picture = None if image is None else input_image(image, index, normalization)
    cells: list[tuple[str, np.ndarray]] = []
    if picture is not None and show_input:
        cells.append(("input", picture))
    signed = sign == "signed"
    for title, m in heat.items():
        norm = normalize(m, sign, percentile, scale=scale)
        shown = (colorize(norm, cmap, signed=signed) if picture is None
                 else overlay(picture, norm, cmap=cmap, alpha=alpha, signed=signed))
        cells.append((title, shown))
    fig = figure_of_cells(cells, heading, columns, cell_inches)
    return fig if output == "figure" else figure_to_image(fig)
