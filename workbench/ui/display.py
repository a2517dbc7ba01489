"""Showing results: display options (which only re-render stored results), the interactive
heatmap, the prediction table, side-by-side panels, and a plain reading of IG's completeness."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from saliency_core import render
from saliency_core.methods import REGISTRY
from workbench.jobs.progressive import LARGE_GAP
from workbench.ui.urlstate import UrlReader
from workbench.ui.widgets import ensure, select

SIGN_LABELS = {
    "absolute": "Magnitude (|value|)",
    "positive": "Positive only (evidence for)",
    "negative": "Negative only (evidence against)",
    "signed": "Signed (for and against)",
}
# What people call the colormaps; the matplotlib names stay the values (widgets, links, exports).
CMAP_NAMES = {
    "inferno": "Inferno (black, red, yellow)",
    "magma": "Magma (black, purple, cream)",
    "viridis": "Viridis (purple, green, yellow)",
    "plasma": "Plasma (blue, pink, yellow)",
    "hot": "Hot (black, red, yellow, white)",
    "gray": "Grey (black to white)",
    "jet": "Jet (rainbow)",
    "turbo": "Turbo (smoother rainbow)",
    "RdBu_r": "Blue, white, red",
    "bwr": "Blue, white, red (bright)",
    "coolwarm": "Cool to warm (soft blue, grey, red)",
    "seismic": "Seismic (deep blue, white, deep red)",
    "PiYG": "Pink, white, green",
}
AGG_LABELS = {
    "max_abs": "Max |value| over channels",
    "l2": "L2 norm over channels",
    "sum": "|Sum over channels|",
    "mean_abs": "Mean |value|",
    "signed_sum": "Sum over channels (signed)",
}
DEFAULTS = {"cmap": "inferno", "alpha": 0.5, "clip": 99.0, "sign": "absolute", "agg": "max_abs"}
DISPLAY_PX = 320  # panels are drawn at least this wide, so 64-pixel inputs stay visible
COLORBAR_PX = 44  # below the heatmap: its colour bar and tick labels


@dataclass(frozen=True)
class DisplayOptions:
    cmap: str
    alpha: float
    clip: float
    sign: str
    agg: str

    def as_url(self) -> dict:
        return {"cmap": self.cmap, "alpha": self.alpha, "clip": self.clip, "sign": self.sign,
                "agg": self.agg}


def colormaps_for(sign: str) -> tuple[str, ...]:
    return render.DIVERGING_CMAPS if sign == "signed" else render.SEQUENTIAL_CMAPS


def cmap_name(cmap: str) -> str:
    return CMAP_NAMES.get(cmap, cmap)


def restore_display(reader: UrlReader, prefix: str) -> None:
    sign = reader.choice("sign", render.SIGN_MODES, DEFAULTS["sign"])
    cmap_default = render.DEFAULT_DIVERGING if sign == "signed" else DEFAULTS["cmap"]
    st.session_state[f"{prefix}.view.sign"] = sign
    st.session_state[f"{prefix}.view.cmap"] = reader.choice("cmap", colormaps_for(sign), cmap_default)
    st.session_state[f"{prefix}.view.alpha"] = reader.number("alpha", DEFAULTS["alpha"], 0.0, 1.0)
    st.session_state[f"{prefix}.view.clip"] = reader.number("clip", DEFAULTS["clip"], 50.0, 100.0)
    st.session_state[f"{prefix}.view.agg"] = reader.choice("agg", render.AGGREGATIONS, DEFAULTS["agg"])


def display_options(prefix: str, with_aggregation: bool = True) -> DisplayOptions:
    """Widgets for how maps look, in one row. Changing any of them re-renders the stored
    result; it never runs the model again."""
    # Wide enough for the longest sign and aggregation names at a 1366 px window.
    c_sign, c_cmap, c_alpha, c_clip, c_agg = st.columns([1.45, 1.45, 0.75, 0.75, 1.5])
    with c_sign:
        sign = select("Sign", list(SIGN_LABELS), f"{prefix}.view.sign", DEFAULTS["sign"],
                      format_func=SIGN_LABELS.get,
                      help="Which part of the signed attribution to show.")
    with c_cmap:
        key = f"{prefix}.view.cmap"
        before = st.session_state.get(key)
        signed = sign == "signed"
        cmap = select("Two-sided colormap" if signed else "Colormap", colormaps_for(sign), key,
                      render.DEFAULT_DIVERGING if signed else DEFAULTS["cmap"],
                      format_func=cmap_name,
                      help="Signed values need a two-sided colormap, whose middle colour is "
                      "zero; magnitudes use one-sided maps, dark for small values.")
        if before is not None and before != cmap:
            # The sign changed under a colormap that cannot show it: say what replaced it.
            need = ("Signed values need a two-sided colormap" if signed
                    else "Magnitudes use a one-sided colormap")
            st.caption(f"{need}, so {cmap_name(before)} became {cmap_name(cmap)}.")
    with c_alpha:
        ensure(f"{prefix}.view.alpha", DEFAULTS["alpha"])
        alpha = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, key=f"{prefix}.view.alpha")
    with c_clip:
        ensure(f"{prefix}.view.clip", DEFAULTS["clip"])
        clip = st.slider("Clip at percentile", 50.0, 100.0, step=0.5, key=f"{prefix}.view.clip",
                         help="Values above this percentile of the map's magnitudes get the "
                         "brightest colour, so a few extreme pixels cannot darken the rest.")
    with c_agg:
        agg = select("Channel aggregation", list(AGG_LABELS), f"{prefix}.view.agg",
                     DEFAULTS["agg"], format_func=AGG_LABELS.get,
                     disabled=not with_aggregation or sign != "absolute",
                     help="How the colour channels' attributions become one value per pixel in "
                     "the magnitude view. Signed views sum the channels; CAM methods already "
                     "give one value per pixel.")
    return DisplayOptions(cmap, float(alpha), float(clip), sign, agg)


def stored_options(prefix: str) -> DisplayOptions:
    """The display options as the widgets last left them, for drawing before the widgets are
    (a progressive run's preview)."""
    def value(name):
        return st.session_state.get(f"{prefix}.view.{name}", DEFAULTS[name])

    sign = value("sign")
    cmap = value("cmap")
    if cmap not in colormaps_for(sign):
        cmap = render.DEFAULT_DIVERGING if sign == "signed" else DEFAULTS["cmap"]
    return DisplayOptions(cmap, float(value("alpha")), float(value("clip")), sign, value("agg"))


@dataclass
class RenderedMap:
    raw: np.ndarray  # the aggregated map, model-input resolution, in attribution units
    scaled: np.ndarray  # in [0, 1] or [-1, 1]
    heat: np.ndarray  # uint8 RGB
    overlay: np.ndarray  # uint8 RGB at the image's resolution
    signed: bool
    clip_value: float


def aggregate(attribution: np.ndarray, options: DisplayOptions) -> np.ndarray:
    agg = options.agg
    # A signed display needs a signed aggregate; magnitudes are what the others show.
    if options.sign in ("signed", "positive", "negative") and agg in ("max_abs", "l2", "sum", "mean_abs"):
        agg = "signed_sum"
    return render.aggregate_channels(attribution, agg)


def render_map(attribution: np.ndarray, image: np.ndarray, options: DisplayOptions,
               scale: float | None = None) -> RenderedMap:
    raw = aggregate(attribution, options)
    clip_value = render.clip_value(raw, options.sign, options.clip) if scale is None else scale
    scaled = render.normalize(raw, options.sign, options.clip, scale=clip_value)
    signed = options.sign == "signed"
    heat = render.colorize(scaled, options.cmap, signed=signed)
    over = render.overlay(image, scaled, options.cmap, options.alpha, signed=signed)
    return RenderedMap(raw, scaled, heat, over, signed, clip_value)


# A map whose central 98% of values lie within this fraction of their size is drawn as one
# colour: the percentile scaling stretches nothing, so it looks like a solid block.
FLAT_SPREAD = 0.1


def flat_notice(rendered: RenderedMap, sign: str, method: str | None = None) -> str | None:
    """Words for a nearly uniform map (None for any other), which would otherwise render as a
    solid colour with nothing to say that it is flat rather than broken.

    >>> flat = RenderedMap(np.full((4, 4), 0.015), np.ones((4, 4)), None, None, False, 0.015)
    >>> flat_notice(flat, "absolute").startswith("This map is nearly uniform")
    True
    """
    shown = render.kept_part(rendered.raw, sign)
    lo, hi = np.percentile(shown, [1, 99])
    size = max(abs(float(lo)), abs(float(hi)))
    if not size > 0:
        if np.any(shown):  # a few pixels only: drawn as they are, nothing flat about them
            return None
        what = {"positive": "no positive value", "negative": "no negative value"}.get(
            sign, "no value other than zero")
        return (f"This map is blank: it has {what} for this class, so it marks no region"
                + (" (the other signs in the display options show what it has)."
                   if sign in ("positive", "negative") else "."))
    if hi - lo >= FLAT_SPREAD * size:
        return None
    spec = REGISTRY[method].spec if method in REGISTRY else None
    why = ((spec.extra.get("flat_map") if spec else None)
           or "The method found no place that matters more than the rest for this class.")
    return (f"This map is nearly uniform: 98% of its values lie within {(hi - lo) / size:.1%} "
            f"of each other, so its single colour marks no region. {why}")


def enlarge(pixels: np.ndarray, min_side: int = DISPLAY_PX) -> np.ndarray:
    """Nearest-neighbour upscaling of small images so their pixels stay crisp on screen."""
    h, w = pixels.shape[:2]
    factor = int(np.ceil(min_side / max(h, w)))
    if factor <= 1:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((w * factor, h * factor), Image.NEAREST))


def png(pixels: np.ndarray) -> bytes:
    return render.to_png(enlarge(pixels))


def screen_png(pixels: np.ndarray) -> bytes:
    """PNG for the screen at the map's own resolution, compressed for speed rather than size:
    the browser scales it up (crisp, see app.py's image-rendering rule), so a display change
    encodes 224 x 224 pixels instead of an enlarged copy, in a few milliseconds."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def screen_uri(pixels: np.ndarray) -> str:
    """The picture inline, as a data: URI for ``st.image``: it arrives in the script's own
    message, so the browser makes no second request for a media file. Encoded as ``st.image``
    encodes any RGB picture it is handed (our PNGs included: JPEG at quality 90), so the
    screen shows the pixels it always showed; for 224 x 224 that is 0.2 ms and about 14 kB,
    where a PNG would take 5 ms and 100 kB on every display change."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def lut_colorscale(cmap: str) -> list:
    """The colormap as a Plotly colour scale that paints every value in the colour
    ``render.colorize`` gives it: matplotlib's 256 entries as 256 constant bands (a smooth
    Plotly scale would interpolate between stops and drift from the PNGs)."""
    import matplotlib

    lut = matplotlib.colormaps[cmap](np.arange(256), bytes=True)[:, :3]
    scale = []
    for i, (r, g, b) in enumerate(lut.tolist()):
        colour = f"rgb({r},{g},{b})"
        scale += [[i / 256, colour], [(i + 1) / 256, colour]]
    return scale


def heatmap_figure(rendered: RenderedMap, cmap: str, height: int = DISPLAY_PX) -> go.Figure:
    """Interactive heatmap; hovering a pixel shows its raw attribution. Its colours are those
    of the PNG panels (``lut_colorscale``); how it looks is set by the page's one row of
    display widgets, so the figure carries no controls of its own."""
    signed = rendered.signed
    # float32 halves what goes to the browser (plotly sends numpy arrays as typed binary).
    heat = go.Heatmap(
        z=rendered.scaled.astype(np.float32), customdata=rendered.raw.astype(np.float32),
        colorscale=lut_colorscale(cmap), zmin=-1.0 if signed else 0.0, zmax=1.0,
        hovertemplate="x=%{x}, y=%{y}<br>attribution=%{customdata:.4g}<br>"
                      "relative to the clip value=%{z:.3f}<extra></extra>",
        # Under the map, not beside it: the map keeps the column's full width.
        colorbar={"orientation": "h", "thickness": 10, "len": 1.0, "x": 0.0, "xanchor": "left",
                  "y": 0.0, "yanchor": "top", "ypad": 6, "xpad": 0,
                  "tickvals": [-1.0, -0.5, 0.0, 0.5, 1.0] if signed else [0.0, 0.5, 1.0]},
    )
    fig = go.Figure(heat)
    # A square of at most ``height`` pixels in the top-left corner, as the pictures beside it
    # (drawn at most DISPLAY_PX wide): their edges line up at any column width.
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1, visible=False,
                     constrain="domain", constraintoward="top")
    fig.update_xaxes(visible=False, constrain="domain", constraintoward="left")
    fig.update_layout(height=height + COLORBAR_PX,
                      margin={"l": 0, "r": 0, "t": 0, "b": COLORBAR_PX})
    return fig


def heat_trace(spec: dict) -> dict:
    """The heatmap trace of a figure's JSON spec."""
    return next(t for t in spec["data"] if t.get("type") == "heatmap")


def top_predictions(probabilities: np.ndarray, labels: list[str], k: int = 5) -> list[dict]:
    order = np.argsort(-probabilities)[:k]
    return [{"class": f"{labels[i]}" if i < len(labels) else str(i), "index": int(i),
             "probability": float(probabilities[i])} for i in order]


def prediction_table(probabilities: np.ndarray, labels: list[str], k: int = 5) -> None:
    st.dataframe(
        top_predictions(probabilities, labels, k),
        hide_index=True,
        width="stretch",
        column_config={
            "class": st.column_config.TextColumn("Class"),
            "index": st.column_config.NumberColumn("Index", width="small"),
            "probability": st.column_config.ProgressColumn(
                "Probability", min_value=0.0, max_value=1.0, format="percent"),
        },
    )


def completeness_reading(meta: dict, subject: str = "the image",
                         measured: list[tuple[int, float]] | None = None,
                         most_steps: int | None = None,
                         can_search: bool = False) -> tuple[str, str] | None:
    """(severity, sentence) explaining IG's completeness check in plain words, or None.

    Advice names only what this run did not already do, and only numbers that were measured:
    ``measured`` is what ``workbench.jobs.compute.gap_search`` found above this run's steps
    ((steps, gap) pairs); ``most_steps`` the method's limit, where raising them is no advice;
    ``can_search`` says the page offers the button that measures it."""
    try:
        total = float(meta["sum_attribution"][0])
        f_x = float(meta["f_x"][0])
        f_b = float(meta["f_baseline"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    change = f_x - f_b
    gap = total - change
    relative = abs(gap) / max(abs(change), 1e-12)
    facts = (f"The attributions add up to {total:.4g}; the model's score for the target went "
             f"from {f_b:.4g} at the baseline to {f_x:.4g} for {subject}, a change of "
             f"{change:.4g}. The gap is {gap:.3g} ({relative:.1%} of the change).")
    if abs(change) < 1e-6:
        return "warning", facts + (" The baseline scores the same as the image, so the "
                                   "attributions have nothing to distribute: pick another "
                                   "baseline.")
    if relative <= 0.01:
        return "success", facts + " The path integral is accurate: the map accounts for the " \
                                  "whole change in the score."
    steps = (meta.get("params") or {}).get("steps")
    at_most = most_steps is not None and steps is not None and int(steps) >= most_steps
    if relative <= LARGE_GAP:
        return "info", facts + " Close enough for viewing" + (
            "." if at_most else "; more steps would tighten it.")
    sentence = facts + (" That is a large gap: the integral is poorly approximated, so the map "
                        "may misstate how much each pixel matters.")
    closing = next(((n, g) for n, g in measured or [] if g <= LARGE_GAP), None)
    if closing is not None:
        sentence += (f" Measured on {subject}: {closing[0]} steps bring the gap down to "
                     f"{closing[1]:.1%}; set Steps to {closing[0]} (that result is ready).")
    elif measured:
        last, last_gap = measured[-1]
        sentence += (f" Measured on {subject}: even {last} steps leave a gap of {last_gap:.1%}, "
                     "so more steps will not close it here; another baseline changes the path "
                     "(the Guide compares them).")
    elif at_most:
        sentence += (f" Steps are already at their limit of {most_steps}; another baseline "
                     "changes the path (the Guide compares them).")
    elif can_search:
        sentence += (f" *Find the steps that close the gap* measures, on {subject}, how many "
                     f"steps bring it under {LARGE_GAP:.0%}.")
    else:
        sentence += " Raise the number of steps" + (f" above {steps}." if steps else ".")
    return "warning", sentence


def scoreboard_rows(rows: list[dict]) -> list[dict]:
    """The columns of evaluation.scoreboard worth a table (curves stay in the export)."""
    out = []
    for row in rows:
        item = {"rank": row["rank"], "method": row["method"],
                "deletion AUC ↓": round(float(row["deletion_auc"]), 4),
                "insertion AUC ↑": round(float(row["insertion_auc"]), 4)}
        if "pointing" in row:
            item["pointing ↑"] = round(float(row["pointing"]), 3)
            item["mass in mask ↑"] = round(float(row["mass_in_mask"]), 3)
        out.append(item)
    return out
