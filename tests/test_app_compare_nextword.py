"""The Compare page's Next word mode under AppTest, on the bundled patterns-lm: one matrix per
method over the same generated tokens, a link that reopens it, the mode switch, and the
image comparison left as it was. The mode switch is ``long`` (``make test-lm``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import run_app_page, shown
from support.browser import REPO_ROOT

from workbench.jobs import compute

PAGE = str(REPO_ROOT / "pages" / "compare.py")
TIMEOUT = 180
PROMPT = "alice went to the market . later ,"


@pytest.fixture(autouse=True)
def _fresh_cache():
    compute.result_cache.clear()
    yield
    compute.result_cache.clear()


def messages(at: AppTest) -> str:
    return " ".join(shown(m.value) for m in [*at.error, *at.warning, *at.info])


def matrices(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec)["data"][0] for chart in at.get("plotly_chart")]


def test_link_opens_one_matrix_per_method_over_the_same_tokens():
    at = run_app_page(
        PAGE,
        {
            "mode": "next",
            "methods": "gradient,gradient_x_input,integrated_gradients",
            "integrated_gradients.steps": "4",
            "new_tokens": "2",
            "prompt": PROMPT,
        },
        TIMEOUT,
    )
    assert not at.error, messages(at)
    assert at.session_state["compare.task"] == "Next word"
    assert at.title[0].value == "Compare methods: next word"
    heats = matrices(at)
    assert len(heats) == 3 and all(h["type"] == "heatmap" for h in heats)
    # The same 2 generated tokens over <bos>, the 8 prompt words and themselves, for each.
    assert {tuple(h["y"]) for h in heats} == {("1. alice", "2. bought")}
    for heat in heats:
        z = np.array(heat["z"], dtype=float)
        assert z.shape == (2, 1 + 8 + 2) and np.isnan(z[0, 9:]).all()
    # Different methods, different matrices.
    raw = [np.nan_to_num(np.array(h["customdata"], dtype=float)) for h in heats]
    assert not np.allclose(raw[0], raw[2])
    labels = " ".join(m.value for m in at.markdown)
    assert "Integrated Gradients" in labels and "Gradient × input" in labels
    params = at.query_params
    assert params["mode"] == "next" and params["methods"] == (
        "gradient,gradient_x_input,integrated_gradients"
    )
    assert params["integrated_gradients.steps"] == "4"


@pytest.mark.long
def test_mode_switch_keeps_the_image_comparison():
    at = run_app_page(
        PAGE,
        {
            "model": "shapes-cnn",
            "methods": "gradient",
            "score": "false",
            "input": "shapes:3",
        },
        TIMEOUT,
    )
    assert at.session_state["compare.task"] == "Images"
    assert at.title[0].value == "Compare methods" and not at.error, messages(at)
    at.session_state["compare.task"] = "Next word"
    at.query_params.clear()  # as the switch's callback does: the link held the image view
    at.run()
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="comparegen.model").value == "patterns-lm"
    assert len(matrices(at)) == 3
    at.session_state["compare.task"] = "Images"
    at.run()
    assert at.title[0].value == "Compare methods" and not at.exception


def test_hostile_requests_get_clear_messages():
    empty = run_app_page(PAGE, {"mode": "next", "prompt": "   "}, TIMEOUT)
    assert "Type a prompt" in messages(empty) and not empty.get("plotly_chart")
    odd = run_app_page(
        PAGE,
        {
            "mode": "next",
            "methods": "gradient,nope,gradient",
            "prompt": "alice\x00 went",
            "new_tokens": "1",
        },
        TIMEOUT,
    )
    assert not odd.exception and len(matrices(odd)) == 1
    said = messages(odd)
    assert "unknown methods (nope)" in said and "Control characters" in said
