"""Showing token saliency: highlighted text, a per-token bar chart, the prediction, examples."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from saliency_core import render
from workbench.jobs.results import TextResult
from workbench.ui.plaintext import plain

EXAMPLES = [
    "The film was a delight: sharp writing, warm performances and a score I still hum.",
    "I wanted to love this place, but the food was cold and the staff ignored us.",
    "Not bad at all, although the ending drags on far too long.",
    "The battery died after two days and support never answered my emails.",
    "An absolute masterpiece, I would watch it again tomorrow.",
]


def use_example(example_key: str, text_key: str) -> None:
    """Selectbox callback: copy the picked example into the text box."""
    example = st.session_state.get(example_key)
    if example:
        st.session_state[text_key] = example


def prediction(result: TextResult, labels: list[str]) -> None:
    st.metric("Predicted", plain(labels[result.predicted]),
              f"{result.probabilities[result.predicted]:.1%}", delta_color="off")
    if result.target != result.predicted:
        st.caption(f"Explaining **{plain(labels[result.target])}** "
                   f"({result.probabilities[result.target]:.1%}).")
    st.dataframe(
        [{"class": label, "probability": float(p)} for label, p in zip(labels, result.probabilities)],
        hide_index=True, width="stretch",
        column_config={"probability": st.column_config.ProgressColumn(
            "Probability", min_value=0.0, max_value=1.0, format="percent")},
    )


def highlighted(result: TextResult) -> None:
    st.markdown(render.token_html(result.tokens, result.scores, result.special),
                unsafe_allow_html=True)
    st.caption("Hover a token for its score. Grey: special tokens the tokenizer adds.")


def bar_chart(result: TextResult) -> go.Figure:
    keep = [i for i, s in enumerate(result.special) if not s]
    scores = np.asarray(result.scores)[keep]
    # Positions make repeated words distinct bars.
    names = [f"{n}. {render.token_display(result.tokens[i])[0]}" for n, i in enumerate(keep, 1)]
    colours = ["#dc2626" if s >= 0 else "#2563eb" for s in scores]
    fig = go.Figure(go.Bar(x=names, y=scores, marker_color=colours,
                           hovertemplate="%{x}<br>score=%{y:.4g}<extra></extra>"))
    fig.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      yaxis_title="attribution", xaxis_tickangle=-45)
    return fig
