"""Compare page: one input, several methods (and optionally two models) side by side, with the
time each took and a faithfulness scoreboard."""

from __future__ import annotations

import html

import streamlit as st

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.methods import applicable_to, problem_with
from workbench.hosting.share import ShareStore
from workbench.jobs import compute, engine
from workbench.jobs.admission import OverBudget
from workbench.jobs.models import same_domain_partner, trained_on
from workbench.ui import (
    compare_nextword,
    compare_view,
    display,
    page,
    plaintext,
    progress,
    session,
)
from workbench.ui.inputs import (
    default_sample,
    domain_notice,
    input_picker,
    restore_input,
)
from workbench.ui.widgets import (
    ensure,
    method_params,
    methods_multiselect,
    select,
    url_method_params,
)

P = "compare"
METHODS = {spec.name: spec for spec in saliency_core.methods()}
# Those the loaded model cannot run are left out: a vision transformer gets the two attention
# methods instead of Guided Backprop.
DEFAULT_METHODS = ["gradient", "integrated_gradients", "smoothgrad", "gradcam", "guided_backprop",
                   "attention_rollout", "attention_relevance"]
SCALES = {"per-map": "Per map (each map uses its own range)",
          "shared": "Shared (one range for all maps)"}
PER_ROW = 5
# Scoring perturbs the input dozens of times per method: automatic only for small inputs.
AUTO_SCORE_PIXELS = 128 * 128

if compare_nextword.wanted(P):
    compare_nextword.run(P)  # the Next word mode draws the whole page and ends the run

names = page.start(P, "image", "Compare methods",
                   "The same input explained by several methods, and optionally by two models. "
                   "Maps that disagree are a reason to look closer; the scoreboard measures "
                   "which ones the model's behaviour supports.")
compare_nextword.mode_switch()
store = ShareStore()

if (reader := page.visit(P)) is not None:
    model0 = page.restore_model(reader, P, names, "image")
    second = reader.choice("model2", ["", *names], "")
    st.session_state[f"{P}.two"] = bool(second)
    if second:
        st.session_state[f"{P}.model2"] = second
    restore_input(reader, P, store, default_sample(model0))
    chosen = page.restore_methods(reader, P, METHODS, DEFAULT_METHODS)
    layer_paths = page.layer_paths(model0, st.session_state[f"{P}.device"])
    for name in chosen:
        page.restore_params(reader, P, METHODS[name], "image", layer_paths,
                            url_prefix=f"{name}.", base_url_prefix=f"{name}.b.")
    page.restore_target(reader, P)
    st.session_state[f"{P}.scale"] = reader.choice("scale", list(SCALES), "per-map")
    if "score" in reader:
        st.session_state[f"{P}.score"] = reader.flag("score", True)
    display.restore_display(reader, P)
    page.restored(reader, P)

with st.sidebar:
    st.header("Input")
    current, input_error = input_picker(P, store, default_sample(st.session_state.get(f"{P}.model")))
    st.header("Models")
    model_name, device = page.model_picker(P, names, "image")
    ensure(f"{P}.two", False)
    two = st.toggle("Compare with a second model", key=f"{P}.two",
                    disabled=len(names) < 2)
    others = [n for n in names if n != model_name]

with page.stop_on_error():
    loaded = page.load(model_name, device)


def second_model_picker() -> str | None:
    """The second model, by default one trained on the same data as the first (a shapes CNN
    beside an ImageNet model would only say that it knows shapes). The default follows the
    first model until the visitor picks another; with no such model, none is picked."""
    key, auto_key = f"{P}.model2", f"{P}.model2.auto"
    auto = st.session_state.get(auto_key)
    if auto is None or auto[0] != model_name:
        partner = same_domain_partner(loaded, names, device)
        if auto is not None and st.session_state.get(key) == auto[1]:
            st.session_state[key] = partner or ""
        auto = st.session_state[auto_key] = (model_name, partner)
    partner = auto[1]
    options = others if partner else ["", *others]
    chosen = select("Second model", options, key, partner or "",
                    format_func=lambda n: n or "(none picked)")
    if not partner:
        data = trained_on(loaded.card)
        st.caption(f"No other model here was trained on the same data as {model_name}"
                   + (f" ({data})" if data else "") + ": pick one to compare across data.")
    return chosen or None


with st.sidebar:
    model2 = second_model_picker() if two and others else None

with page.stop_on_error():
    models = {model_name: loaded}
    if model2:
        models[model2] = page.load(model2, device)
    layers = page.layers(model_name, device)

with st.sidebar:
    st.header("Methods")
    # Only what runs on the first model; the attention methods need a vision transformer.
    chosen, not_here = methods_multiselect("Methods", METHODS, f"{P}.methods", DEFAULT_METHODS,
                                           applicable_to(loaded.model), model_name)
    if not_here:
        st.caption(f"Not offered for {plaintext.plain(model_name)}, which cannot run them: "
                   + ", ".join(METHODS[n].label for n in not_here) + ".")
    target = session.target_widget(P, loaded.labels)
    params_by_method = {}
    if chosen:
        st.subheader("Method settings")
        # One expander per method, not tabs: a sidebar cuts five tab labels short.
        for name in chosen:
            with st.expander(METHODS[name].label):
                if not METHODS[name].params:
                    st.caption("No settings.")
                params_by_method[name] = method_params(METHODS[name], P, "image", layers,
                                                       loaded.default_layer,
                                                       saliency_core.get_method)

page.show_problems(P)
if input_error:
    plaintext.error(input_error)
if current is None:
    if not input_error:
        st.info("Upload an image or pick a sample in the sidebar.")
    st.stop()
for shown in models.values():
    if (here := engine.runs_here_because(shown)) is not None:
        plaintext.info(f"{shown.name}: {here}")
    if (mismatch := domain_notice(shown, current.source)) is not None:
        plaintext.warning(mismatch)
if not chosen:
    st.info("Pick at least one method in the sidebar.")
    st.stop()

options = display.display_options(P)
c_scale, c_score = st.columns([2, 1])
with c_scale:
    scale_mode = select("Colour scale", list(SCALES), f"{P}.scale", "per-map",
                        widget=st.radio, format_func=SCALES.get, horizontal=True,
                        help="Shared puts every map on one range: magnitudes become comparable "
                        "across maps, but methods with small values (raw gradients) fade.")
with c_score:
    small = (loaded.input_size or (224, 224))[0] * (loaded.input_size or (224, 224))[1] <= AUTO_SCORE_PIXELS
    ensure(f"{P}.score", small)
    score = st.toggle("Score the methods", key=f"{P}.score",
                      help="Deletion and insertion curves (and, for shapes with known masks, "
                      "localisation) for each map; costs extra model passes.")

# The share button heads the result; it is filled in last, once every setting is known.
share_area = st.container()
digest = compute.pixels_digest(current.pixels)
visitor = session.visitor()
runs: dict[str, dict] = {}  # model -> {method: (key, result)}
failures: dict[tuple[str, str], str] = {}
# Over the budget or the limit after its coarse levels ran: the coarse result, shown in its
# cell with the question (or the refusal) that says so; never scored.
coarse_maps: dict[tuple[str, str], tuple] = {}  # (model, method) -> (result, message)
questions: set[tuple[str, str]] = set()  # over the budget: a question, not a failure
# The methods were offered for the first model; the second may not run them all.
cannot_run = {mname: [n for n in chosen if problem_with(n, mloaded.model) is not None]
              for mname, mloaded in models.items()}
stopped = False
total = sum(len(chosen) - len(cannot_run[mname]) for mname in models)
done = 0
status_area = st.container()
preview_area = st.empty()
finished: list[tuple] = []  # (overlay, caption) of each map done, shown while others run


def show_preview(name: str, view, result, note: str = "") -> tuple:
    """Redraw the preview row: the finished maps and this one (coarse, or just done)."""
    rendered = display.render_map(result.attribution, view, display.stored_options(P))
    entry = (display.screen_png(rendered.overlay), f"{METHODS[name].label} {note}".strip())
    progress.preview_row(preview_area, f"{len(finished)} of {total} maps ready",
                            [*finished, entry])
    return entry


for mname, mloaded in models.items():
    x = mloaded.preprocess(current.image)
    view = mloaded.unpreprocess(x)
    runs[mname] = {}
    # The class to explain: the picked one for the first model; the second model explains the
    # same index only when it has the same classes, else its own prediction.
    mtarget = target if (mname == model_name or mloaded.labels == loaded.labels) else "predicted"
    for name in chosen:
        if name in cannot_run[mname]:
            continue
        done += 1
        params = dict(params_by_method[name])
        if mname != model_name and "layer" in params:
            params["layer"] = None  # layer names belong to the first model
        computation = compute.image_computation(mloaded, device, digest, name, params, mtarget)
        key = computation.key
        if progress.was_stopped(key):
            stopped = True
            continue
        try:
            with status_area, progress.Progress(
                    f"{METHODS[name].label} on {mname} ({done} of {total})", key,
                    f"{P}.stop.{mname}.{name}",
                    names=f"{METHODS[name].label} on {mname}") as bar:
                result = compute.explain_image(
                    visitor, mloaded, computation, x, progress=bar,
                    on_level=lambda r, level, n=name, v=view: show_preview(
                        n, v, r, f"({level.count} of {level.total} {level.knob})"))
            runs[mname][name] = (key, result)
            finished.append(show_preview(name, view, result))
        except SaliencyError as exc:
            if isinstance(exc, OverBudget):
                questions.add((mname, name))
            if (coarse := progress.coarse_result(exc)) is not None:
                coarse_maps[(mname, name)] = (coarse[0], str(exc))
            else:
                failures[(mname, name)] = str(exc)
preview_area.empty()
if stopped:
    with status_area:
        progress.stopped_notice("compare", key=f"{P}.rerun")

maps = {}
for mname, mruns in runs.items():
    view = models[mname].unpreprocess(models[mname].preprocess(current.image))
    for name, (_, result) in mruns.items():
        maps[(mname, name)] = (view, display.aggregate(result.attribution, options))
    for (cname, name), (result, _) in coarse_maps.items():
        if cname == mname:
            maps[(mname, name)] = (view, display.aggregate(result.attribution, options))
shared = None
if scale_mode == "shared" and maps:
    from saliency_core import render

    shared = max(render.clip_value(raw, options.sign, options.clip) for _, raw in maps.values())

for mname, mloaded in models.items():
    mruns = runs[mname]
    first = next(iter(mruns.values()), None)
    if first is not None:
        r = first[1]
        st.subheader(f"{plaintext.plain(mname)}: predicts "
                     f"{plaintext.plain(mloaded.labels[r.predicted])} "
                     f"({r.probabilities[r.predicted]:.1%}); explaining "
                     f"{plaintext.plain(mloaded.labels[r.target])}")
    else:
        st.subheader(plaintext.plain(mname))
    if cannot_run[mname]:
        st.caption(compare_view.not_run_line(mname, {
            METHODS[n].label: problem_with(n, mloaded.model) or "" for n in cannot_run[mname]}))
    shown = [n for n in chosen if n not in cannot_run[mname]]
    for row_start in range(0, len(shown), PER_ROW):
        row = shown[row_start:row_start + PER_ROW]
        cols = st.columns(PER_ROW)
        for col, name in zip(cols, row):
            with col:
                show = plaintext.warning if (mname, name) in questions else plaintext.error
                if (mname, name) in failures:
                    show(f"{METHODS[name].label}: {failures[(mname, name)]}")
                    continue
                if name in mruns:
                    result = mruns[name][1]
                elif (mname, name) in coarse_maps:
                    result, message = coarse_maps[(mname, name)]
                    show(f"{METHODS[name].label}: {message}")
                else:
                    st.caption(f"{METHODS[name].label}: stopped")
                    continue
                view, _raw = maps[(mname, name)]
                rendered = display.render_map(result.attribution, view, options, scale=shared)
                st.image(display.screen_png(rendered.overlay), width="stretch")
                st.markdown(compare_view.colour_bar_html(rendered, options, shared is not None),
                            unsafe_allow_html=True)
                st.caption(f"**{METHODS[name].label}** · {result.metadata.get('time_s', 0):.2f} s"
                           f" · {compare_view.passes(int(result.metadata.get('passes', 0)))}"
                           + (" · nearly uniform: its colour marks no region"
                              if display.flat_notice(rendered, options.sign) else ""))

if score and runs.get(model_name):
    st.subheader("Scoreboard")
    st.caption("Deletion: the target's probability as the most salient pixels are removed first "
               "(area under the curve, lower is better). Insertion: as they are added back to a "
               "blurred image (higher is better). With a known object mask (shapes samples), "
               "pointing game and the share of positive attribution inside the mask (higher is "
               "better).")
    for mname, mloaded in models.items():
        if not runs.get(mname):
            continue
        x = mloaded.preprocess(current.image)
        mask = current.mask
        if mask is not None and tuple(mask.shape) != tuple(x.shape[-2:]):
            mask = None  # the model resized the image; the mask no longer lines up
        first = next(iter(runs[mname].values()))[1]
        labelled = {METHODS[n].label: kr for n, kr in runs[mname].items()}
        score_key = f"score:{mname}:{digest}"
        if progress.was_stopped(score_key):
            progress.stopped_notice(score_key, key=f"{P}.rescore.{mname}")
            continue
        try:
            with progress.Progress(f"Scoring on {mname}", score_key,
                                   f"{P}.stop.score.{mname}") as bar:
                board = compute.scoreboard(visitor, mloaded, device, x, digest, labelled,
                                           first.target, mask, progress=bar)
        except SaliencyError as exc:
            plaintext.error(f"Scoring failed: {exc}")
            continue
        if len(models) > 1:
            st.markdown(f"**{plaintext.plain(mname)}**")
        st.caption(compare_view.ranking_rule(board.rows))
        st.dataframe(compare_view.scoreboard_table(board.rows), hide_index=True, width="stretch",
                     column_config={"column ranks": st.column_config.TextColumn(
                         help=compare_view.column_ranks_help(board.rows))})
        st.plotly_chart(compare_view.curves_figure(
            board.rows, html.escape(plaintext.visible(mloaded.labels[first.target]))),
            width="stretch", key=f"{P}.curves.{mname}")

settings = {"model": model_name, "model2": model2, "device": device, "input": current.source,
            "methods": ",".join(chosen), "target": target, "scale": scale_mode, "score": score,
            **options.as_url()}
for name in chosen:
    settings.update(url_method_params(METHODS[name], params_by_method[name], f"{name}.",
                                      f"{name}.b.", get_spec=saliency_core.get_method))
encoded = session.publish(P, settings)
with share_area:
    session.share_box(encoded, uploaded=current.source.startswith("upload:"))
