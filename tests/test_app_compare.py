"""The Compare page under AppTest: a grid of methods (and two models), shared or per-map scale,
times, the scoreboard, display changes without model runs, links."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import count_engine_runs, run_app_page, shown
from support.browser import REPO_ROOT

import saliency_core
from saliency_core import evaluation
from saliency_core.models import bundled
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


def test_one_pass_is_written_in_the_singular(engine_calls):
    at = run_page({"model": "shapes-cnn", "methods": "gradient", "score": "false"})
    (caption,) = cell_captions(at)
    assert caption.endswith("· 1 pass"), caption


def test_method_settings_show_each_full_method_name(engine_calls):
    """Tabs cut long names ("Integrated Gradient›") in the sidebar; each method's settings
    are under its whole name."""
    at = run_page({**FAST, "score": "false"})
    labels = [e.label for e in at.sidebar.expander]
    assert {"Vanilla gradient", "Integrated Gradients", "Grad-CAM"} <= set(labels), labels
    assert not at.sidebar.tabs


def test_scoreboard_draws_each_methods_deletion_and_insertion_curves(engine_calls):
    import json

    at = run_page(FAST)
    (chart,) = at.get("plotly_chart")
    traces = json.loads(chart.proto.spec)["data"]
    by_name: dict[str, list] = {}
    for trace in traces:
        by_name.setdefault(trace["name"], []).append(trace)
    assert set(by_name) == {"Vanilla gradient", "Integrated Gradients", "Grad-CAM"}
    # One line per method in each panel (deletion, then insertion), over the same fractions.
    assert all(len(lines) == 2 for lines in by_name.values())
    xs = {tuple(t["x"]) for t in traces}
    assert len(xs) == 1 and next(iter(xs))[0] == 0.0 and next(iter(xs))[-1] == 1.0


def test_ranking_rule_is_stated_next_to_the_table(engine_calls):
    at = run_page(FAST)
    board = at.dataframe[0].value
    rule = " ".join(c.value for c in at.caption)
    assert "mean of" in rule and "lower deletion AUC" in rule and "higher insertion AUC" in rule
    assert "pointing" in rule  # the shapes samples have masks: localisation counts
    assert "mean rank" in board and (board["mean rank"].diff().dropna() >= 0).all()


def test_second_model_defaults_to_one_trained_on_the_same_data(engine_calls):
    """An ImageNet model is compared with another ImageNet model, not with shapes-cnn (which
    would at once warn that it only knows shapes)."""
    at = run_page({"model": "efficientnet-lite0", "methods": "gradcam", "score": "false"})
    at.toggle(key="compare.two").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    second = at.selectbox(key="compare.model2").value
    assert second.startswith("efficientnet-lite"), second
    assert not at.warning, [w.value for w in at.warning]
    # Switching the first model to a shapes CNN moves the untouched default along.
    at.selectbox(key="compare.model").set_value("shapes-cnn").run()
    assert at.selectbox(key="compare.model2").value == "shapes-cnn-watermark"


def test_no_second_model_of_the_same_kind_is_said():
    from workbench.jobs.models import get_model, same_domain_partner

    first = get_model("efficientnet-lite0", "cpu")
    assert same_domain_partner(first, ["efficientnet-lite0", "shapes-cnn"], "cpu") is None
    assert same_domain_partner(first, ["shapes-cnn", "efficientnet-lite1"], "cpu") == \
        "efficientnet-lite1"
    shapes = get_model("shapes-cnn", "cpu")
    assert same_domain_partner(shapes, ["shapes-cnn", "efficientnet-lite0",
                                        "shapes-cnn-watermark"], "cpu") == "shapes-cnn-watermark"


def test_colour_bar_is_labelled_with_the_range_the_map_was_drawn_with():
    import numpy as np

    from workbench.ui import compare_view, display

    rng = np.random.default_rng(0)
    attribution = rng.normal(size=(3, 16, 16)).astype(np.float32)
    image = np.zeros((16, 16, 3), np.uint8)
    signed = display.DisplayOptions("RdBu_r", 0.5, 99.0, "signed", "signed_sum")
    rendered = display.render_map(attribution, image, signed)
    bar = compare_view.colour_bar_html(rendered, signed, shared=False)
    c = compare_view.number(rendered.clip_value)
    assert f"<span>≤ −{c}</span><span>0</span><span>≥ {c}</span>" in bar
    assert "99th percentile" in bar
    # On a shared scale the bar's ends are the shared value, and it says so.
    magnitude = display.DisplayOptions("inferno", 0.5, 99.0, "absolute", "max_abs")
    rendered = display.render_map(attribution, image, magnitude, scale=2.5)
    bar = compare_view.colour_bar_html(rendered, magnitude, shared=True)
    assert "<span>0</span><span>≥ 2.5</span>" in bar and "shared by all maps" in bar


def test_methods_a_model_cannot_run_are_not_offered_and_a_second_model_gets_one_line(
        engine_calls):
    """The attention methods need a vision transformer: on a CNN they are not offered (a link
    naming them says they went); beside shapes-vit, the CNN's row says in one line which it
    cannot run instead of an error in each cell."""
    at = run_page({"model": "shapes-cnn", "methods": "gradient,attention_rollout",
                   "score": "false"})
    assert "Attention rollout" not in at.multiselect(key="compare.methods").options
    assert at.multiselect(key="compare.methods").value == ["gradient"]
    assert any("cannot run them: Attention rollout" in c.value for c in at.caption)
    if not bundled.is_present("shapes-vit"):
        return
    at = run_page({"model": "shapes-vit", "model2": "shapes-cnn", "input": "shapes:0",
                   "methods": "gradcam,attention_rollout,attention_relevance",
                   "score": "false"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    lines = [c.value for c in at.caption if c.value.startswith("Not run on")]
    assert len(lines) == 1 and "Attention rollout, Attention relevance" in lines[0], lines
    assert ("shapes-cnn", "attention_rollout") not in engine_calls
    assert len(cell_captions(at)) == 4  # three maps of shapes-vit, Grad-CAM of shapes-cnn
