"""A self-contained HTML report of a batch of explanations (``saliency explain --out FOLDER``).

One file that opens offline: every picture is inlined as a ``data:`` URI, the style sheet is
inline, and nothing is fetched from anywhere. Everything taken from the user (file names,
sentences, labels, error messages) is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#111827}
h1{font-size:1.4em;margin-bottom:4px} .meta{color:#4b5563;font-size:.9em}
section{border-top:1px solid #e5e7eb;padding:16px 0} h2{font-size:1.1em;margin:0 0 8px}
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;text-align:center} figure img{width:224px;image-rendering:pixelated;
border:1px solid #e5e7eb} figcaption{font-size:.85em;color:#374151}
table{border-collapse:collapse;font-size:.9em} td,th{padding:2px 8px;text-align:left}
.text-method{margin:6px 0} .error{color:#b91c1c}
.cluster figure img{width:128px} .members{font-size:.8em;color:#4b5563;max-width:640px}
.flag{color:#b45309;font-weight:600}
"""


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI that a page shows without a server."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class MethodOutcome:
    """One method's result on one input, as the report shows it."""

    method: str
    time_s: float
    overlay_png: bytes | None = None  # image models
    token_html: str | None = None  # text models (already escaped by render.token_html)


@dataclass
class InputItem:
    """One input: a name for its result files, where it came from, and the image's file or
    the text."""

    name: str
    source: str
    path: Path | None = None
    text: str | None = None


@dataclass
class InputOutcome(InputItem):
    """Everything the report shows for one input; ``error`` set when the input failed."""

    image_png: bytes | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    target: str | None = None
    methods: list[MethodOutcome] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def of(cls, item: InputItem, **outcome) -> InputOutcome:
        return cls(item.name, item.source, item.path, item.text, **outcome)


@dataclass
class ClusterOutcome:
    """One strategy of the report (``--clusters``): a cluster of one group's maps."""

    group: str
    index: int
    members: list[str]
    average_png: bytes
    corners: float
    border: float
    flagged: bool = False


def _strategies_section(clusters: Sequence[ClusterOutcome]) -> str:
    if not clusters:
        return ""
    rows = []
    for c in clusters:
        flag = ' <span class="flag">looks at the corners or border</span>' if c.flagged else ""
        names = ", ".join(html.escape(m) for m in c.members[:20])
        more = f" and {len(c.members) - 20} more" if len(c.members) > 20 else ""
        rows.append(
            f'<div class="row cluster">{figure_html(c.average_png, f"{c.group} · cluster {c.index + 1}")}'
            f"<div><b>{len(c.members)} images</b> · corners {c.corners:.0%} · border "
            f'{c.border:.0%}{flag}<div class="members">{names}{more}</div></div></div>')
    return ("<section><h2>Strategies</h2><p class=\"meta\">The maps of each predicted class "
            "clustered (spectral relevance analysis): each cluster's average map and its "
            "members.</p>" + "".join(rows) + "</section>")


def figure_html(png: bytes, caption: str) -> str:
    """A captioned ``<figure>`` with the PNG inlined (the caption escaped)."""
    return (f'<figure><img alt="{html.escape(caption, quote=True)}" src="{data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def top_table_html(top: Sequence[tuple[str, float]], target: str | None) -> str:
    """The top classes as a table of (label, probability), with the class explained above it
    (no table where there are no classes: a language model's result)."""
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{p:.1%}</td></tr>" for label, p in top)
    explained = f"<p>explained: <b>{html.escape(target)}</b></p>" if target else ""
    table = f"<table><tr><th>class</th><th>probability</th></tr>{rows}</table>" if top else ""
    return f"<div>{explained}{table}</div>"


def _section(item: InputOutcome) -> str:
    head = (f"<h2>{html.escape(item.name)}</h2>"
            f'<div class="meta">{html.escape(item.source)}</div>')
    if item.error:
        return f'<section>{head}<p class="error">{html.escape(item.error)}</p></section>'
    parts = []
    if item.image_png is not None:
        figures = [figure_html(item.image_png, "input")]
        figures += [figure_html(m.overlay_png, f"{m.method} · {m.time_s:.2f} s")
                    for m in item.methods if m.overlay_png is not None]
        parts.append('<div class="row">' + "".join(figures) + top_table_html(item.top, item.target)
                     + "</div>")
    else:
        lines = [f'<div class="text-method"><b>{html.escape(m.method)}</b> '
                 f'<span class="meta">{m.time_s:.2f} s</span>{m.token_html or ""}</div>'
                 for m in item.methods]
        parts.append('<div class="row"><div>' + "".join(lines) + "</div>"
                     + top_table_html(item.top, item.target) + "</div>")
    return f"<section>{head}{''.join(parts)}</section>"


def report_html(title: str, settings: dict[str, str], inputs: Sequence[InputOutcome],
                clusters: Sequence[ClusterOutcome] = ()) -> str:
    """The whole report as one HTML document.

    Args:
        title: The page heading, e.g. the model name.
        settings: Shown under the title as ``key: value`` (methods, target, device, ...).
        inputs: One entry per input, in order.
        clusters: The strategies (``saliency explain --clusters``), shown before the inputs.

    Returns:
        A complete ``<!doctype html>`` document with every image inlined.

    Example:
        >>> page = report_html("shapes-cnn", {"methods": "gradient"}, [])
        >>> page.startswith("<!doctype html>")
        True
    """
    failed = sum(1 for item in inputs if item.error)
    summary = f"{len(inputs)} inputs" + (f", {failed} failed" if failed else "")
    meta = " · ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in settings.items())
    body = _strategies_section(clusters) + "".join(_section(item) for item in inputs)
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><div class=\"meta\">{meta}<br>{summary}</div>"
            f"{body}</body></html>")


def write_report(path: Path, title: str, settings: dict[str, str],
                 inputs: Sequence[InputOutcome], clusters: Sequence[ClusterOutcome] = ()) -> Path:
    """Write :func:`report_html` to ``path`` (UTF-8) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(title, settings, inputs, clusters), encoding="utf-8")
    return path
