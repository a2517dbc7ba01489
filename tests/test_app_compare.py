"""The Compare page under AppTest: a grid of methods (and two models), shared or per-map scale,
times, the scoreboard, display changes without model runs, links."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import count_engine_runs, run_app_page, shown
from support.browser import REPO_ROOT

import saliency_core
from saliency_core import evaluation
from workbench.jobs import compute

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

PAGE = str(REPO_ROOT / "pages" / "compare.py")
TIMEOUT = 240
# The shapes CNN: the page's machinery at a fraction of the default ImageNet model's cost.
FAST = {"model": "shapes-cnn", "methods": "gradient,integrated_gradients,gradcam",
        "integrated_gradients.steps": "8"}
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture
def engine_calls(monkeypatch):
    compute.result_cache.clear()
    calls: list[tuple[str, str]] = []
    with count_engine_runs(lambda model, method: calls.append((model.name, method))):
        yield calls
    compute.result_cache.clear()


def run_page(query: dict | None = None) -> AppTest:
    return run_app_page(PAGE, query, TIMEOUT)


def cell_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if " s · " in c.value]


@pytest.mark.slow
def test_default_compares_methods_on_a_photo_with_a_real_imagenet_model(engine_calls):
    at = run_page({"methods": "gradcam,guided_backprop"})
    assert not at.error and not at.warning, [e.value for e in [*at.error, *at.warning]]
    assert at.query_params["model"] == "efficientnet-lite0"
    assert at.query_params["input"] == "photo:chelsea"
    assert engine_calls == [("efficientnet-lite0", "gradcam"),
                            ("efficientnet-lite0", "guided_backprop")]
    headers = " ".join(h.value for h in at.subheader).replace("\\", "")  # markdown escapes
    assert headers.startswith("efficientnet-lite0: predicts")
    assert any(f"predicts {cat} (" in headers for cat in CATS), headers


def test_grid_of_methods_with_times_and_scoreboard(engine_calls):
    at = run_page(FAST)
    assert not at.error, [e.value for e in at.error]
    assert [m for _, m in engine_calls] == ["gradient", "integrated_gradients", "gradcam"]
    captions = cell_captions(at)
    assert len(captions) == 3 and "**Integrated Gradients** ·" in captions[1]
    assert "8 passes" in captions[1]
    assert len(at.get("image")) == 3
    board = at.dataframe[0].value
    assert set(board["method"]) == {"Vanilla gradient", "Integrated Gradients", "Grad-CAM"}
    # Shapes samples come with masks, so localisation columns are there too.
    assert {"deletion AUC ↓", "insertion AUC ↑", "pointing ↑", "mass in mask ↑"} <= set(board)
    assert min(board["rank"]) == 1


@pytest.mark.slow
def test_display_and_scale_changes_do_not_rerun_models(engine_calls):
    at = run_page(FAST)
    n = len(engine_calls)
    urls = [e.proto.imgs[0].url for e in at.get("image")]
    at.radio(key="compare.scale").set_value("shared").run()
    shared_urls = [e.proto.imgs[0].url for e in at.get("image")]
    at.selectbox(key="compare.view.cmap").set_value("gray").run()
    at.slider(key="compare.view.alpha").set_value(0.9).run()
    assert not at.exception and len(engine_calls) == n
    assert shared_urls != urls  # maps on one scale look different
    assert at.query_params["scale"] == "shared" and at.query_params["cmap"] == "gray"


def test_second_model_adds_a_row(engine_calls):
    at = run_page({**FAST, "model2": "shapes-cnn-watermark", "input": "shapes-wm:1",
                   "score": "false"})
    assert at.toggle(key="compare.two").value is True
    assert {m for m, _ in engine_calls} == {"shapes-cnn", "shapes-cnn-watermark"}
    assert len(cell_captions(at)) == 6 and len(at.get("image")) == 6
    headers = [shown(h.value) for h in at.subheader]
    assert any(h.startswith("shapes-cnn-watermark: predicts") for h in headers)
    assert not at.dataframe  # scoring switched off by the link


def test_method_settings_are_generated_per_method_and_linked(engine_calls):
    at = run_page({**FAST, "score": "false"})
    at.slider(key="compare.m.integrated_gradients.steps").set_value(6).run()
    assert engine_calls[-1][1] == "integrated_gradients"
    assert at.query_params["integrated_gradients.steps"] == "6"
    assert "gradient.steps" not in at.query_params  # defaults stay out of the link


def test_removing_all_methods_asks_for_one(engine_calls):
    at = run_page({**FAST, "score": "false"})
    at.multiselect(key="compare.methods").set_value([]).run()
    assert not at.exception
    assert any("at least one method" in i.value for i in at.info)


def test_unknown_methods_in_link_are_reported(engine_calls):
    at = run_page({"model": "shapes-cnn", "methods": "gradient,telepathy", "score": "false"})
    assert any("telepathy" in w.value for w in at.warning)
    assert at.multiselect(key="compare.methods").value == ["gradient"]


@pytest.mark.slow
def test_scoreboard_matches_the_library(engine_calls):
    """The page's scoreboard is evaluation.scoreboard on the same attributions."""
    at = run_page({"model": "shapes-cnn", "methods": "gradient,gradcam"})
    board = at.dataframe[0].value
    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    from workbench.ui.inputs import from_sample

    sample = from_sample("shapes:0")
    x = loaded.preprocess(sample.image)
    attributions = {spec: saliency_core.attribute(loaded, x, name)
                    for spec, name in (("Vanilla gradient", "gradient"), ("Grad-CAM", "gradcam"))}
    rows = evaluation.scoreboard(loaded, x, attributions, target="predicted", mask=sample.mask)
    expected = {r["method"]: r["deletion_auc"] for r in rows}
    for _, row in board.iterrows():
        assert row["deletion AUC ↓"] == pytest.approx(expected[row["method"]], abs=1e-3)
