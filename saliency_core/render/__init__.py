"""From raw attributions to pictures, NumPy, PIL and matplotlib only.

- ``maps``: channel aggregation, robust normalisation, colormaps, overlays, PNG bytes and
  highlighted tokens (what the app, the CLI and the report draw with);
- ``grid``: a grid of maps over one input, as a PIL image or a matplotlib figure; it takes this
  library's results or plain tensors and arrays from Captum ([N, C, H, W]) and
  pytorch-grad-cam ([N, H, W]) alike;
- ``model_grids``: one call for the grid of several methods or several classes of one input;
- ``charts``: token scores as a bar chart.

Everything is importable as ``saliency_core.render.X``.
"""

from __future__ import annotations

from .charts import token_chart
from .grid import (
    attribution_map,
    figure_to_image,
    grid,
    input_image,
)
from .maps import (
    AGGREGATIONS,
    DEFAULT_DIVERGING,
    DIVERGING_CMAPS,
    SEQUENTIAL_CMAPS,
    SIGN_MODES,
    TOKEN_AGAINST_RGB,
    TOKEN_FOR_RGB,
    aggregate_channels,
    clip_value,
    clip_values,
    colorize,
    kept_part,
    normalize,
    overlay,
    resize_map,
    to_png,
    token_colour_hex,
    token_display,
    token_html,
)
from .model_grids import class_grid, method_grid

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_DIVERGING",
    "DIVERGING_CMAPS",
    "SEQUENTIAL_CMAPS",
    "SIGN_MODES",
    "TOKEN_AGAINST_RGB",
    "TOKEN_FOR_RGB",
    "aggregate_channels",
    "attribution_map",
    "class_grid",
    "clip_value",
    "clip_values",
    "colorize",
    "figure_to_image",
    "grid",
    "input_image",
    "kept_part",
    "method_grid",
    "normalize",
    "overlay",
    "resize_map",
    "to_png",
    "token_chart",
    "token_colour_hex",
    "token_display",
    "token_html",
]
