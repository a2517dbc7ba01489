"""Token scores as a bar chart (and a language model's token matrix as a heatmap), in the one colour convention (red for the target, blue
against), for the CLI's PNG and a text result's ``_repr_png_``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from saliency_core.render.maps import (
    TOKEN_AGAINST_RGB,
    TOKEN_FOR_RGB,
    _as_numpy,
    token_colour_hex,
    token_display,
)

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


def token_matrix(source_tokens: Sequence[str], generated_tokens: Sequence[str], matrix: Any,
                 special: Sequence[bool] | None = None, prompt_length: int | None = None,
                 title: str | None = None) -> Figure:
    """A language model's source x generated attribution matrix as a heatmap: one row per
    generated token, one column per source token, red for the generated token, blue against.

    Each row is scaled by its own largest magnitude over the non-special tokens it can see
    (earlier positions), so every generated token's strongest source is full colour; cells
    a token cannot depend on (its own position and later) are left blank.

    Args:
        source_tokens: The prompt's tokens, then the generated ones (S).
        generated_tokens: The generated tokens (G).
        matrix: [G, S] attributions.
        special: Per source token, whether it is a special or template token (greyed label,
            out of the scale).
        prompt_length: How many source tokens are the prompt (a line marks the boundary);
            default S - G.
        title: A line above the heatmap.

    Returns:
        A matplotlib ``Figure`` on an Agg canvas (no pyplot state).

    Raises:
        ValueError: A matrix whose shape is not [G, S].

    Example:
        >>> fig = token_matrix(["a", " cat", " sat"], [" sat"], [[0.2, -0.5, 0.0]])
        >>> len(fig.axes[0].images)
        1
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    values = _as_numpy(matrix).astype(float)
    g, s = len(generated_tokens), len(source_tokens)
    if values.shape != (g, s):
        raise ValueError(f"a matrix of shape {values.shape} for {g} generated and {s} source tokens")
    flags = np.zeros(s, bool) if special is None else np.asarray(special, bool)
    plen = s - g if prompt_length is None else int(prompt_length)
    seen = np.arange(s)[None, :] < (plen + np.arange(g))[:, None]
    scaled = np.full((g, s), np.nan)
    for row in range(g):
        part = seen[row] & ~flags
        peak = float(np.abs(values[row, part]).max()) if part.any() else 0.0
        scaled[row, seen[row]] = values[row, seen[row]] / peak if peak > 0 else 0.0
    scaled = np.clip(scaled, -1, 1)
    rgb = [tuple(c / 255 for c in TOKEN_AGAINST_RGB), (1, 1, 1), tuple(c / 255 for c in TOKEN_FOR_RGB)]
    cmap = LinearSegmentedColormap.from_list("token_signed", rgb).with_extremes(bad="#f3f4f6")
    fig = Figure(figsize=(max(4.0, 0.45 * s + 1.5), max(2.0, 0.35 * g + 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(scaled), cmap=cmap, vmin=-1, vmax=1, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(s), [repr(t)[1:-1] for t in source_tokens], rotation=70, ha="right",
                  fontsize=8)
    ax.set_yticks(range(g), [repr(t)[1:-1] for t in generated_tokens], fontsize=8)
    for label, flag in zip(ax.get_xticklabels(), flags):
        if flag:
            label.set_color("#9ca3af")
    if 0 < plen < s:
        ax.axvline(plen - 0.5, color="#111827", linewidth=1.0)
    ax.set_xlabel("source token (prompt | generated)")
    ax.set_ylabel("generated token")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attribution / row max")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
