"""The Text page under AppTest: prediction, highlighted tokens and bars, methods and baselines,
empty and over-long text, GELU-incompatible methods, links."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import count_engine_runs, run_app_page, shown
from support.browser import REPO_ROOT

from workbench.jobs import compute

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

PAGE = str(REPO_ROOT / "pages" / "text.py")
TIMEOUT = 180


@pytest.fixture
def engine_calls(monkeypatch):
    compute.result_cache.clear()
    calls: list[str] = []
    # Progressive levels (IG, SmoothGrad) run through a kept TextRefiner; a level served from
    # kept sums runs no model, and is not counted.
    with count_engine_runs(lambda _model, method: calls.append(method)):
        yield calls
    compute.result_cache.clear()


def run_page(query: dict | None = None) -> AppTest:
    return run_app_page(PAGE, query, TIMEOUT)


def token_markup(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "token-saliency" in m.value)


def test_default_sentence_is_explained_with_tokens_and_bars(engine_calls):
    at = run_page({"p.steps": "8", "text": "A wonderful, moving film."})
    assert engine_calls == ["integrated_gradients"]
    assert at.metric[0].value == "positive"
    table = at.dataframe[0].value
    assert list(table["class"]) == ["negative", "positive"]
    assert table["probability"].sum() == pytest.approx(1.0, abs=1e-4)
    markup = token_markup(at)
    assert ">wonderful<" in markup and "[CLS]" in markup and "rgba(220, 38, 38" in markup
    (bars,) = at.get("plotly_chart")
    assert "wonderful" in bars.proto.spec
    assert any("Completeness" in s.value for s in [*at.success, *at.info, *at.warning])


@pytest.mark.parametrize("baseline", ["pad", "mask", "unk", "zeros"])
def test_text_baselines(engine_calls, baseline):
    at = run_page({"p.steps": "4", "p.baseline": baseline, "text": "Dull and far too long."})
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="text.m.integrated_gradients.baseline").value == baseline
    assert "token-saliency" in token_markup(at)


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "smoothgrad"])
def test_other_text_methods(engine_calls, method):
    query = {"method": method, "text": "Great food, rude staff."}
    if method == "smoothgrad":
        query["p.samples"] = "3"
    at = run_page(query)
    assert not at.error and engine_calls == [method]
    assert len(at.get("plotly_chart")) == 1


def test_guided_backprop_on_gelu_model_is_a_clear_message(engine_calls):
    at = run_page({"method": "guided_backprop", "text": "Fine."})
    assert not at.exception
    message = " ".join(shown(e.value) for e in at.error)
    assert "ReLU" in message and "GELU" in message
    assert not at.get("plotly_chart")


def test_empty_text_asks_for_input_without_running_the_model(engine_calls):
    at = run_page()
    first = len(engine_calls)  # the first, non-empty run: a coarse preview, then the full one
    at.text_area(key="text.text").set_value("   ").run()
    assert not at.exception and not at.error
    assert any("Type a sentence" in i.value for i in at.info)
    assert first and engine_calls == ["integrated_gradients"] * first


def test_overlong_text_is_truncated_with_notice(engine_calls):
    long_text = " ".join(["the plot was fine but the acting was wooden"] * 70)  # ~630 tokens
    at = run_page({"text": long_text, "method": "gradient"})
    assert any("longer than" in w.value and "tokens" in w.value for w in at.warning)
    assert token_markup(at).count('class="token"') <= 512


def test_max_tokens_setting_truncates_and_is_in_the_link(engine_calls):
    at = run_page({"text": "one two three four five six seven eight nine ten", "method": "gradient",
                   "max_tokens": "6"})
    assert any("longer than 6 tokens" in w.value for w in at.warning)
    assert token_markup(at).count('class="token"') == 6
    assert at.query_params["max_tokens"] == "6"


def test_target_class_and_example_picker(engine_calls):
    at = run_page({"method": "gradient"})
    at.selectbox(key="text.example").set_value(
        "I wanted to love this place, but the food was cold and the staff ignored us.").run()
    assert at.text_area(key="text.text").value.startswith("I wanted to love")
    assert at.metric[0].value == "negative"
    at.selectbox(key="text.target").set_value(1).run()
    assert any("Explaining **positive**" in c.value for c in at.caption)
    assert at.query_params["target"] == "1"


def test_method_change_reruns_but_same_settings_come_from_cache(engine_calls):
    at = run_page({"method": "gradient", "text": "Okay."})
    at.selectbox(key="text.method").set_value("gradient_x_input").run()
    at.selectbox(key="text.method").set_value("gradient").run()
    assert engine_calls == ["gradient", "gradient_x_input"]


def test_malformed_link_values_fall_back_with_messages(engine_calls):
    at = run_page({"model": "gpt-17", "p.steps": "-3", "max_tokens": "many"})
    texts = " ".join(shown(w.value) for w in at.warning)
    assert "model='gpt-17'" in texts and "p.steps='-3'" in texts and "max_tokens='many'" in texts
    assert at.selectbox(key="text.model").value == "minilm-sentiment"
    assert at.slider(key="text.m.integrated_gradients.steps").value == 50
