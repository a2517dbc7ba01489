"""Token scores as a bar chart, in the one colour convention (red for the target, blue
against), for the CLI's PNG and a text result's ``_repr_png_``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from saliency_core.render.maps import _as_numpy, token_colour_hex, token_display

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def token_chart(tokens: Sequence[str], scores: Any, special: Sequence[bool] | None = None,
                title: str | None = None) -> Figure:
    """One bar per token, its height the signed score, coloured by sign.

    Args:
        tokens: The tokenizer's tokens (word-piece markers are shown as the text they stand for).
        scores: One score per token (array or tensor [T]).
        special: Per token, whether it is a special token ([CLS], [SEP]): drawn grey.
        title: A line above the chart.

    Returns:
        A matplotlib ``Figure`` on an Agg canvas (no pyplot state).

    Raises:
        ValueError: Tokens, scores and special flags of different lengths.

    Example:
        >>> fig = token_chart(["[CLS]", "good", "film", "[SEP]"], [0.0, 0.8, -0.2, 0.0],
        ...                   special=[True, False, False, True])
        >>> len(fig.axes[0].patches)
        4
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = _as_numpy(scores).reshape(-1)
    flags = [False] * len(tokens) if special is None else [bool(s) for s in special]
    if not len(tokens) == values.size == len(flags):
        raise ValueError(f"{len(tokens)} tokens, {values.size} scores and {len(flags)} special flags")
    fig = Figure(figsize=(max(4.0, 0.5 * len(tokens)), 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = ["#9ca3af" if s else token_colour_hex(v) for v, s in zip(values, flags)]
    ax.bar(range(len(tokens)), values, color=colours)
    ax.set_xticks(range(len(tokens)), [token_display(t)[0] for t in tokens], rotation=60, ha="right")
    ax.axhline(0.0, color="#6b7280", linewidth=0.8)
    ax.set_ylabel("attribution")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
