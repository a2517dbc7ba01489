"""The Text page's "Next word" mode: which earlier tokens made a language model predict each
word it generated (saliency_core.attribute_generation through the app's jobs path).

The page (pages/text.py) asks ``wanted`` first; in this mode ``run`` draws everything and ends
the script. Its widgets live under their own prefix, so switching modes keeps each mode's
settings, and its share link carries ``mode=next``.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
import unicodedata

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import saliency_core
from saliency_core import render
from saliency_core.errors import SaliencyError
from saliency_core.models import available_models
from saliency_core.text.generation import GENERATION_BASELINES, GENERATION_METHODS
from workbench.jobs import compute
from workbench.jobs.models import default_device, devices
from workbench.ui import export, page, plaintext, progress, session
from workbench.ui.urlstate import MAX_TEXT
from workbench.ui.widgets import ensure, method_params, select, url_method_params

Q = "textgen"
MODES = ("Classification", "Next word")
NEXT = "next"
TASK = "text-generation"
DEFAULT_MODEL = "patterns-lm"
DEFAULT_METHOD = "integrated_gradients"
MODE_KEY = "text.mode"
SCORES = {"log_prob": "log-probability", "logit": "logit", "probability": "probability"}
# The prompt's tokens a request may explain on this server (the library's own cap is higher).
MAX_PROMPT_TOKENS = 256
DEFAULT_NEW_TOKENS = 6

# Prompts for the bundled model (each ends where a planted dependency decides the next word)
# and for real language models.
SAMPLES = {
    "patterns-lm": [
        "alice went to the market . later ,",
        "the key to the old tables",
        "( a b [ c ] d",
        "at the harbour , victor found a kite . then",
    ],
    None: [
        "The capital of France is",
        "When Mary and John went to the store, John gave a drink to",
        "The keys to the cabinet",
    ],
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def wanted(prefix: str, modes: tuple[str, str] = MODES, key: str = MODE_KEY) -> bool:
    """Whether this run shows the page's Next word mode (``modes[1]``): the switch's state
    (``key``), or on a fresh visit the link's ``mode``."""
    if key not in st.session_state:
        st.session_state[key] = modes[1] if st.query_params.get("mode") == NEXT else modes[0]
    return st.session_state[key] == modes[1]


def _switched() -> None:
    # The link held the other mode's settings: each mode comes back with its own last ones.
    st.query_params.clear()


def mode_switch(modes: tuple[str, str] = MODES, key: str = MODE_KEY,
                help: str = "Classification: which words decided a sentence classifier. "
                "Next word: which earlier tokens made a language model predict each word "
                "it writes.") -> None:
    """The mode control under the page's title (Classification / Next word on the Text
    page)."""
    if st.session_state.get(key) not in modes:
        st.session_state[key] = modes[0]
    st.segmented_control("Mode", modes, key=key, on_change=_switched, required=True,
                         help=help)


def clean(text: str) -> tuple[str, list[str]]:
    """The prompt as explained, and what was changed in it (for the page to say)."""
    notes = []
    if _CONTROL.search(text):
        text = _CONTROL.sub(" ", text)
        notes.append("Control characters in the text were replaced by spaces.")
    normal = unicodedata.normalize("NFC", text)
    if len(normal) > MAX_TEXT:
        notes.append(
            f"The text has {len(normal):,} characters; only the first {MAX_TEXT:,} "
            "are used."
        )
        normal = normal[:MAX_TEXT]
    return normal, notes


def generation_models() -> list:
    """Every language model of the catalogue, downloaded or not (a missing one is named with
    the command that fetches it, never hidden)."""
    from workbench.hosting.uploads import session_owner

    return [m for m in available_models(session_owner()) if m.task == TASK]


def method_specs() -> dict:
    """The generation methods' specs, with the choices a language model accepts: its three
    baselines, and SmoothGrad around the other three methods."""
    specs = {}
    for name in GENERATION_METHODS:
        spec = saliency_core.get_method(name)
        params = []
        for p in spec.params:
            if p.name == "baseline":
                # unk: the word is absent (the bundled model was trained with words dropped
                # to <unk>); a tokenizer without one (GPT-2) uses its end-of-text token, as
                # pad does.
                p = dataclasses.replace(
                    p, text_choices=GENERATION_BASELINES, text_default="unk"
                )
            elif p.type == "method":
                bases = tuple(b for b in GENERATION_METHODS if b != name)
                p = dataclasses.replace(
                    p,
                    text_choices=bases,
                    text_default=p.default if p.default in bases else bases[0],
                )
            params.append(p)
        specs[name] = dataclasses.replace(spec, params=tuple(params))
    return specs


def _spec_of(name: str):
    return method_specs().get(name) or saliency_core.get_method(name)


def samples_for(model: str) -> list[str]:
    return SAMPLES.get(model, SAMPLES[None])


def _restore(reader, names: list[str], methods: dict) -> None:
    default = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
    page.restore_model(reader, Q, names, TASK, default)
    restore_request(reader, Q)
    page.restore_method(reader, Q, methods, DEFAULT_METHOD, "text", None)
    st.session_state[f"{Q}.contrast"] = reader.params.get("contrast") or None
    st.session_state[f"{Q}.token"] = reader.number(
        "token", 0, 0, compute.max_new_tokens_cap(), integer=True
    )
    page.restored(reader, Q)


def restore_request(reader, q: str) -> None:
    """The link's prompt, continuation, token count and score into the widgets' state (the
    model's pickers first: the default prompt is its first sample)."""
    model = st.session_state[f"{q}.model"]
    st.session_state[f"{q}.prompt"] = reader.text("prompt", samples_for(model)[0])
    st.session_state[f"{q}.given"] = reader.flag("given", False)
    st.session_state[f"{q}.continuation"] = reader.text("continuation", "")
    st.session_state[f"{q}.new_tokens"] = reader.number(
        "new_tokens", DEFAULT_NEW_TOKENS, 1, compute.max_new_tokens_cap(), integer=True
    )
    st.session_state[f"{q}.score"] = reader.choice("score", list(SCORES), "log_prob")


def heatmap(ga) -> go.Figure:
    """The source x generated matrix: each row scaled by its own largest magnitude (as the
    library's ``normalized``), raw values on hover, the cells a token cannot see left blank."""
    g_count, s_count = ga.matrix.shape
    z = np.full((g_count, s_count), np.nan)
    raw = np.full((g_count, s_count), np.nan)
    for g in range(g_count):
        seen = np.arange(s_count) < ga.prompt_length + g
        z[g, seen] = ga.normalized(g)[seen]
        raw[g, seen] = ga.matrix[g, seen]
    # Positions keep repeated tokens apart on the axes.
    x = [
        f"{s + 1}. {render.token_display(t)[0]}" for s, t in enumerate(ga.source_tokens)
    ]
    y = [
        f"{g + 1}. {render.token_display(t)[0]}"
        for g, t in enumerate(ga.generated_tokens)
    ]

    def cells(a: np.ndarray) -> list:
        # Plain lists (None for blank cells): the chart's data reads the same in any client.
        return [[None if np.isnan(v) else float(v) for v in row] for row in a]

    fig = go.Figure(
        go.Heatmap(
            z=cells(z),
            x=x,
            y=y,
            customdata=cells(raw),
            zmin=-1,
            zmax=1,
            hoverongaps=False,
            colorscale=[
                [0.0, "rgb(37,99,235)"],
                [0.5, "rgb(255,255,255)"],
                [1.0, "rgb(220,38,38)"],
            ],
            colorbar={"title": {"text": "÷ row max"}},
            hovertemplate="generated %{y}<br>source %{x}<br>attribution %{customdata:.4g}"
            "<br>row-scaled %{z:.2f}<extra></extra>",
        )
    )
    fig.add_vline(x=ga.prompt_length - 0.5, line_width=1, line_color="#111827")
    fig.update_layout(
        height=max(220, 34 * g_count + 140),
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        xaxis={"title": "source token (prompt | generated)", "tickangle": -45},
        yaxis={"title": "generated token", "autorange": "reversed"},
    )
    return fig


def _contrast_options(ga, g: int, current: str | None) -> list[str | None]:
    chosen = ga.generated_tokens[g]
    options: list[str | None] = [None]
    options += (
        [t for t, _ in ga.top_alternatives[g] if t != chosen]
        if ga.top_alternatives
        else []
    )
    if current is not None and current not in options:
        options.append(current)
    return options


@dataclasses.dataclass(frozen=True)
class Asked:
    """What the visitor asked to explain: the cleaned prompt, and either a typed continuation
    (``given``) or a number of tokens for the model to write."""

    prompt: str
    given: bool
    continuation: str
    new_tokens: int

    def settings(self) -> dict:
        """The share link's entries for the request."""
        return {"prompt": self.prompt, "given": self.given,
                "continuation": self.continuation if self.given else None,
                "new_tokens": None if self.given else self.new_tokens}


def choose_model(q: str, infos: list):
    """The sidebar's language model and device pickers under prefix ``q``; returns (model
    name, device, loaded model). Stops the page with what to run when no language model is
    there or the chosen one is not downloaded."""
    if not infos:
        st.error(
            "No language model is available: the bundled patterns-lm is missing from "
            "saliency_core/weights. Regenerate it with "
            "`python -m saliency_core train-bundled --only patterns-lm`."
        )
        st.stop()
    names = [m.name for m in infos]
    present = {m.name: m.present for m in infos}
    with st.sidebar:
        st.header("Model")
        default = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
        model_name = select(
            "Model",
            names,
            f"{q}.model",
            default,
            format_func=lambda n: n if present[n] else f"{n} (not downloaded)",
        )
        device = select(
            "Device", devices(), f"{q}.device", default_device(), help=page.DEVICE_HELP
        )
    if not present[model_name]:
        st.warning(
            f"{model_name} is not downloaded on this server. Fetch it on the Models "
            f"page (administrators) or with `make fetch MODELS={model_name}` (or "
            f"`python -m saliency_core fetch {model_name}`), then reload this page."
        )
        session.publish(q, {"mode": NEXT, "model": model_name})
        st.stop()
    with page.stop_on_error():
        loaded = page.load(model_name, device)
    return model_name, device, loaded


def score_picker(q: str) -> str:
    """The score explained for every generated token (log-probability by default)."""
    ensure(f"{q}.score", "log_prob")
    return st.selectbox(
        "Score of each token",
        list(SCORES),
        key=f"{q}.score",
        format_func=SCORES.get,
        help="What is explained for every generated token: its "
        "log-probability (as Captum), its logit or its probability.",
    )


def prompt_inputs(q: str, model_name: str) -> Asked:
    """The samples, the prompt and the continuation controls (generate N tokens, or type
    the continuation) under prefix ``q``."""

    def use_sample() -> None:
        chosen = st.session_state.get(f"{q}.sample")
        if chosen:
            st.session_state[f"{q}.prompt"] = chosen

    st.selectbox(
        "Samples",
        samples_for(model_name),
        index=None,
        key=f"{q}.sample",
        placeholder="Pick a sample prompt...",
        on_change=use_sample,
    )
    ensure(f"{q}.prompt", samples_for(model_name)[0])
    typed = st.text_area("Prompt", key=f"{q}.prompt", height=90)
    prompt, notes = clean(typed)
    for note in notes:
        st.warning(note)
    cap = compute.max_new_tokens_cap()
    left, right = st.columns([1, 2])
    with left:
        ensure(f"{q}.given", False)
        given = st.toggle(
            "Type the continuation",
            key=f"{q}.given",
            help="Off: the model writes its own most likely continuation. On: "
            "explain the continuation you type (teacher forcing).",
        )
    continuation = ""
    with right:
        if given:
            ensure(f"{q}.continuation", "")
            continuation_typed = st.text_input(
                "Continuation to explain",
                key=f"{q}.continuation",
                placeholder="e.g. alice bought a kite",
            )
            continuation, more = clean(continuation_typed)
            for note in more:
                st.warning(note)
            new_tokens = int(
                st.session_state.get(f"{q}.new_tokens", DEFAULT_NEW_TOKENS)
            )
        else:
            ensure(f"{q}.new_tokens", DEFAULT_NEW_TOKENS)
            new_tokens = int(
                st.number_input(
                    f"Tokens to generate (at most {cap})", 1, cap, key=f"{q}.new_tokens"
                )
            )
    return Asked(prompt, given, continuation, new_tokens)


def ready(loaded, asked: Asked, q: str, settings: dict) -> str | None:
    """The continuation to explain (None: the model writes it), once the request can run;
    otherwise says what is missing, publishes ``settings`` and stops the page."""
    cap = compute.max_new_tokens_cap()
    if not asked.prompt.strip():
        st.info(
            "Type a prompt (or pick a sample) to see which tokens each generated word "
            "depended on."
        )
        session.publish(q, settings)
        st.stop()
    if not asked.given:
        return None
    continuation = asked.continuation
    if not continuation.strip():
        st.info(
            "Type the continuation to explain, or switch off 'Type the continuation' to "
            "let the model write it."
        )
        session.publish(q, settings)
        st.stop()
    count = len(loaded.tokenizer(continuation, add_special_tokens=False)["input_ids"])
    if count > cap:
        st.error(
            f"The continuation has {count} tokens; at most {cap} are explained per "
            "request on this server. Shorten it."
        )
        session.publish(q, settings)
        st.stop()
    # A typed continuation starts after the prompt: a word-level continuation needs its space.
    if not continuation.startswith((" ", "\n")):
        continuation = " " + continuation
    return continuation


def run(prefix: str) -> None:
    """The whole Next word mode; ends the script run."""
    from workbench.ui.navigation import ensure_app_navigation

    ensure_app_navigation()
    st.title("Next-word saliency")
    st.caption(
        "Which earlier tokens made a language model predict each word it writes? Each "
        "row of the matrix is one generated token; red source tokens raised its score, "
        "blue ones lowered it."
    )
    mode_switch()
    infos = generation_models()
    names = [m.name for m in infos]
    methods = method_specs()
    if infos and (reader := page.visit(Q)) is not None:
        _restore(reader, names, methods)
    model_name, device, loaded = choose_model(Q, infos)

    with st.sidebar:
        st.header("Method")
        spec = page.method_picker(Q, methods, DEFAULT_METHOD)
        method = spec.name
        params = method_params(spec, Q, "text", get_spec=_spec_of)
        score = score_picker(Q)

    page.show_problems(Q)
    asked = prompt_inputs(Q, model_name)
    contrast = st.session_state.get(f"{Q}.contrast") or None
    settings = {
        "mode": NEXT,
        "model": model_name,
        "device": device,
        **asked.settings(),
        "method": method,
        "score": score,
        "contrast": contrast,
        **url_method_params(spec, params),
    }
    continuation = ready(loaded, asked, Q, settings)
    prompt, new_tokens = asked.prompt, asked.new_tokens

    run_params = {**params, "max_prompt_tokens": MAX_PROMPT_TOKENS}
    computation = compute.generation_computation(
        loaded,
        device,
        prompt,
        continuation,
        new_tokens,
        method,
        run_params,
        score,
        contrast,
    )
    result = None
    if progress.was_stopped(computation.key):
        progress.stopped_notice(computation.key, key=f"{Q}.rerun")
    else:
        try:
            with progress.Progress(
                f"{spec.label} on {model_name}", computation.key, f"{Q}.stop"
            ) as bar:
                result = compute.explain_generation(
                    session.visitor(),
                    loaded,
                    computation,
                    prompt,
                    continuation,
                    new_tokens,
                    progress=bar,
                ).attribution
        except SaliencyError as exc:
            plaintext.error(exc)

    if result is None:
        session.share_box(session.publish(Q, settings))
        st.stop()
    _show(
        result,
        loaded,
        model_name,
        device,
        spec,
        method,
        run_params,
        score,
        contrast,
        settings,
    )
    st.stop()


def _show(
    ga, loaded, model_name, device, spec, method, run_params, score, contrast, settings
) -> None:
    g_count = len(ga.generated_tokens)
    token_key = f"{Q}.token"
    current = st.session_state.get(token_key)
    if not isinstance(current, int) or not 0 <= current < g_count:
        st.session_state[token_key] = 0
    session.share_box(
        session.publish(Q, {**settings, "token": st.session_state[token_key]})
    )

    meta = ga.metadata
    what = f"{SCORES[score]}" + (
        f" rather than {plaintext.plain(repr(contrast))}" if contrast else ""
    )
    st.caption(
        f"{spec.label} · explains each token's {what} · {meta.get('passes', 0)} model "
        f"passes · {meta.get('time_s', 0.0):.2f} s on {meta.get('device', device)} · "
        f"token score: {meta.get('aggregation', '?')} over the embedding"
    )
    unknown = getattr(loaded.tokenizer, "unk_token", None)
    if unknown and unknown in ga.source_tokens[: ga.prompt_length]:
        st.info(f"Some words of the prompt are not in {plaintext.plain(model_name)}'s "
                f"vocabulary: they are read as {plaintext.plain(unknown)} (greyed). The bundled model knows only the words of its samples' "
                "kinds of sentence.")
    st.subheader("Which tokens each generated token depended on")
    st.plotly_chart(heatmap(ga), key=f"{Q}.matrix", config={"displayModeBar": False})
    # The library's notes: IG's zero generated-token columns, a baseline it had to replace.
    for note in meta.get("notes", []):
        st.caption(plaintext.plain(note[:1].upper() + note[1:] + "."))

    st.subheader("One generated token")
    g = st.pills(
        "Generated token",
        list(range(g_count)),
        key=token_key,
        required=True,
        format_func=lambda i: (
            f"{i + 1}. {render.token_display(ga.generated_tokens[i])[0]}"
        ),
        help="Click a generated token to see the text before it coloured by how much "
        "each token made the model write it.",
    )
    if g is None:  # a second click unselects the pill: keep showing the first token
        g = 0
    seen = ga.prompt_length + g
    tokens = ga.source_tokens[:seen]
    st.markdown(
        render.token_html(tokens, ga.matrix[g, :seen], ga.special_mask[:seen].tolist())
        + f' <span style="border:2px solid #111827;border-radius:3px;padding:1px 3px;">'
        f"{html.escape(plaintext.visible(ga.generated_tokens[g]))}</span>",
        unsafe_allow_html=True,
    )
    st.caption(
        f"The model gave **{plaintext.plain(ga.generated_tokens[g])}** a probability of "
        f"{float(ga.probabilities[g]):.1%}. Hover a token for its score; grey tokens are "
        "special tokens, left out of the colour scale."
    )
    options = _contrast_options(ga, g, contrast)
    probability = dict(ga.top_alternatives[g]) if ga.top_alternatives else {}
    ensure(f"{Q}.contrast", contrast)
    st.selectbox(
        "Rather than",
        options,
        key=f"{Q}.contrast",
        format_func=lambda t: (
            "(no contrast: the token alone)"
            if t is None
            else plaintext.visible(t)
            + (f" ({probability[t]:.1%} here)" if t in probability else "")
        ),
        help="Explain why the model wrote this token rather than another of its top "
        "candidates: the score becomes log p(token) - log p(other), for every "
        "generated token.",
    )
    completeness = meta.get("completeness")
    if completeness and "relative_gap" in completeness:
        gap = completeness["relative_gap"][g]
        if gap is not None and np.isfinite(gap):
            (st.success if abs(gap) <= 0.05 else st.warning)(
                f"**Completeness.** For this token the attributions add up to the score's "
                f"change from the baseline within {abs(gap):.1%}."
            )

    stem = export.file_stem(model_name, method, "next-word")
    npz = io.BytesIO()
    ga.save_npz(npz)
    record = export.json_record(
        page="text",
        mode="next word",
        model=model_name,
        model_source=loaded.source,
        device=device,
        method=method,
        params=run_params,
        score=score,
        contrast=contrast,
        result=ga.to_dict(),
    )
    d1, d2, d3 = st.columns(3)
    png = session.kept(f"{Q}._png", ga, (), lambda: ga._repr_png_())
    d1.download_button(
        "Matrix (PNG)",
        png,
        f"{stem}.png",
        "image/png",
        key=f"{Q}.dl_png",
        width="stretch",
    )
    d2.download_button(
        "Matrix (.npz)",
        npz.getvalue(),
        f"{stem}.npz",
        "application/octet-stream",
        key=f"{Q}.dl_npz",
        width="stretch",
    )
    d3.download_button(
        "Record (JSON)",
        record,
        f"{stem}.json",
        "application/json",
        key=f"{Q}.dl_json",
        width="stretch",
    )
    with st.expander("Run details"):
        st.json(meta)
