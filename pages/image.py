"""Image page: one picture, one model, one method -> original | heatmap | overlay."""

from __future__ import annotations

import streamlit as st

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.methods import applicable_to
from workbench.hosting.share import ShareStore
from workbench.jobs import compute, engine, progressive
from workbench.jobs.admission import OverBudget
from workbench.ui import display, export, page, plaintext, progress, session, topk
from workbench.ui.inputs import (
    default_sample,
    degenerate_notice,
    domain_notice,
    input_picker,
    restore_input,
)
from workbench.ui.widgets import method_params, url_method_params

P = "image"
METHODS = {spec.name: spec for spec in saliency_core.methods()}
# Grad-CAM reads best on the default model and photo: one pass, a smooth map on the cat's face,
# and it passes the randomization checks (the Guide says why; IG's path integral needs hundreds
# of steps there before its completeness gap closes).
DEFAULT_METHOD = "gradcam"

names = page.start(P, "image", "Image saliency",
                   "Which pixels made the model decide what it decided? Pick an input, a model "
                   "and a method; the map updates as you go.")
store = ShareStore()

# ---- settings from a shared link (or from this session's last visit), applied once ----------
if (reader := page.visit(P)) is not None:
    model0 = page.restore_model(reader, P, names, "image")
    restore_input(reader, P, store, default_sample(model0))
    page.restore_method(reader, P, METHODS, DEFAULT_METHOD, "image",
                        page.layer_paths(model0, st.session_state[f"{P}.device"]))
    page.restore_target(reader, P)
    display.restore_display(reader, P)
    page.restored(reader, P)

# ---- sidebar: input, model, method, target ---------------------------------------------------
with st.sidebar:
    st.header("Input")
    current, upload_error = input_picker(P, store, default_sample(st.session_state.get(f"{P}.model")))

    st.header("Model")
    model_name, device = page.model_picker(P, names, "image")

with page.stop_on_error():
    loaded = page.load(model_name, device)
    layers = page.layers(model_name, device)

with st.sidebar:
    st.header("Method")
    # Only what runs on this model: the attention methods need a vision transformer.
    usable = set(applicable_to(loaded.model))
    spec = page.method_picker(P, {n: s for n, s in METHODS.items() if n in usable},
                              DEFAULT_METHOD)
    method = spec.name
    params = method_params(spec, P, "image", layers, loaded.default_layer, saliency_core.get_method)
    target = session.target_widget(P, loaded.labels)

page.show_problems(P)
if upload_error:
    plaintext.error(upload_error)
if current is None:
    if not upload_error:
        st.info("Upload an image (PNG, JPEG, WebP, BMP or TIFF) or pick a sample in the sidebar.")
    st.stop()
for notice in current.notices:
    plaintext.info(notice)
if (here := engine.runs_here_because(loaded)) is not None:
    plaintext.info(here)
if (mismatch := domain_notice(loaded, current.source)) is not None:
    plaintext.warning(mismatch)
# Explained all the same (no refusal), with what its map can and cannot mean.
model_side = tuple(loaded.example_input().shape[-2:])  # the size preprocess resizes to
if (degenerate := degenerate_notice(current.pixels, model_side)) is not None:
    plaintext.warning(degenerate)

x = loaded.preprocess(current.image)
model_view = loaded.unpreprocess(x)
digest = compute.pixels_digest(current.pixels)
# What this view computes: built once, the key of its result, its Stop and its progress.
computation = compute.image_computation(loaded, device, digest, method, params, target)

status_area = st.container()
preview_area = st.empty()


def show_preview(result, level) -> None:
    """A coarse level of a progressive run, replaced in place by the next one."""
    rendered = display.render_map(result.attribution, model_view, display.stored_options(P))
    progress.preview_row(preview_area, f"Refining: {progressive.level_note(result, level)}",
                            [(display.screen_png(model_view), "Input"),
                             (display.screen_png(rendered.heat), "Heatmap"),
                             (display.screen_png(rendered.overlay), "Overlay")])


result = None
note = None
with status_area:
    if progress.was_stopped(computation.key):
        progress.stopped_notice(computation.key, key=f"{P}.rerun")
        best = progressive.best_so_far(st.session_state, computation.key)
        if best is not None:
            result, level = best
            note = f"Best result before Stop: {progressive.level_note(result, level)}"
    else:
        try:
            with progress.Progress(f"{spec.label} on {model_name}", computation.key,
                                   f"{P}.stop", ask_here=True) as bar:
                result = compute.explain_image(session.visitor(), loaded, computation, x,
                                               progress=bar, on_level=show_preview)
        except SaliencyError as exc:
            # Over the budget, the question stands where the bar was (see Progress) and a
            # progressive run's coarse map stays on screen below it.
            if (coarse := progress.coarse_result(exc)) is not None:
                result, note = coarse
            if not isinstance(exc, OverBudget):
                plaintext.error(exc)
preview_area.empty()


# Display options rerun only this fragment: the stored result is drawn again, nothing else on
# the page (sidebar, model, input) runs, and the model is never called.
@st.fragment
def result_view(result, note) -> None:
    options = display.display_options(P, with_aggregation=spec.family == "input")
    # ---- the URL always describes this view; sharing it is the result's first line -------
    settings = {"model": model_name, "device": device, "input": current.source, "method": method,
                "target": target, **url_method_params(spec, params), **options.as_url()}
    encoded = session.publish(P, settings)
    session.share_box(encoded, uploaded=current.source.startswith("upload:"))
    if result is not None:
        show_result(result, note, options)


def completeness_box(result) -> None:
    """IG's completeness in plain words; under a large gap, a button measures how many steps
    close it on this image, and the advice then states that measured count."""
    most = next((int(p.max) for p in spec.params if p.name == "steps" and p.max), None)
    searchable = most is not None and bool(progressive.gap_search_counts(method, params, most))
    searches = st.session_state.setdefault(f"{P}.gap_search", {})
    measured = searches.get(computation.key)
    reading = display.completeness_reading(result.metadata, measured=measured, most_steps=most,
                                           can_search=searchable)
    if reading is None:
        return
    severity, sentence = reading
    getattr(st, severity)("**Completeness.** " + sentence)
    gap = progressive.completeness_gap(result.metadata)
    if (measured is None and searchable and gap is not None and gap > progressive.LARGE_GAP
            and st.button("Find the steps that close the gap", key=f"{P}.gap_search_button",
                          help="Runs this method at doubling step counts (each result kept, "
                          "so choosing one afterwards is instant) until the gap is under "
                          f"{progressive.LARGE_GAP:.0%} or the steps reach their limit.")):
        try:
            with progress.Progress("Measuring the completeness gap", f"{computation.key}:gap",
                                   f"{P}.gap_stop") as bar:
                searches[computation.key] = compute.gap_search(
                    session.visitor(), loaded, computation, x, progress=bar)
        except SaliencyError as exc:
            plaintext.error(exc)
            return
        st.rerun()  # the whole view again, from the cache: the advice now states the count


def show_result(result, note, options) -> None:
    rendered = display.render_map(result.attribution, model_view, options)
    if note:
        st.caption(note)
    if (flat := display.flat_notice(rendered, options.sign, method)) is not None:
        st.info(flat)
    # The pictures fill their columns up to the heatmap's size, so the three line up.
    st.html(f"<style>.st-key-{P}-panels [data-testid='stImage'] img"
            f"{{max-width:{display.DISPLAY_PX}px}}</style>")
    c1, c2, c3 = st.container(key=f"{P}-panels").columns(3)
    # The overlay first, inline: after a display change the new picture is on its way before
    # anything else of the view is built, with no media file for the browser to fetch.
    with c3:
        st.image(display.screen_uri(rendered.overlay), caption="Overlay", width="stretch")
    with c1:
        st.image(display.screen_png(model_view), width="stretch",
                 caption=f"Input as the model sees it · {plaintext.plain(current.label)}")
    with c2:
        # The figure does not show the overlay's opacity; building it (about 1 MB, a colour
        # scale per colormap) was most of the server's time in an opacity change.
        figure = session.kept(
            f"{P}.heatmap_kept", result,
            (computation.key, options.cmap, options.sign, options.clip, options.agg),
            lambda: display.heatmap_figure(rendered, options.cmap))
        st.plotly_chart(figure, key=f"{P}.heatmap", config={"displayModeBar": False})
        st.caption(f"Heatmap · hover for values · colour scale clipped at "
                   f"{rendered.clip_value:.3g}")

    completeness_box(result)
    st.subheader("Prediction")
    left, right = st.columns([3, 2], vertical_alignment="center")
    with left:
        display.prediction_table(result.probabilities, loaded.labels)
    with right:
        st.metric("Explaining", plaintext.plain(loaded.labels[result.target]),
                  f"{result.probabilities[result.target]:.1%} probability", delta_color="off")
        meta = result.metadata
        reused = meta.get("reused_passes")
        st.caption(f"{spec.label} · {meta.get('passes', 0)} model passes"
                   + (f" (+{reused} reused)" if reused else "")
                   + f" · {meta.get('time_s', 0.0):.2f} s on {meta.get('device', device)}"
                   + (f" · layer {meta['layer']}" if meta.get("layer") else ""))
    topk.top_k_section(P, loaded, model_name, device, x, digest, model_view, method, params,
                       options)

    stem = export.file_stem(model_name, method, current.source.replace(":", "-")[:24])
    record = export.json_record(
        page="image", model=model_name, model_source=loaded.source, device=device,
        input=current.source, input_label=current.label, input_sha256=digest,
        method=method, params=params, seed=params.get("seed"), target=result.target,
        target_label=loaded.labels[result.target], target_requested=target,
        predicted=result.predicted, predicted_label=loaded.labels[result.predicted],
        probability=float(result.probabilities[result.target]), metadata=result.metadata,
        display=options.as_url(),
    )
    st.subheader("Export")
    d1, d2, d3 = st.columns(3)
    d1.download_button("Overlay (PNG)", display.png(rendered.overlay), f"{stem}_overlay.png",
                       "image/png", key=f"{P}.dl_png", width="stretch")
    # Compressing the raw arrays takes longer than the rest of a display change; the map in it
    # changes with the sign and aggregation only.
    raw_export = session.kept(
        f"{P}.npz_kept", result, (computation.key, options.sign, options.agg),
        lambda: export.npz_bytes(attribution=result.attribution, map=rendered.raw,
                                 probabilities=result.probabilities, target=result.target,
                                 input=model_view))
    d2.download_button("Raw attribution (.npz)", raw_export, f"{stem}.npz",
                       "application/octet-stream", key=f"{P}.dl_npz", width="stretch")
    d3.download_button("Record (JSON)", record, f"{stem}.json", "application/json",
                       key=f"{P}.dl_json", width="stretch")
    with st.expander("Run details"):
        st.json(result.metadata)


result_view(result, note)
