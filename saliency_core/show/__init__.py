"""Showing results where people read them: notebook display (``notebook``), a self-contained
HTML report (``report``), and grids that compute their maps with a model (``grids``).

Unlike ``saliency_core.render``, which only turns arrays into pictures, this layer may run
models through the public API.
"""

from __future__ import annotations

from saliency_core.show.grids import class_grid, method_grid

__all__ = ["class_grid", "method_grid"]
