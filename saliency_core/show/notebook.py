"""How results show themselves in Jupyter: ``Explanation`` and ``TextAttribution`` call these
from their ``_repr_html_`` / ``_repr_png_``.

An image result shows, per input, the picture, the overlay and the top classes with the one
explained; a text result shows its tokens highlighted (red for the target, blue against, as
in the app) and the prediction. The HTML is self-contained (pictures inlined as data URIs)
and everything taken from the model or the user (labels, tokens) is escaped.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from saliency_core import render
from saliency_core.render.grid import figure_of_cells
from saliency_core.show.report import data_uri, figure_html, top_table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from saliency_core.explanation import Explanation
    from saliency_core.text.classifier import TextAttribution
    from saliency_core.text.generation import GenerationAttribution

MAX_SHOWN = 4  # inputs drawn per result; a large batch would make a huge cell
TOP = 3


def _label(labels: Sequence[str] | None, k: int) -> str:
    return str(labels[k]) if labels is not None and 0 <= k < len(labels) else f"class {k}"


def _top(probabilities: np.ndarray, labels: Sequence[str] | None) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities)[:TOP]
    return [(_label(labels, int(k)), float(probabilities[int(k)])) for k in order]


def _pictures(exp: Explanation, i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(input picture, overlay or coloured map) of input i; None where it cannot be drawn."""
    a = exp.attribution
    if a.dim() not in (3, 4) or (exp.inputs is not None and exp.inputs.dim() != 4):
        return None, None  # not an image (vectors, embeddings): the prediction alone
    heat = render.normalize(render.attribution_map(a, i))
    if exp.inputs is None:
        return None, render.colorize(heat)
    picture = render.input_image(exp.inputs, i, exp.normalization)
    return picture, render.overlay(picture, heat)


def _summary(exp: Explanation) -> str:
    meta = exp.metadata
    parts = [str(meta.get("method", "attribution"))]
    if "time_s" in meta:
        parts.append(f"{meta['time_s']:.2f} s")
    if "device" in meta:
        parts.append(str(meta["device"]))
    return " · ".join(parts)


def explanation_html(exp: Explanation) -> str:
    """An Explanation as an HTML fragment: per input the picture, the overlay and the top
    classes (the first ``MAX_SHOWN`` inputs)."""
    n = int(exp.target.shape[0])
    rows = []
    for i in range(min(n, MAX_SHOWN)):
        picture, shown = _pictures(exp, i)
        figures = [figure_html(render.to_png(picture), "input")] if picture is not None else []
        if shown is not None:
            figures.append(figure_html(render.to_png(shown), str(exp.metadata.get("method", "map"))))
        probs = exp.probabilities[i].detach().float().cpu().numpy()
        table = top_table_html(_top(probs, exp.labels), _label(exp.labels, int(exp.target[i])))
        rows.append('<div style="display:flex;gap:12px;align-items:flex-start;margin:6px 0">'
                    + "".join(figures) + table + "</div>")
    more = f"<p>… and {n - MAX_SHOWN} more inputs</p>" if n > MAX_SHOWN else ""
    return ('<div class="saliency-explanation"><style>.saliency-explanation figure{margin:0;'
            "text-align:center}.saliency-explanation img{width:160px;image-rendering:pixelated}"
            "</style>"
            f"<b>Explanation</b> <span>{html.escape(_summary(exp))}</span>"
            + "".join(rows) + more + "</div>")


def explanation_figure(exp: Explanation) -> Figure:
    """An Explanation as a matplotlib figure: one row per input (the first ``MAX_SHOWN``),
    the picture and the overlay, titled with the prediction and the class explained."""
    cells: list[tuple[str, np.ndarray]] = []
    columns = 1
    for i in range(min(int(exp.target.shape[0]), MAX_SHOWN)):
        picture, shown = _pictures(exp, i)
        predicted, explained = int(exp.predicted[i]), int(exp.target[i])
        p = float(exp.probabilities[i, predicted])
        row = [("input", picture)] if picture is not None else []
        if shown is not None:
            title = (f"predicted {_label(exp.labels, predicted)} ({p:.0%})\n"
                     f"explained {_label(exp.labels, explained)}")
            row.append((title, shown))
        columns = max(columns, len(row))
        cells += row
    if not cells:  # nothing image-like: the prediction as a title over an empty cell
        blank = np.full((8, 8, 3), 255, np.uint8)
        cells = [(f"predicted {_label(exp.labels, int(exp.predicted[0]))}", blank)]
    return figure_of_cells(cells, _summary(exp), columns, 2.4)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def explanation_png(exp: Explanation) -> bytes:
    """PNG bytes of ``explanation_figure``."""
    return _png(explanation_figure(exp))


def _text_head(ta: TextAttribution, sep: str = " · ") -> str:
    p = float(ta.probabilities[ta.predicted])
    return (f"predicted {_label(ta.labels, ta.predicted)} ({p:.0%}) · explained "
            f"{_label(ta.labels, ta.target)}{sep}{ta.metadata.get('method', 'attribution')}")


def text_html(ta: TextAttribution) -> str:
    """A TextAttribution as HTML: the tokens highlighted by their signed scores (red for the
    class explained, blue against) and the top classes."""
    table = top_table_html(_top(np.asarray(ta.probabilities), ta.labels), _label(ta.labels, ta.target))
    return ('<div class="saliency-text">'
            f"<div>{html.escape(_text_head(ta))}</div>"
            '<div style="display:flex;gap:16px;align-items:flex-start">'
            f"<div>{render.token_html(ta.tokens, ta.scores, ta.special)}</div>{table}</div></div>")


def text_png(ta: TextAttribution) -> bytes:
    """The tokens' scores as a bar chart (``render.token_chart``), as PNG bytes."""
    return _png(render.token_chart(ta.tokens, ta.scores, ta.special, title=_text_head(ta, "\n")))


def _generation_head(ga: GenerationAttribution) -> str:
    target = ga.target if isinstance(ga.target, dict) else {"score": ga.target}
    score = target.get("score", "log_prob")
    against = target.get("rather_than")
    what = f"{score}" + (f" rather than {against!r}" if against is not None else "")
    return f"{ga.method} · {what} · {len(ga.generated_tokens)} generated tokens"


def generation_html(ga: GenerationAttribution) -> str:
    """A GenerationAttribution as HTML: the source x generated heatmap, then per generated
    token the prompt highlighted for it with the token's probability."""
    rows = []
    for g, token in enumerate(ga.generated_tokens):
        seen = ga.prompt_length + g
        spans = render.token_html(ga.source_tokens[:seen], ga.matrix[g, :seen], ga.special_mask[:seen])
        rows.append(f"<tr><td><b>{html.escape(repr(token))}</b><br><small>p = "
                    f"{float(ga.probabilities[g]):.3f}</small></td><td>{spans}</td></tr>")
    # The heatmap's title says what is explained; no line above it repeating that.
    return ('<div class="saliency-generation">'
            f'<div><img alt="{html.escape(_generation_head(ga), quote=True)}" '
            f'style="width:auto;max-width:100%" src="{data_uri(generation_png(ga))}"></div>'
            f'<table class="generation-rows">{"".join(rows)}</table></div>')


def generation_figure(ga: GenerationAttribution) -> Figure:
    """The matrix as a heatmap (``render.token_matrix``)."""
    return render.token_matrix(ga.source_tokens, ga.generated_tokens, ga.matrix, ga.special_mask.tolist(),
                               ga.prompt_length, title=_generation_head(ga))


def generation_png(ga: GenerationAttribution) -> bytes:
    """The matrix heatmap as PNG bytes."""
    return _png(generation_figure(ga))
