"""Sanity checks page: does a method's map depend on what the model learned?

Adebayo et al. (2018): re-initialise the model layer by layer from the logits down and watch
each method's map; a map that stays the same explains the input, not the model. Where a twin
model trained on shuffled labels exists, compare with its maps too (data randomization).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import saliency_core
from saliency_core import evaluation, render
from saliency_core.errors import SaliencyError
from workbench import compute, costs, plaintext
from workbench.display import enlarge
from workbench.inputs import default_sample, input_picker
from workbench.models import (
    default_device,
    default_model,
    devices,
    get_model,
    usable_models_or_stop,
)
from workbench.navigation import ensure_app_navigation
from workbench.share import ShareStore
from workbench.widgets import ensure, select

ensure_app_navigation()

P = "sanity"
METHODS = {spec.name: spec for spec in saliency_core.methods() if spec.family in ("input", "cam")}
DEFAULT_METHODS = ["gradient", "integrated_gradients", "guided_backprop", "gradcam"]
FAST_PARAMS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"samples": 8}}
METRIC_LABELS = {
    "spearman_abs": "Spearman rank correlation, absolute maps",
    "spearman_signed": "Spearman rank correlation, signed maps",
    "ssim": "SSIM (structural similarity)",
    "hog": "HOG-feature similarity",
}
NO_PARTNER = "(none)"
STRIP_PX = 88  # seven maps (original + six layers of the shapes CNN) fit one row

st.title("Sanity checks")
st.caption(
    "A saliency map can look convincing and still explain nothing. Following Adebayo et al., "
    "*Sanity Checks for Saliency Maps* (2018), this page re-initialises the model's layers from "
    "the logits down, on a private copy, and measures how much each method's map changes. A "
    "method whose map barely changes while the model is being destroyed does not explain the "
    "model. The same question is asked of a model trained on shuffled labels.")

store = ShareStore()
names = usable_models_or_stop("image")

with st.sidebar:
    st.header("Model")
    model_name = select("Model", names, f"{P}.model",
                        "shapes-cnn" if "shapes-cnn" in names else default_model("image", names))
    device = select("Device", devices(), f"{P}.device", default_device())
    st.header("Input")
    current, upload_error = input_picker(P, store, default_sample(model_name))
    st.header("Methods")
    ensure(f"{P}.methods", DEFAULT_METHODS)
    chosen = st.multiselect("Methods to test", list(METHODS), key=f"{P}.methods",
                            format_func=lambda n: METHODS[n].label)
    fast = st.checkbox("Faster settings", key=f"{P}.fast", value=False,
                       help="Integrated Gradients with 16 steps and SmoothGrad with 8 samples "
                       "instead of their defaults; useful on large models.")
    st.header("Test")
    mode = st.radio("Parameter randomization", ["cascading", "independent"], key=f"{P}.test_mode",
                    horizontal=True, format_func=str.capitalize,
                    help="Cascading: layers are re-initialised cumulatively, from the logits "
                    "down. Independent: one layer at a time, the others as trained.")
    seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                               key=f"{P}.seed", help="Seeds the re-initialised weights."))
    threshold = st.slider("Verdict threshold (Spearman, absolute maps)", 0.05, 0.95, 0.5, 0.05,
                          key=f"{P}.threshold",
                          help="A method passes when the mean similarity of its maps to the "
                          "original map over the cascade is below this value.")
    partner_default = evaluation.random_labels_partner(model_name)
    partners = [NO_PARTNER] + [n for n in names if n != model_name]
    partner = select("Model trained on shuffled labels", partners, f"{P}.partner",
                     partner_default if partner_default in partners else NO_PARTNER,
                     help="For the data randomization test: the same architecture trained on "
                     "randomly permuted labels. The bundled shapes-cnn has one.")
    run_clicked = st.button("Run the sanity checks", type="primary", key=f"{P}.run",
                            disabled=not chosen, width="stretch")

if upload_error:
    plaintext.error(upload_error)
if not chosen:
    st.warning("Pick at least one method in the sidebar.")
    st.stop()
if current is None:
    st.info("Upload an image (PNG, JPEG, WebP, BMP or TIFF) or pick a sample in the sidebar.")
    st.stop()
for notice in current.notices:
    plaintext.info(notice)

try:
    loaded = get_model(model_name, device)
    x = loaded.preprocess(current.image)
except SaliencyError as exc:
    plaintext.error(exc)
    st.stop()
model_view = loaded.unpreprocess(x)
params = FAST_PARAMS if fast else {}
run_key = (model_name, device, compute.pixels_digest(current.pixels), tuple(chosen), mode, seed,
           fast, partner)
stored = st.session_state.get(f"{P}.result")

if run_clicked:
    stored = None
    status = st.empty()
    bar = st.progress(0.0, text="Starting...")
    try:
        def report(label):
            def progress(done, total):
                bar.progress(min(1.0, done / max(total, 1)),
                             text=f"{label}: {done} of {total} maps computed")
            return progress

        # Through the device's queue like every other model request: one map per method for
        # the trained model and for each randomization step (at most DEFAULT_MAX_STEPS).
        method_passes = sum(costs.estimate_passes(m, params.get(m, {})) for m in chosen)
        cascade = compute.scheduled(
            P, loaded, device, f"sanity-{mode}", ("sanity", run_key),
            lambda: compute.engine_call(
                "parameter_randomization", loaded, x, chosen, mode=mode, seed=seed, threshold=threshold,
                method_params=params,
                progress=report(f"{mode.capitalize()} randomization of {model_name}")),
            passes=method_passes * (evaluation.DEFAULT_MAX_STEPS + 1))
        data = None
        if partner != NO_PARTNER:
            other = get_model(partner, device)
            data = compute.scheduled(
                P, loaded, device, "sanity-data", ("sanity-data", run_key),
                lambda: compute.engine_call(
                    "data_randomization", loaded, other, x, chosen, target=cascade.targets.tolist(),
                    threshold=threshold, method_params=params,
                    progress=report(f"Data randomization against {partner}")),
                passes=2 * method_passes)
        stored = {"key": run_key, "cascade": cascade, "data": data}
        st.session_state[f"{P}.result"] = stored
    except SaliencyError as exc:
        status.error(str(exc))
    finally:
        bar.empty()

if stored is None:
    st.image(enlarge(model_view, 192), caption=f"Input as the model sees it · {current.label}")
    st.info("Press **Run the sanity checks** in the sidebar. On the bundled shapes model four "
            "methods take a few seconds; large models take longer (see *Faster settings*).")
    st.stop()
if stored["key"] != run_key:
    st.warning("The settings changed since this result was computed; press **Run the sanity "
               "checks** to update it. Showing the previous result.")

cascade: evaluation.RandomizationResult = stored["cascade"]
data: evaluation.DataRandomizationResult | None = stored["data"]
labels = getattr(loaded, "labels", [])
target = int(cascade.targets[0])
st.caption(f"Explaining class **{plaintext.plain(labels[target] if target < len(labels) else target)}** (the "
           f"trained model's prediction) for every map · randomization seed {cascade.seed} · "
           f"layers from the logits down: {', '.join(unit.name for unit in cascade.units)}")


def heat(map2d: np.ndarray) -> np.ndarray:
    return enlarge(render.colorize(render.normalize(map2d, "absolute", 99.0)), STRIP_PX)


# ---- verdicts -----------------------------------------------------------------------------
st.subheader("Verdicts")
rows = []
verdicts = cascade.verdicts(threshold) if cascade.mode == "cascading" else {}
dverdicts = data.verdicts(threshold) if data is not None else {}
for m in cascade.methods:
    curve = cascade.mean_curve(m)
    row = {"method": METHODS[m].label}
    if cascade.mode == "cascading":
        row["cascade mean"] = cascade.cascade_mean(m)
        row["fully random"] = cascade.final(m)
        row["SSIM (fully random)"] = cascade.final(m, "ssim")
        row["parameter test"] = verdicts[m].text
    else:
        weakest = int(np.argmin(curve[1:])) + 1
        row["most sensitive to"] = cascade.steps[weakest]
        row["lowest similarity"] = float(curve[weakest])
        row["highest similarity"] = float(curve[1:].max())
    if data is not None:
        row["shuffled labels"] = data.mean(m)
        row["data test"] = dverdicts[m].text
    rows.append(row)
numbers = {k for row in rows for k, v in row.items() if isinstance(v, float)}
st.dataframe(rows, hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(k, format="%.2f") for k in numbers})
if cascade.mode == "cascading":
    kept = [METHODS[m].label for m in cascade.methods if not verdicts[m].passes]
    summary = (f"Threshold {threshold:.2f} on the mean Spearman correlation (absolute maps) over "
               "the whole cascade. ")
    if kept:
        st.warning(summary + f"Maps that stay alike while the model is randomized: "
                   f"{', '.join(kept)}. They show the input more than the model.")
    else:
        st.success(summary + "Every tested method's map changes when the model is randomized.")
else:
    st.info("Independent randomization re-initialises one layer at a time; verdicts are given "
            "for the cascading test. The table shows which layer each map depends on most.")

# ---- similarity curves --------------------------------------------------------------------
st.subheader("Similarity to the original map, step by step")
metric = st.radio("Similarity measure", list(METRIC_LABELS), key=f"{P}.metric", horizontal=True,
                  format_func=lambda k: METRIC_LABELS[k].split(",")[0].split(" (")[0]
                  + (" (signed)" if k == "spearman_signed" else ""))
fig = go.Figure()
for m in cascade.methods:
    fig.add_trace(go.Scatter(x=cascade.steps, y=cascade.mean_curve(m, metric), mode="lines+markers",
                             name=METHODS[m].label))
if metric == evaluation.VERDICT_METRIC:
    fig.add_hline(y=threshold, line_dash="dash", line_color="grey",
                  annotation_text=f"threshold {threshold:.2f}")
fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                  yaxis={"title": METRIC_LABELS[metric], "range": [-1.05, 1.05]},
                  xaxis={"title": "randomized" if cascade.mode == "cascading" else "layer re-initialised alone"},
                  legend={"orientation": "h", "yanchor": "bottom", "y": 1.02})
st.plotly_chart(fig, key=f"{P}.curves", config={"displayModeBar": False})

# ---- strip of maps ------------------------------------------------------------------------
st.subheader("Maps, layer by layer")
st.caption("Magnitude of each map (channels summed), each scaled to its own 99th percentile. "
           "The first map is the trained model's.")
st.image(enlarge(model_view, STRIP_PX), caption="Input", width=STRIP_PX)
for m in cascade.methods:
    verdict_text = f" · {verdicts[m].text}" if verdicts else ""
    st.markdown(f"**{METHODS[m].label}**{verdict_text}")
    maps = cascade.maps[m]
    curve = cascade.mean_curve(m)
    st.image([heat(ms.abs[0]) for ms in maps], width=STRIP_PX,
             caption=[f"{s} · {c:.2f}" if i else "original" for i, (s, c) in
                      enumerate(zip(cascade.steps, curve))])

# ---- data randomization -------------------------------------------------------------------
st.subheader("Data randomization")
if data is None:
    hint = (f" The twin model {partner_default} is not on this machine." if partner_default
            and partner_default not in names else "")
    st.info("Not run: choose a model trained on shuffled labels in the sidebar (the same "
            "architecture as this model)." + hint)
else:
    st.caption(f"Maps of {plaintext.plain(data.model_name)} (left) and of "
               f"{plaintext.plain(data.random_model_name)}, trained on "
               "shuffled labels (right), for the same class. Similar maps mean the method does "
               "not reflect what the model learned from its labels.")
    cols = st.columns(min(4, len(data.methods)))
    for i, m in enumerate(data.methods):
        trained, shuffled = data.maps[m]
        with cols[i % len(cols)]:
            st.markdown(f"**{METHODS[m].label}** · Spearman {data.mean(m):.2f} · "
                        f"{dverdicts[m].text}")
            st.image([heat(trained.abs[0]), heat(shuffled.abs[0])], width=STRIP_PX,
                     caption=["trained", "shuffled labels"])
