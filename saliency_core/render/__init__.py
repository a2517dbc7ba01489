"""From raw attributions to pictures, NumPy, PIL and matplotlib only.

- ``maps``: channel aggregation, robust normalisation, colormaps, overlays, PNG bytes and
  highlighted tokens (what the app, the CLI and the report draw with);
- ``grid``: a grid of maps over one input, as a PIL image or a matplotlib figure; it takes this
  library's results or plain tensors and arrays from Captum ([N, C, H, W]) and
  pytorch-grad-cam ([N, H, W]) alike;
- ``charts``: token scores as a bar chart; a language model's source x generated matrix.

Everything is importable as ``saliency_core.render.X``. Nothing here runs a model: the grids
that compute their maps first are ``saliency_core.show.method_grid`` and ``class_grid``
(still reachable here under those names, as earlier releases documented them).
"""

from __future__ import annotations

from saliency_core.render.charts import token_chart, token_matrix
from saliency_core.render.grid import (
    attribution_map,
    figure_to_image,
    grid,
    input_image,
)
from saliency_core.render.maps import (
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
    "clip_value",
    "clip_values",
    "colorize",
    "figure_to_image",
    "grid",
    "input_image",
    "kept_part",
    "normalize",
    "overlay",
    "resize_map",
    "to_png",
    "token_chart",
    "token_colour_hex",
    "token_display",
    "token_html",
    "token_matrix",
]


def __getattr__(name: str):
    # method_grid and class_grid run models, so they live in saliency_core.show; earlier
    # releases documented them here, and the lookup is deferred so that importing render
    # never imports the API.
    if name in ("method_grid", "class_grid"):
        from saliency_core.show import grids

        return getattr(grids, name)
    raise AttributeError(f"module 'saliency_core.render' has no attribute {name!r}")
