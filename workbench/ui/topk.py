"""The "top-k classes" view: the maps of the k most probable classes side by side.

All k maps come from ``saliency_core.attribute_targets``: one forward pass and one batched
backward pass, not k runs. It serves the Grad-CAM family and the plain gradient methods; for
any other method the view explains the classes with Grad-CAM and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.harness.multi_target import CAM_FORMULAS, INPUT_METHODS
from workbench.jobs import compute, engine
from workbench.jobs.results import result_key
from workbench.ui import display, plaintext
from workbench.ui.widgets import ensure

FALLBACK = "gradcam"
MAX_K = 10
PER_ROW = 5


@dataclass(frozen=True)
class TopK:
    method: str
    maps: np.ndarray  # [K, H, W] or [K, C, H, W], raw and signed
    targets: list[int]
    probabilities: list[float]
    metadata: dict

    @property
    def nbytes(self) -> int:
        return int(self.maps.nbytes) + 2048


def method_for(method: str) -> str:
    return method if method in CAM_FORMULAS or method in INPUT_METHODS else FALLBACK


def compute_top_k(loaded, device: str, x: torch.Tensor, digest: str, method: str, params: dict,
                  k: int) -> TopK:
    """Maps of the k most probable classes, from the shared result cache when possible."""
    used = method_for(method)
    own = {name: params[name] for name in ("layer", "upsample") if name in params} \
        if used == method and used in CAM_FORMULAS else {}
    key = result_key("topk", compute.model_identity(loaded), device, digest, used, own, k)
    hit = compute.cached(key)
    if hit is not None:
        return hit
    out = engine.for_models(loaded).call("attribute_targets", loaded, x, method=used, top_k=k,
                                         **own)
    targets = out.targets.tolist()
    result = TopK(method=used, maps=out.attribution.detach().float().cpu().numpy(),
                  targets=targets,
                  probabilities=[float(out.probabilities[t]) for t in targets],
                  metadata=dict(out.metadata))
    compute.result_cache().put(key, result)
    return result


def top_k_section(prefix: str, loaded, model_name: str, device: str, x: torch.Tensor,
                  digest: str, view: np.ndarray, method: str, params: dict,
                  options: display.DisplayOptions) -> None:
    """A toggle and, when on, the k overlays in a row, with the current display options."""
    ensure(f"{prefix}.topk", False)
    ensure(f"{prefix}.topk_k", 5)
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    on = left.toggle("Top classes side by side", key=f"{prefix}.topk",
                     help="Explain each of the most probable classes; one forward and one "
                     "batched backward pass for all of them.")
    classes = len(loaded.labels)
    k = right.number_input("How many classes", 2, min(MAX_K, classes), step=1,
                           key=f"{prefix}.topk_k", disabled=not on)
    if not on:
        return
    try:
        top = compute_top_k(loaded, device, x, digest, method, params, int(k))
    except SaliencyError as exc:
        plaintext.error(f"Top classes: {exc}")
        return
    used = saliency_core.get_method(top.method).label
    if top.method != method:
        st.caption(f"{saliency_core.get_method(method).label} has no several-class form; these "
                   f"maps are {used}.")
    st.caption(f"{used} for the {len(top.targets)} most probable classes · one forward and one "
               f"{'batched ' if top.metadata.get('backward_batched') else ''}backward pass · "
               f"{top.metadata.get('time_s', 0.0):.2f} s")
    for start in range(0, len(top.targets), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, i in zip(cols, range(start, min(start + PER_ROW, len(top.targets)))):
            rendered = display.render_map(top.maps[i], view, options)
            t = top.targets[i]
            label = loaded.labels[t] if t < len(loaded.labels) else str(t)
            col.image(display.screen_png(rendered.overlay), width="stretch",
                      caption=f"{plaintext.plain(label)} · {top.probabilities[i]:.1%}")
