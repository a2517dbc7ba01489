"""What the Compare page draws around its maps and scoreboard: each map's colour bar with the
range it was drawn with, the ranking rule in words, the table that shows why a rank is what it
is, and the deletion and insertion curves the AUCs summarise."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS
from plotly.subplots import make_subplots

from saliency_core import render
from workbench.ui import display, plaintext

# Colours sampled along the bar: enough that a CSS gradient between them matches the LUT.
BAR_STOPS = 24

# Higher is better for every criterion but deletion; the table's column for each.
CRITERIA = {"deletion_auc": "deletion", "insertion_auc": "insertion", "pointing": "pointing",
            "mass_in_mask": "mass in mask"}


def number(value: float) -> str:
    return f"{value:.3g}"


def passes(count: int) -> str:
    return f"{count} pass" if count == 1 else f"{count} passes"


def colour_bar_html(rendered: display.RenderedMap, options: display.DisplayOptions,
                    shared: bool) -> str:
    """A bar in the map's own colours, labelled with the attribution values its ends stand
    for: the clip value (per map, or shared by all maps) gets the brightest colour, so the
    labels say "at least" it; below the bar, how that value was chosen and the largest value
    the map actually has. Only numbers and fixed words go into the HTML."""
    sign = options.sign
    signed = sign == "signed"
    lo = -1.0 if signed else 0.0
    stops = render.colorize(np.linspace(lo, 1.0, BAR_STOPS)[None, :], options.cmap,
                            signed=signed)[0]
    gradient = ", ".join(f"rgb({r},{g},{b})" for r, g, b in stops.tolist())
    clip = rendered.clip_value
    kept = render.kept_part(rendered.raw, sign)
    peak = float(np.abs(kept).max()) if kept.size else 0.0
    if not clip > 0:
        ends = ["0", "0"]
        note = "all values are 0"
    else:
        high = f"≥ {number(clip)}" if sign != "negative" else f"≤ −{number(clip)}"
        ends = [f"≤ −{number(clip)}", "0", high] if signed else ["0", high]
        what = {"absolute": "|value|", "positive": "positive values",
                "negative": "negative values", "signed": "|value|"}[sign]
        scale = "shared by all maps" if shared else f"{options.clip:g}th percentile of {what}"
        note = f"{scale}; largest {number(peak)}"
    labels = "".join(f"<span>{text}</span>" for text in ends)
    return (
        f'<div class="map-scale" data-low="{-clip if signed else 0.0:.6g}" '
        f'data-high="{clip:.6g}" style="margin:-0.4rem 0 0.3rem 0">'
        f'<div class="map-scale-bar" style="height:0.6rem;border-radius:2px;'
        f'background:linear-gradient(to right, {gradient})"></div>'
        f'<div style="display:flex;justify-content:space-between;font-size:0.75rem">{labels}'
        f'</div><div style="font-size:0.7rem;opacity:0.7">{note}</div></div>'
    )


def ranking_rule(rows: list[dict]) -> str:
    """The rule behind the table's rank column, in one sentence, then what it gave here."""
    localisation = bool(rows) and "pointing" in rows[0]
    criteria = "lower deletion AUC, higher insertion AUC"
    criteria += ", higher pointing and higher mass in mask" if localisation else ""
    rule = (f"The overall rank orders the methods by the mean of their ranks on each column "
            f"({criteria} is better); equal values share a rank, as do equal means (then "
            f"listed alphabetically), so one method can win a column and still rank below "
            f"another.")
    if not rows:
        return rule
    best = rows[0]
    parts = ", ".join(f"{CRITERIA[key]} {best[f'{key}_rank']}" for key in CRITERIA
                      if f"{key}_rank" in best)
    tied = [r["method"] for r in rows if r["rank"] == 1]
    who = " and ".join(tied) + (" share rank 1" if len(tied) > 1 else " is rank 1")
    return f"{rule} Here {who} with a mean rank of {best['mean_rank']:.3g} ({parts})."


def scoreboard_table(rows: list[dict]) -> list[dict]:
    """The scoreboard's columns with the mean of ranks and each column's rank beside it."""
    table = []
    for row, shown in zip(rows, display.scoreboard_rows(rows)):
        ranks = " · ".join(str(row[f"{key}_rank"]) for key in CRITERIA if f"{key}_rank" in row)
        table.append({"rank": shown.pop("rank"), "method": shown.pop("method"),
                      "mean rank": round(float(row["mean_rank"]), 3),
                      **shown, "column ranks": ranks})
    return table


def column_ranks_help(rows: list[dict]) -> str:
    names = [CRITERIA[key] for key in CRITERIA if rows and f"{key}_rank" in rows[0]]
    return "This method's rank on each column, in order: " + ", ".join(names) + "."


def curves_figure(rows: list[dict], target: str) -> go.Figure:
    """The deletion and insertion curves (the target's probability as pixels are removed or
    added back, most salient first), one line per method in the same colour in both panels."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        "Deletion: most salient pixels removed first (lower area is better)",
        "Insertion: most salient pixels added back first (higher area is better)"))
    for i, row in enumerate(rows):
        colour = DEFAULT_PLOTLY_COLORS[i % len(DEFAULT_PLOTLY_COLORS)]
        for col, direction in ((1, "deletion"), (2, "insertion")):
            fig.add_trace(go.Scatter(
                x=row["fractions"], y=row[f"{direction}_curve"], name=row["method"],
                legendgroup=row["method"], showlegend=col == 1, mode="lines",
                line={"color": colour, "width": 2},
                hovertemplate=f"{row['method']}<br>%{{x:.0%}} of pixels: "
                              f"p = %{{y:.3f}}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="share of pixels", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text=f"probability of {target}", range=[0, 1], row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=340, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22})
    return fig


def not_run_line(model_name: str, reasons: dict[str, str]) -> str:
    """One line for the chosen methods a (second) model cannot run, instead of a failure in
    each of their cells: ``reasons`` maps each method's label to why, and methods with the same
    reason share it.

    >>> not_run_line("cnn", {"Attention rollout": "no attention", "Relevance": "no attention"})
    'Not run on cnn: Attention rollout, Relevance (no attention).'
    """
    grouped: dict[str, list[str]] = {}
    for label, reason in reasons.items():
        grouped.setdefault(reason, []).append(label)
    parts = [", ".join(labels) + (f" ({reason.rstrip('.')})" if reason else "")
             for reason, labels in grouped.items()]
    return f"Not run on {plaintext.plain(model_name)}: " + "; ".join(parts) + "."
