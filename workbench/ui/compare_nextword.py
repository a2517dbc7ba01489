"""The Compare page's "Next word" mode: several methods explain the same language model's next
words after one prompt, one source x generated matrix per method side by side.

Every method explains the same tokens: the continuation is typed (teacher forcing) or the
model's greedy one, which is the same for every method (it is decided before attribution
starts, with no sampling). The pickers, prompt controls and the matrix are the Text page's
Next word mode's own (workbench/ui/nextword.py); this module only lays several methods out.
The share link carries ``mode=next``.
"""

from __future__ import annotations

import streamlit as st

import saliency_core
from saliency_core import render
from saliency_core.errors import SaliencyError
from workbench.jobs import compute
from workbench.ui import compare_view, nextword, page, plaintext, progress, session
from workbench.ui.widgets import ensure, method_params, url_method_params

QC = "comparegen"
MODES = ("Images", "Next word")
# The image comparison's input picker already keeps its Sample/Upload choice in compare.mode.
MODE_KEY = "compare.task"
DEFAULT_METHODS = ["gradient", "gradient_x_input", "integrated_gradients"]
# A matrix is wide (one column per source token): two fit side by side.
PER_ROW = 2


def wanted(prefix: str) -> bool:
    """Whether this run of the Compare page shows the Next word mode."""
    return nextword.wanted(prefix, MODES, MODE_KEY)


def mode_switch() -> None:
    """The Images / Next word control under the Compare page's title."""
    nextword.mode_switch(
        MODES,
        MODE_KEY,
        help="Images: several methods on one image classifier's decision. Next word: "
        "several methods on which earlier tokens made a language model write each word.",
    )


def _restore(reader, names: list[str], methods: dict) -> None:
    default = nextword.DEFAULT_MODEL if nextword.DEFAULT_MODEL in names else names[0]
    page.restore_model(reader, QC, names, nextword.TASK, default)
    nextword.restore_request(reader, QC)
    chosen = page.restore_methods(reader, QC, methods, DEFAULT_METHODS)
    for name in chosen:
        page.restore_params(
            reader,
            QC,
            methods[name],
            "text",
            None,
            url_prefix=f"{name}.",
            base_url_prefix=f"{name}.b.",
        )
    page.restored(reader, QC)


def _settings(spec) -> dict:
    with st.expander(spec.label):
        if not spec.params:
            st.caption("No settings.")
        return method_params(spec, QC, "text", get_spec=nextword._spec_of)


def run(prefix: str) -> None:
    """The whole mode; ends the script run."""
    from workbench.ui.navigation import ensure_app_navigation

    ensure_app_navigation()
    st.title("Compare methods: next word")
    st.caption(
        "The same prompt and the same generated words, explained by several methods. Each "
        "matrix has one row per generated token; red source tokens raised its score, blue "
        "ones lowered it. Where the methods disagree, look closer."
    )
    mode_switch()
    infos = nextword.generation_models()
    names = [m.name for m in infos]
    methods = nextword.method_specs()
    if infos and (reader := page.visit(QC)) is not None:
        _restore(reader, names, methods)
    model_name, device, loaded = nextword.choose_model(QC, infos)

    with st.sidebar:
        st.header("Methods")
        ensure(f"{QC}.methods", DEFAULT_METHODS)
        chosen = st.multiselect(
            "Methods",
            list(methods),
            key=f"{QC}.methods",
            format_func=lambda n: methods[n].label,
        )
        if chosen:
            st.subheader("Method settings")
        params_by_method = {name: _settings(methods[name]) for name in chosen}
        score = nextword.score_picker(QC)

    page.show_problems(QC)
    asked = nextword.prompt_inputs(QC, model_name)
    settings = {
        "mode": nextword.NEXT,
        "model": model_name,
        "device": device,
        **asked.settings(),
        "methods": ",".join(chosen),
        "score": score,
    }
    for name in chosen:
        settings.update(
            url_method_params(
                methods[name],
                params_by_method[name],
                f"{name}.",
                f"{name}.b.",
                get_spec=saliency_core.get_method,
            )
        )
    continuation = nextword.ready(loaded, asked, QC, settings)
    if not chosen:
        st.info("Pick at least one method in the sidebar.")
        session.publish(QC, settings)
        st.stop()

    # The share button heads the result; it is filled in once every setting is known.
    share_area = st.container()
    status_area = st.container()
    results: dict[str, object] = {}
    failures: dict[str, str] = {}
    stopped = False
    for done, name in enumerate(chosen, 1):
        run_params = {
            **params_by_method[name],
            "max_prompt_tokens": nextword.MAX_PROMPT_TOKENS,
        }
        computation = compute.generation_computation(
            loaded,
            device,
            asked.prompt,
            continuation,
            asked.new_tokens,
            name,
            run_params,
            score,
            None,
        )
        if progress.was_stopped(computation.key):
            stopped = True
        # After a Stop the methods still to run wait too; what is already computed is shown.
        if stopped and compute.cached(computation.key) is None:
            continue
        try:
            with (
                status_area,
                progress.Progress(
                    f"{methods[name].label} on {model_name} ({done} of {len(chosen)})",
                    computation.key,
                    f"{QC}.stop.{name}",
                ) as bar,
            ):
                results[name] = compute.explain_generation(
                    session.visitor(),
                    loaded,
                    computation,
                    asked.prompt,
                    continuation,
                    asked.new_tokens,
                    progress=bar,
                    page="compare",
                ).attribution
        except SaliencyError as exc:
            failures[name] = str(exc)
    if stopped:
        with status_area:
            progress.stopped_notice("compare-next-word", key=f"{QC}.rerun")
    with share_area:
        session.share_box(session.publish(QC, settings))
    _show(chosen, methods, results, failures)
    st.stop()


def _show(chosen: list[str], methods: dict, results: dict, failures: dict) -> None:
    first = next(iter(results.values()), None)
    if first is not None:
        written = " · ".join(render.token_display(t)[0] for t in first.generated_tokens)
        st.markdown(f"**Explained tokens:** {plaintext.plain(written)}")
        if any(r.generated_tokens != first.generated_tokens for r in results.values()):
            st.warning(
                "The methods explain different continuations (the model's greedy "
                "continuation changed between runs); type the continuation to pin it."
            )
    for row_start in range(0, len(chosen), PER_ROW):
        row = chosen[row_start : row_start + PER_ROW]
        for column, name in zip(st.columns(PER_ROW), row):
            with column:
                label = methods[name].label
                st.markdown(f"**{label}**")
                if name in failures:
                    plaintext.error(f"{label}: {failures[name]}")
                    continue
                if name not in results:
                    st.caption(f"{label}: stopped")
                    continue
                ga = results[name]
                st.plotly_chart(
                    nextword.heatmap(ga),
                    key=f"{QC}.matrix.{name}",
                    config={"displayModeBar": False},
                )
                meta = ga.metadata
                st.caption(
                    f"{meta.get('time_s', 0.0):.2f} s · "
                    f"{compare_view.passes(int(meta.get('passes', 0)))} · token score: "
                    f"{meta.get('aggregation', '?')} over the embedding"
                )
