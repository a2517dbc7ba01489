"""From raw attributions to pictures: channel aggregation, robust normalisation, colormaps,
overlays and highlighted tokens. NumPy, PIL and matplotlib only, so every visual decision can be
tested on plain arrays and reused outside the app.

The raw attribution stays untouched; each function here returns a new array. Display options
(colormap, opacity, clipping, sign) therefore never send work back to the model.
"""

from __future__ import annotations

import html
import io

import numpy as np
from PIL import Image

from saliency_core.io.interop import as_array

AGGREGATIONS = ("max_abs", "l2", "sum", "mean_abs", "signed_sum")
SIGN_MODES = ("absolute", "positive", "negative", "signed")
# Sequential maps suit magnitudes; a diverging map is used for signed maps so that zero sits
# on the neutral middle colour whatever map was picked for magnitudes.
SEQUENTIAL_CMAPS = ("inferno", "magma", "viridis", "plasma", "hot", "gray", "jet", "turbo")
DIVERGING_CMAPS = ("RdBu_r", "bwr", "coolwarm", "seismic", "PiYG")
DEFAULT_DIVERGING = "RdBu_r"


def _as_numpy(array) -> np.ndarray:
    # Tensors, arrays and Captum's one-element tuples alike (saliency_core/io/interop.py).
    return np.nan_to_num(as_array(array), nan=0.0, posinf=0.0, neginf=0.0)


def aggregate_channels(attr, mode: str = "max_abs") -> np.ndarray:
    """[C, H, W] (or [1, C, H, W]) attribution -> one float value per pixel [H, W].

    "max_abs": largest magnitude over channels; "l2": Euclidean norm; "sum": magnitude of the
    channel sum (channels that cancel count for little); "mean_abs": mean magnitude;
    "signed_sum": the channel sum with its sign, for signed displays.
    A map that already is [H, W] (CAM methods) is returned as it is, for every mode: there
    are no channels left to combine, and a CAM's sign is the method's own decision.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {mode!r}")
    a = _as_numpy(attr)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return a.copy()
    if a.ndim != 3:
        raise ValueError(f"expected an attribution [C, H, W] or [H, W]; got shape {a.shape}")
    if mode == "max_abs":
        return np.abs(a).max(axis=0)
    if mode == "l2":
        return np.sqrt((a * a).sum(axis=0))
    if mode == "sum":
        return np.abs(a.sum(axis=0))
    if mode == "mean_abs":
        return np.abs(a).mean(axis=0)
    return a.sum(axis=0)  # signed_sum


def clip_value(map2d, sign: str = "absolute", percentile: float = 99.0) -> float:
    """The value that ``normalize`` maps to 1: the given percentile of the magnitudes the sign
    mode keeps. Compare uses it to put several maps on one shared scale."""
    return float(clip_values(map2d, sign, (percentile,))[0])


def clip_values(map2d, sign: str = "absolute", percentiles=(99.0,)) -> np.ndarray:
    """``clip_value`` at several percentiles from one sort (the figure's clipping slider)."""
    if sign not in SIGN_MODES:
        raise ValueError(f"sign must be one of {', '.join(SIGN_MODES)}; got {sign!r}")
    q = np.asarray(percentiles, dtype=np.float64)
    if not ((q > 0) & (q <= 100)).all():
        raise ValueError(f"percentile must be in (0, 100]; got {percentiles}")
    m = _as_numpy(map2d)
    if sign == "positive":
        values = m[m > 0]
    elif sign == "negative":
        values = -m[m < 0]
    else:
        values = np.abs(m[m != 0])
    if values.size == 0:
        return np.zeros(q.shape)
    # Percentile over the non-zero values: ReLU'd CAMs and rectified maps are mostly zero, and
    # counting those zeros would pull the clip value down to nothing.
    return np.percentile(values, q)


def kept_part(map2d, sign: str = "absolute") -> np.ndarray:
    """What a sign mode shows of a signed map, before scaling."""
    m = _as_numpy(map2d)
    if sign == "positive":
        return np.maximum(m, 0.0)
    if sign == "negative":
        return np.maximum(-m, 0.0)
    if sign == "absolute":
        return np.abs(m)
    return m


def normalize(map2d, sign: str = "absolute", percentile: float = 99.0,
              scale: float | None = None) -> np.ndarray:
    """Map to [0, 1] ([-1, 1] for ``sign="signed"``), clipping at a percentile.

    A few extreme values would otherwise squeeze everything else into the darkest colours (the
    "all black" map); clipping at the 99th percentile keeps the rest visible. ``scale``
    overrides the clip value (a shared scale across maps). An all-zero map stays zero.
    """
    m = _as_numpy(map2d)
    c = clip_value(m, sign, percentile) if scale is None else float(scale)
    shown = kept_part(m, sign)
    if not c > 0:
        return np.zeros_like(shown)
    lo = -1.0 if sign == "signed" else 0.0
    return np.clip(shown / c, lo, 1.0)


def _colormap(name: str):
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}") from None


def colorize(map2d, cmap: str = "inferno", signed: bool | None = None) -> np.ndarray:
    """Normalised map -> uint8 RGB [H, W, 3].

    ``signed`` maps [-1, 1] onto the whole colormap with 0 in the middle (use a diverging map);
    otherwise [0, 1] is mapped. ``None`` decides from the data: any negative value means signed.
    """
    m = _as_numpy(map2d)
    if m.ndim != 2:
        raise ValueError(f"colorize needs a 2-D map; got shape {m.shape}")
    if signed is None:
        signed = bool((m < 0).any())
    t = (np.clip(m, -1, 1) + 1) / 2 if signed else np.clip(m, 0, 1)
    rgba = _colormap(cmap)(t, bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def resize_map(map2d, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W); used when a map and its image differ."""
    m = _as_numpy(map2d).astype(np.float32)
    h, w = size
    if m.shape == (h, w):
        return m.astype(np.float64)
    resized = Image.fromarray(m).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def overlay(image, map2d, cmap: str = "inferno", alpha: float = 0.5,
            signed: bool | None = None, by_strength: bool = False) -> np.ndarray:
    """Blend the coloured map over the image: uint8 [H, W, 3].

    ``image`` is uint8 [H, W, 3] (or [H, W]); the map is resized to the image when their sizes
    differ (a CAM at layer resolution, or a model input smaller than the photograph).
    ``by_strength`` scales the opacity of each pixel by the map's magnitude there, so the
    picture stays visible where the map is near zero (useful for sparse gradient maps).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image [H, W, 3]; got shape {img.shape}")
    img = img[..., :3].astype(np.float64)
    m = _as_numpy(map2d)
    if signed is None:
        signed = bool((m < 0).any())
    m = resize_map(m, img.shape[:2])
    colours = colorize(m, cmap, signed=signed).astype(np.float64)
    weight = alpha * (np.clip(np.abs(m), 0.0, 1.0)[..., None] if by_strength else 1.0)
    out = img + weight * (colours - img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] (or [H, W]) -> PNG bytes, for downloads and exports."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_png needs uint8 pixels; got {arr.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


# Markers tokenizers put on word pieces: WordPiece continues a word with "##"; SentencePiece
# and byte-level BPE start a new word with "▁" or "Ġ".
_CONTINUATION = "##"
_WORD_START = ("▁", "Ġ")


def token_display(token: str) -> tuple[str, bool]:
    """(text to show, whether a space goes before it) for one tokenizer token."""
    if token.startswith(_CONTINUATION) and len(token) > 2:
        return token[2:], False
    for marker in _WORD_START:
        if token.startswith(marker):
            return token[len(marker):], True
    return token, True


# The one sign convention for token scores, in the app, the HTML report and the CLI's chart:
# red is evidence for the target, blue against.
TOKEN_FOR_RGB = (220, 38, 38)
TOKEN_AGAINST_RGB = (37, 99, 235)


def token_colour_hex(value: float) -> str:
    """The solid colour of a score's sign, as #rrggbb (for charts)."""
    return "#{:02x}{:02x}{:02x}".format(*(TOKEN_FOR_RGB if value >= 0 else TOKEN_AGAINST_RGB))


def _token_colour(value: float) -> str:
    """Signed colours (see TOKEN_FOR_RGB); alpha is |value|."""
    v = max(-1.0, min(1.0, float(value)))
    rgb = ", ".join(map(str, TOKEN_FOR_RGB if v >= 0 else TOKEN_AGAINST_RGB))
    return f"rgba({rgb}, {abs(v):.3f})"


def token_html(tokens, scores, special=None) -> str:
    """Tokens as HTML spans coloured by their signed score (scaled by the largest magnitude).

    Every token is escaped; special tokens ([CLS], [SEP], <s>) are shown greyed and excluded
    from the scale. Each span's title holds the raw score for hovering.
    """
    tokens = list(tokens)
    values = _as_numpy(scores).reshape(-1)
    if len(tokens) != values.size:
        raise ValueError(f"{len(tokens)} tokens but {values.size} scores")
    special = [False] * len(tokens) if special is None else [bool(s) for s in special]
    if len(special) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(special)} special flags")
    ordinary = np.array([not s for s in special], dtype=bool)
    peak = float(np.abs(values[ordinary]).max()) if ordinary.any() else 0.0
    parts = []
    for i, (token, value, is_special) in enumerate(zip(tokens, values, special)):
        text, space = token_display(token)
        sep = " " if space and i > 0 else ""
        title = f"{token}: {value:+.4g}"
        if is_special:
            style = "color:#9ca3af;font-size:0.85em;"
        else:
            scaled = value / peak if peak > 0 else 0.0
            style = f"background-color:{_token_colour(scaled)};border-radius:3px;padding:1px 2px;"
        parts.append(
            f'{sep}<span class="token" title="{html.escape(title, quote=True)}" '
            f'style="{style}">{html.escape(text)}</span>'
        )
    return '<div class="token-saliency" style="line-height:2.0;">' + "".join(parts) + "</div>"
