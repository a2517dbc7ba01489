"""Text page: a sentence, a text classifier and a method -> highlighted tokens and a bar chart;
or, in the Next word mode (workbench/ui/nextword.py), a prompt and a language model -> the
source x generated attribution matrix."""

from __future__ import annotations

import streamlit as st

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.methods import with_capability
from workbench.jobs import compute
from workbench.jobs.admission import OverBudget
from workbench.jobs.progressive import best_so_far, level_note
from workbench.ui import export, nextword, page, plaintext, progress, session, textview
from workbench.ui.display import completeness_reading
from workbench.ui.urlstate import MAX_TEXT
from workbench.ui.widgets import ensure, method_params, url_method_params

P = "text"
# Text attribution happens in embedding space: input-space methods that read no image layer.
# Guided Backprop and DeconvNet stay listed: on a GELU transformer the library explains why
# they fail.
METHODS = {spec.name: spec for spec in saliency_core.methods()
           if spec.family == "input" and spec.name not in with_capability("needs_layer")}
DEFAULT_METHOD = "integrated_gradients"
MAX_TOKENS_LIMIT = 512

if nextword.wanted(P):
    nextword.run(P)  # the Next word mode draws the whole page and ends the run

names = page.start(P, "text", "Text saliency",
                   "Which words pushed the classifier towards its answer? Red tokens speak for "
                   "the explained class, blue ones against it.")
nextword.mode_switch()

if (reader := page.visit(P)) is not None:
    page.restore_model(reader, P, names, "text")
    st.session_state[f"{P}.text"] = reader.text("text", textview.EXAMPLES[0], max_chars=MAX_TEXT)
    page.restore_method(reader, P, METHODS, DEFAULT_METHOD, "text", None)
    page.restore_target(reader, P)
    st.session_state[f"{P}.max_tokens"] = reader.number("max_tokens", MAX_TOKENS_LIMIT, 4,
                                                        MAX_TOKENS_LIMIT, integer=True)
    page.restored(reader, P)

with st.sidebar:
    st.header("Model")
    model_name, device = page.model_picker(P, names, "text")

with page.stop_on_error():
    loaded = page.load(model_name, device)

with st.sidebar:
    st.header("Method")
    spec = page.method_picker(P, METHODS, DEFAULT_METHOD,
                              format_func=lambda n: METHODS[n].label
                              + ("" if METHODS[n].text else " (ReLU models only)"))
    method = spec.name
    params = method_params(spec, P, "text", get_spec=saliency_core.get_method)
    target = session.target_widget(P, loaded.labels)
    ensure(f"{P}.max_tokens", MAX_TOKENS_LIMIT)
    max_tokens = st.number_input("Longest input (tokens)", 4, MAX_TOKENS_LIMIT, step=1,
                                 key=f"{P}.max_tokens",
                                 help="Longer texts are cut to this many tokens (the model's "
                                 "own limit applies as well).")

page.show_problems(P)

st.selectbox("Examples", textview.EXAMPLES, index=None, key=f"{P}.example",
             placeholder="Pick an example sentence...", on_change=textview.use_example,
             args=(f"{P}.example", f"{P}.text"))
ensure(f"{P}.text", textview.EXAMPLES[0])
# No max_chars: the browser would silently refuse a longer paste and keep the old text.
# A long text is cut here instead, and the page says so.
typed = st.text_area("Text to explain", key=f"{P}.text", height=110)
text = typed[:MAX_TEXT]
if len(typed) > MAX_TEXT:
    st.warning(f"The text has {len(typed):,} characters; only the first {MAX_TEXT:,} are used "
               "(and the model reads at most its own number of tokens of those).")

settings = {"model": model_name, "device": device, "text": text, "method": method,
            "target": target, "max_tokens": max_tokens, **url_method_params(spec, params)}

if not text.strip():
    st.info("Type a sentence (or pick an example) to see which words drive the prediction.")
    session.publish(P, settings)
    st.stop()

run_params = {**params, "max_length": int(max_tokens)}
computation = compute.text_computation(loaded, device, text, method, run_params, target)
preview_area = st.empty()


def show_preview(result, level) -> None:
    """A coarse level of a progressive run (IG, SmoothGrad), replaced in place by the next."""
    with preview_area.container():
        st.caption(f"Refining: {level_note(result, level)}")
        textview.highlighted(result)


result = None
note = None
if progress.was_stopped(computation.key):
    progress.stopped_notice(computation.key, key=f"{P}.rerun")
    best = best_so_far(st.session_state, computation.key)
    if best is not None:
        result, level = best
        note = f"Best result before Stop: {level_note(result, level)}"
else:
    try:
        with progress.Progress(f"{spec.label} on {model_name}", computation.key,
                               f"{P}.stop", ask_here=True) as bar:
            result = compute.explain_text(session.visitor(), loaded, computation, text,
                                          progress=bar, on_level=show_preview)
    except SaliencyError as exc:
        # Over the budget, the question stands where the bar was (see Progress) and a
        # progressive run's coarse result stays on screen below it.
        if (coarse := progress.coarse_result(exc)) is not None:
            result, note = coarse
        if not isinstance(exc, OverBudget):
            plaintext.error(exc)
preview_area.empty()

# The link to this view, as the result's first line.
session.share_box(session.publish(P, settings))
if result is not None:
    if note:
        st.caption(note)
    meta = result.metadata
    if meta.get("truncated"):
        st.warning(f"The text is longer than {meta.get('max_length')} tokens (the model's limit "
                   "or the 'Longest input' setting): only the beginning was explained, the "
                   "tokens shown below.")
    left, right = st.columns([2, 3])
    with left:
        st.subheader("Prediction")
        textview.prediction(result, loaded.labels)
        st.caption(f"{spec.label} · {meta.get('passes', 0)} model passes · "
                   f"{meta.get('time_s', 0.0):.2f} s on {meta.get('device', device)} · "
                   f"token score: {meta.get('aggregation', '?')} over the embedding")
    with right:
        st.subheader("Tokens")
        textview.highlighted(result)
        reading = completeness_reading(result.metadata, subject="the text")
        if reading is not None:
            severity, sentence = reading
            getattr(st, severity)("**Completeness.** " + sentence)
    st.plotly_chart(textview.bar_chart(result), key=f"{P}.bars", config={"displayModeBar": False})

    stem = export.file_stem(model_name, method, "text")
    record = export.json_record(
        page="text", model=model_name, model_source=loaded.source, device=device, text=text,
        method=method, params=run_params, seed=params.get("seed"), target=result.target,
        target_label=loaded.labels[result.target], target_requested=target,
        predicted=result.predicted, predicted_label=loaded.labels[result.predicted],
        probabilities=dict(zip(loaded.labels, result.probabilities.tolist())),
        tokens=result.tokens, special=result.special, scores=result.scores,
        metadata=result.metadata,
    )
    d1, d2, _ = st.columns(3)
    d1.download_button("Token scores (.npz)",
                       export.npz_bytes(tokens=result.tokens, special=result.special,
                                        scores=result.scores,
                                        probabilities=result.probabilities,
                                        target=result.target),
                       f"{stem}.npz", "application/octet-stream", key=f"{P}.dl_npz",
                       width="stretch")
    d2.download_button("Record (JSON)", record, f"{stem}.json", "application/json",
                       key=f"{P}.dl_json", width="stretch")
    with st.expander("Run details"):
        st.json(result.metadata)

