"""The Text page's Next word mode under AppTest, on the bundled patterns-lm: the matrix, the
token picker and its highlighted prompt, the contrast, links, exports and hostile input.

The default tier opens the mode from a link and switches modes; the rest is ``long``
(``make test-lm``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import run_app_page, shown
from support.browser import REPO_ROOT

from workbench.jobs import compute

PAGE = str(REPO_ROOT / "pages" / "text.py")
TIMEOUT = 180
CHEAP = {"mode": "next", "p.steps": "4", "new_tokens": "3"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    compute.result_cache.clear()
    yield
    compute.result_cache.clear()


def run_page(query: dict | None = None) -> AppTest:
    return run_app_page(PAGE, query, TIMEOUT)


def messages(at: AppTest) -> str:
    return " ".join(shown(m.value) for m in [*at.error, *at.warning, *at.info])


def matrix_spec(at: AppTest) -> dict:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)


def test_link_opens_next_word_on_the_bundled_model_with_its_matrix():
    at = run_page({**CHEAP, "prompt": "alice went to the market . later ,"})
    assert not at.error, messages(at)
    assert at.session_state["text.mode"] == "Next word"
    assert at.selectbox(key="textgen.model").value == "patterns-lm"
    heat = matrix_spec(at)["data"][0]
    assert heat["type"] == "heatmap"
    z = np.array(heat["z"], dtype=float)
    # 3 generated tokens over <bos>, the 8 words of the prompt and the 3 generated tokens.
    assert z.shape == (3, 1 + 8 + 3)
    # A generated token cannot depend on itself or what follows: those cells are blank.
    assert np.isnan(z[0, 9:]).all() and not np.isnan(z[2, :11]).any()
    assert heat["x"][:2] == ["1. <bos>", "2. alice"] and heat["y"][0] == "1. alice"
    markup = next(m.value for m in at.markdown if "token-saliency" in m.value)
    assert ">market<" in markup
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Matrix (PNG)", "Matrix (.npz)", "Record (JSON)"]
    assert (
        at.query_params["mode"] == "next" and at.query_params["model"] == "patterns-lm"
    )


def test_switching_modes_keeps_classification_unchanged():
    at = run_page({"text": "A wonderful film.", "p.steps": "4"})
    assert at.session_state["text.mode"] == "Classification"
    assert at.metric[0].value == "positive"
    at.session_state["text.mode"] = "Next word"
    at.run()
    assert not at.exception and not at.error, messages(at)
    assert at.title[0].value == "Next-word saliency"
    assert at.selectbox(key="textgen.model").value == "patterns-lm"
    at.session_state["text.mode"] = "Classification"
    at.run()
    assert at.title[0].value == "Text saliency" and at.metric[0].value == "positive"


@pytest.mark.long
def test_choosing_a_generated_token_highlights_the_prompt_before_it():
    at = run_page({**CHEAP, "prompt": "the keys to the old table", "new_tokens": "2"})
    assert not at.error, messages(at)
    at.session_state["textgen.token"] = 1
    at.run()
    markup = next(m.value for m in at.markdown if "token-saliency" in m.value)
    # The second generated token sees <bos>, the prompt and the first generated token.
    assert markup.count('class="token"') == 1 + 6 + 1
    assert at.query_params["token"] == "1"


@pytest.mark.long
def test_contrast_from_the_top_alternatives_changes_what_is_explained():
    at = run_page({**CHEAP, "prompt": "the keys to the old table", "new_tokens": "1"})
    box = at.selectbox(key="textgen.contrast")
    assert box.options[0].startswith("(no contrast") and len(box.options) >= 4
    plain_row = np.array(matrix_spec(at)["data"][0]["customdata"], dtype=float)[0]
    box.select_index(1).run()
    assert not at.error, messages(at)
    chosen = at.selectbox(key="textgen.contrast").value
    assert chosen is not None and at.query_params["contrast"] == chosen
    contrast_row = np.array(matrix_spec(at)["data"][0]["customdata"], dtype=float)[0]
    assert not np.allclose(plain_row, contrast_row, equal_nan=True)
    assert "rather than" in " ".join(c.value for c in at.caption)


@pytest.mark.long
def test_typed_continuation_is_explained_token_by_token():
    at = run_page(
        {
            **CHEAP,
            "prompt": "alice went to the market . later ,",
            "given": "true",
            "continuation": "alice bought a kite",
        }
    )
    assert not at.error, messages(at)
    assert matrix_spec(at)["data"][0]["y"] == [
        "1. alice",
        "2. bought",
        "3. a",
        "4. kite",
    ]


@pytest.mark.long
@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "smoothgrad"])
def test_other_methods(method):
    at = run_page(
        {**CHEAP, "method": method, "p.samples": "3", "prompt": "( a b [ c ] d"}
    )
    assert not at.error, messages(at)
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.long
def test_exports_hold_the_matrix():
    at = run_page({**CHEAP, "prompt": "( a b [ c ] d"})
    assert len(at.get("download_button")) == 3
    # The result the page showed and exported, as the result cache holds it.
    (result,) = [
        v for v in compute.result_cache()._items.values() if hasattr(v, "attribution")
    ]
    buffer = io.BytesIO()
    result.attribution.save_npz(buffer)
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as npz:
        assert npz["matrix"].shape == (3, 1 + 7 + 3)


@pytest.mark.long
def test_hostile_input_gets_clear_messages():
    at = run_page({**CHEAP, "prompt": "   "})
    assert "Type a prompt" in messages(at) and not at.get("plotly_chart")
    at = run_page({**CHEAP, "prompt": "alice\x00 went\x1b to the park"})
    assert "Control characters" in messages(at) and len(at.get("plotly_chart")) == 1
    at = run_page({**CHEAP, "prompt": " ".join(["alice"] * 300)})
    assert "301 tokens" in messages(at) and "Shorten the prompt" in messages(at)
    assert not at.get("plotly_chart")
    at = run_page(
        {
            **CHEAP,
            "given": "true",
            "prompt": "alice went",
            "continuation": " ".join(["home"] * 40),
        }
    )
    assert "at most" in messages(at) and not at.get("plotly_chart")
    at = run_page({**CHEAP, "new_tokens": "5000"})
    assert "new_tokens" in messages(at)  # the link's value is refused and said so


@pytest.mark.long
def test_missing_zoo_model_says_how_to_fetch_it():
    from saliency_core.models import available_models

    absent = [
        m.name
        for m in available_models()
        if m.task == "text-generation" and not m.present
    ]
    if not absent:
        pytest.skip("every language model of the zoo is downloaded here")
    at = run_page({"mode": "next", "model": absent[0]})
    assert f"make fetch MODELS={absent[0]}" in messages(at)
    assert not at.get("plotly_chart")


def test_words_the_bundled_model_does_not_know_are_said():
    at = run_page({**CHEAP, "prompt": "the keys to the old cabinet", "new_tokens": "1"})
    assert "not in patterns-lm's vocabulary" in messages(at)
    assert len(at.get("plotly_chart")) == 1
