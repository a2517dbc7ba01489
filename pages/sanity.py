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
from saliency_core.methods import applicable_to
from workbench.hosting.share import ShareStore
from workbench.jobs import compute, engine
from workbench.ui import page, plaintext, progress, session
from workbench.ui import sanity as follow
from workbench.ui.display import enlarge
from workbench.ui.inputs import default_sample, input_picker, restore_input
from workbench.ui.widgets import ensure, methods_multiselect, select

P = "sanity"
METHODS = {spec.name: spec for spec in saliency_core.methods() if spec.name in evaluation.image_methods()}
# Those the loaded model cannot run are left out: a CNN gets the first four, a vision transformer
# Grad-CAM beside the two attention methods instead of Guided Backprop.
DEFAULT_METHODS = ["gradient", "integrated_gradients", "guided_backprop", "gradcam",
                   "attention_rollout", "attention_relevance"]
FAST_PARAMS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"samples": 8}}
MODES = ["cascading", "independent"]
METRIC_LABELS = {
    "spearman_abs": "Spearman rank correlation, absolute maps",
    "spearman_signed": "Spearman rank correlation, signed maps",
    "ssim": "SSIM (structural similarity)",
    "hog": "HOG-feature similarity",
}
NO_PARTNER = follow.NO_PARTNER
STRIP_PX = 88  # seven maps (original + six layers of the shapes CNN) fit one row
MAX_SEED = 2**31 - 1

names = page.start(
    P, "image", "Sanity checks",
    "A saliency map can look convincing and still explain nothing. Following Adebayo et al., "
    "*Sanity Checks for Saliency Maps* (2018), this page re-initialises the model's layers from "
    "the logits down, on a private copy, and measures how much each method's map changes. A "
    "method whose map barely changes while the model is being destroyed does not explain the "
    "model. The same question is asked of a model trained on shuffled labels.")
store = ShareStore()
first_model = "shapes-cnn" if "shapes-cnn" in names else None


if (reader := page.visit(P)) is not None:
    model0 = page.restore_model(reader, P, names, "image", default=first_model)
    restore_input(reader, P, store, default_sample(model0))
    page.restore_methods(reader, P, METHODS, DEFAULT_METHODS)
    st.session_state[f"{P}.fast"] = reader.flag("fast", False)
    st.session_state[f"{P}.test_mode"] = reader.choice("test", MODES, "cascading")
    st.session_state[f"{P}.seed"] = reader.number("seed", 0, 0, MAX_SEED, integer=True)
    # The slider moves in steps of 0.05: a link's value is put on that grid.
    threshold0 = reader.number("threshold", evaluation.DEFAULT_THRESHOLD, 0.05, 0.95)
    st.session_state[f"{P}.threshold"] = round(round(threshold0 / 0.05) * 0.05, 2)
    options0, twin0 = follow.partner_options(model0, names)
    st.session_state[f"{P}.partner"] = reader.choice("partner", options0, twin0)
    st.session_state[f"{P}.metric"] = reader.choice("metric", list(METRIC_LABELS),
                                                    evaluation.VERDICT_METRIC)
    follow.settled(P, model0)
    page.restored(reader, P)

with st.sidebar:
    st.header("Model")
    model_name, device = page.model_picker(P, names, "image", default=first_model)
    follow.follow_model(P, model_name, names)
    st.header("Input")
    current, upload_error = input_picker(P, store, default_sample(model_name))

with page.stop_on_error():
    loaded = page.load(model_name, device)

with st.sidebar:
    st.header("Methods")
    # Only what runs on this model: the attention methods need a vision transformer, the
    # ReLU-rule ones a model without smooth activations.
    chosen, not_here = methods_multiselect("Methods to test", METHODS, f"{P}.methods",
                                           DEFAULT_METHODS, applicable_to(loaded.model),
                                           model_name)
    if not_here:
        st.caption(f"Not offered for {plaintext.plain(model_name)}, which cannot run them: "
                   + ", ".join(METHODS[n].label for n in not_here) + ".")
    ensure(f"{P}.fast", False)
    fast = st.checkbox("Faster settings", key=f"{P}.fast",
                       help="Integrated Gradients with 16 steps and SmoothGrad with 8 samples "
                       "instead of their defaults; useful on large models.")
    st.header("Test")
    mode = select("Parameter randomization", MODES, f"{P}.test_mode", "cascading",
                  widget=st.radio, horizontal=True, format_func=str.capitalize,
                  help="Cascading: layers are re-initialised cumulatively, from the logits "
                  "down. Independent: one layer at a time, the others as trained.")
    ensure(f"{P}.seed", 0)
    seed = int(st.number_input("Seed", min_value=0, max_value=MAX_SEED, step=1, key=f"{P}.seed",
                               help="Seeds the re-initialised weights."))
    ensure(f"{P}.threshold", evaluation.DEFAULT_THRESHOLD)
    threshold = st.slider("Verdict threshold (Spearman, absolute maps)", 0.05, 0.95, step=0.05,
                          key=f"{P}.threshold",
                          help="A method passes when the mean similarity of its maps to the "
                          "original map over the cascade is below this value.")
    partners, partner_default = follow.partner_options(model_name, names)
    partner = select("Model trained on shuffled labels", partners, f"{P}.partner",
                     partner_default,
                     help="For the data randomization test: the same architecture trained on "
                     "randomly permuted labels. The bundled shapes-cnn has one.")
    if partner == NO_PARTNER and evaluation.random_labels_partner(model_name) not in names:
        st.caption(follow.no_partner_note(model_name, names))
    run_clicked = st.button("Run the sanity checks", type="primary", key=f"{P}.run",
                            disabled=not chosen, width="stretch")

page.show_problems(P)
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

with page.stop_on_error():
    x = loaded.preprocess(current.image)
    other = page.load(partner, device) if partner != NO_PARTNER else None
# Checked before Run: an unfit partner would otherwise be found out only after the long
# parameter test.
unfit = evaluation.partner_problem(loaded, other) if other is not None else None
if unfit is not None:
    plaintext.warning(f"The data randomization test is skipped: {unfit} Only the parameter "
                      "randomization test runs.")
    other = None
if (here := engine.runs_here_because(loaded)) is not None:
    plaintext.info(here)
model_view = loaded.unpreprocess(x)
params = FAST_PARAMS if fast else {}
digest = compute.pixels_digest(current.pixels)
computation = compute.sanity_key(loaded, device, digest, chosen, mode, seed, params, other)


# The share button heads the result, as on the other pages.
share_area = st.container()


def share() -> None:
    """The URL describes this view; whoever opens the link sees the same result while it is
    cached (on every replica where the shared tier is configured), else the same settings,
    ready to run."""
    settings = {"model": model_name, "device": device, "input": current.source,
                "methods": ",".join(chosen), "fast": fast, "test": mode, "seed": seed,
                "threshold": threshold, "partner": partner,
                "metric": st.session_state.get(f"{P}.metric", evaluation.VERDICT_METRIC)}
    with share_area:
        session.share_box(session.publish(P, settings),
                          uploaded=current.source.startswith("upload:"))


result = compute.cached(computation)
if run_clicked:
    progress.clear_stopped()
    try:
        with progress.Progress(f"Sanity checks on {model_name}", computation, f"{P}.stop",
                               unit="maps") as bar:
            result = compute.sanity_checks(session.visitor(), loaded, device, x, digest, chosen,
                                           mode, seed, params, other, threshold, progress=bar)
    except SaliencyError as exc:
        plaintext.error(exc)
elif result is None and progress.was_stopped(computation):
    st.warning("Stopped before it finished; press **Run the sanity checks** to start again.")

stale = False
if result is not None:
    follow.remember(P, computation, result, model_name, model_view, current.label)
elif (last := follow.previous(P, model_name)) is not None:
    # Its own input, as the model saw it: the maps below are of that picture, not this one.
    result, stale, model_view = last["result"], True, last["view"]
if result is None:
    st.image(enlarge(model_view, 192), caption=f"Input as the model sees it · {plaintext.plain(current.label)}")
    st.info("Press **Run the sanity checks** in the sidebar. On the bundled shapes model four "
            "methods take a few seconds; large models take longer (see *Faster settings*).")
    share()
    st.stop()
if stale:
    st.warning("The settings changed since this result was computed; press **Run the sanity "
               "checks** to update it. Showing the previous result, on "
               f"{plaintext.plain(last['label'])}.")

cascade: evaluation.RandomizationResult = result.cascade
data: evaluation.DataRandomizationResult | None = result.data
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
if data is None and (result.data_problem or unfit):
    plaintext.warning(result.data_problem or f"Skipped: {unfit}")
elif data is None:
    st.info(follow.no_partner_note(model_name, names))
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

share()
