"""The Sanity checks page under Streamlit's AppTest: a small cascade with the bundled shapes
model, the data randomization test, the independent mode and the messages for bad choices."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import shown
from support.browser import REPO_ROOT

from saliency_core.models import bundled

PAGE = str(REPO_ROOT / "pages" / "sanity.py")
TIMEOUT = 180

pytestmark = pytest.mark.skipif(not bundled.is_present("shapes-cnn"),
                                reason="bundled shapes-cnn missing; python -m saliency_core train-bundled")


@pytest.fixture(autouse=True)
def share_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))


def start(methods=("gradient", "gradcam")) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="sanity.model").set_value("shapes-cnn")
    at.selectbox(key="sanity.device").set_value("cpu")
    at.multiselect(key="sanity.methods").set_value(list(methods))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "info", "warning",
                                              "success", "error") for e in at.get(kind))


def image_count(at: AppTest) -> int:
    return sum(len(element.proto.imgs) for element in at.get("image"))


def test_before_running_the_page_explains_what_to_do():
    at = start()
    assert "Run the sanity checks" in texts(at)
    assert not at.dataframe and not at.get("plotly_chart")


def test_cascade_and_data_randomization_run_without_exception():
    at = start()
    at.button(key="sanity.run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Gradient", "Grad-CAM"] or len(table) == 2
    assert set(table["parameter test"]) <= {"passes", "fails", "passes (borderline)", "fails (borderline)"}
    if bundled.is_present("shapes-cnn-random-labels"):
        assert "data test" in table.columns
    (chart,) = at.get("plotly_chart")
    assert "threshold" in chart.proto.spec
    # input + 2 methods x (original + 6 layers) + data-test pairs
    strips = 1 + 2 * 7
    assert image_count(at) >= strips
    # A display-only change (the curve's measure) keeps the result without recomputing.
    at.radio(key="sanity.metric").set_value("ssim").run()
    assert not at.exception and at.dataframe
    assert "settings changed" not in texts(at)


def test_independent_mode_names_the_most_sensitive_layer():
    at = start(methods=("gradcam",))
    at.radio(key="sanity.test_mode").set_value("independent")
    at.selectbox(key="sanity.partner").set_value("(none)")
    at.button(key="sanity.run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert "most sensitive to" in table.columns
    assert table["most sensitive to"][0] in {"classifier", "features.block5", "features.block4",
                                             "features.block3", "features.block2", "features.block1"}
    assert "Not run" in texts(at)


def test_bad_choices_give_clear_messages():
    at = start()
    at.multiselect(key="sanity.methods").set_value([]).run()
    assert not at.exception
    assert "Pick at least one method" in texts(at)
    assert at.button(key="sanity.run").disabled
    at = start(methods=("gradient",))
    at.selectbox(key="sanity.partner").set_value("shapes-cnn-watermark" if bundled.is_present(
        "shapes-cnn-watermark") else "(none)")
    at.button(key="sanity.run").click().run()
    assert not at.exception
    if bundled.is_present("shapes-cnn-watermark"):
        # Same architecture, so it runs; an unrelated text model is not offered at all.
        assert at.dataframe and "data test" in at.dataframe[0].value.columns
    assert "minilm-sentiment" not in at.selectbox(key="sanity.partner").options


@pytest.fixture
def randomizations(monkeypatch):
    """The parameter randomization runs the page starts (an empty result cache to begin with)."""
    from saliency_core import evaluation
    from workbench.jobs import compute

    compute.result_cache().clear()
    calls = []
    real = evaluation.parameter_randomization

    def counted(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "parameter_randomization", counted)
    return calls


def test_results_are_cached_and_a_shared_link_shows_them(randomizations):
    at = start(methods=("gradient",))
    at.selectbox(key="sanity.partner").set_value("(none)")
    at.number_input(key="sanity.seed").set_value(3)
    at.button(key="sanity.run").click().run()
    assert not at.exception and at.dataframe and randomizations == ["cascading"]
    link = {key: at.query_params[key] for key in at.query_params}
    assert link["model"] == "shapes-cnn" and link["methods"] == "gradient"
    assert link["seed"] == "3" and link["test"] == "cascading" and link["partner"] == "(none)"
    # Another seed has no result yet: the last one stays, marked as outdated ...
    at.number_input(key="sanity.seed").set_value(4).run()
    assert "settings changed" in texts(at) and len(randomizations) == 1
    # ... and going back is served from the cache, without pressing Run.
    at.number_input(key="sanity.seed").set_value(3).run()
    assert at.dataframe and "settings changed" not in texts(at) and len(randomizations) == 1
    # A colleague opening the link gets the same settings and, on this server, the result.
    fresh = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in link.items():
        fresh.query_params[key] = value
    fresh.run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert fresh.selectbox(key="sanity.model").value == "shapes-cnn"
    assert fresh.multiselect(key="sanity.methods").value == ["gradient"]
    assert fresh.number_input(key="sanity.seed").value == 3
    assert fresh.dataframe and len(randomizations) == 1


def test_a_bad_link_gives_messages_and_defaults():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in {"model": "shapes-cnn", "methods": "gradient,lime", "test": "sideways",
                       "threshold": "7", "seed": "-1", "partner": "nobody"}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = shown(texts(at))
    assert "unknown methods (lime)" in said and "test='sideways'" in said
    assert "threshold='7'" in said and "seed='-1'" in said and "partner='nobody'" in said
    assert at.multiselect(key="sanity.methods").value == ["gradient"]
    assert at.radio(key="sanity.test_mode").value == "cascading"
    assert at.slider(key="sanity.threshold").value == 0.5 and at.number_input(key="sanity.seed").value == 0


def test_a_stopped_run_is_not_restarted_until_asked(randomizations):
    from saliency_core import load_model
    from workbench.jobs import compute
    from workbench.ui.inputs import from_sample
    from workbench.ui.progress import STOPPED_KEY

    loaded = load_model("shapes-cnn", "cpu")
    digest = compute.pixels_digest(from_sample("shapes:0").pixels)
    key = compute.sanity_key(loaded, "cpu", digest, ["gradient"], "cascading", 0, {}, None)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for name, value in {"model": "shapes-cnn", "device": "cpu", "input": "shapes:0",
                        "methods": "gradient", "partner": "(none)"}.items():
        at.query_params[name] = value
    at.session_state[STOPPED_KEY] = key
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Stopped before it finished" in texts(at) and not at.dataframe and randomizations == []
    at.button(key="sanity.run").click().run()
    assert at.dataframe and randomizations == ["cascading"]


# ---- the model switch: what follows the model, and what is checked before any work ----------

def test_the_shuffled_labels_partner_is_checked_against_the_model():
    from saliency_core import load_model
    from saliency_core.evaluation.sanity_inputs import partner_problem

    shapes = load_model("shapes-cnn", "cpu")
    assert partner_problem(shapes, shapes) is None
    lite = load_model("efficientnet-lite0", "cpu")
    problem = partner_problem(lite, shapes)
    assert problem is not None
    assert "efficientnet-lite0" in problem and "shapes-cnn" in problem
    assert "same architecture" in problem


def test_switching_the_model_never_shows_the_old_result_under_the_new_labels():
    at = start(methods=("gradient",))
    at.button(key="sanity.run").click().run()
    assert not at.exception and at.dataframe
    at.selectbox(key="sanity.model").set_value("efficientnet-lite0").run()
    assert not at.exception, [e.value for e in at.exception]
    said = shown(texts(at))
    # shapes-cnn's result read against ImageNet's labels ("goldfish") is not shown at all.
    assert "Explaining class" not in said and "goldfish" not in said
    assert not at.dataframe and not at.get("plotly_chart")
    # The input and the shuffled-labels model follow the model.
    assert at.selectbox(key="sanity.sample").value == "photo:chelsea"
    assert at.selectbox(key="sanity.partner").value == "(none)"
    assert "same architecture trained on shuffled labels" in said and "train-bundled" in said
    # Back on shapes-cnn: its sample, its twin and its own result (from the cache) return.
    at.selectbox(key="sanity.model").set_value("shapes-cnn").run()
    assert at.selectbox(key="sanity.sample").value == "shapes:0"
    if bundled.is_present("shapes-cnn-random-labels"):
        assert at.selectbox(key="sanity.partner").value == "shapes-cnn-random-labels"
    assert at.dataframe and "settings changed" not in texts(at)


class _Calls:
    """The app's engine, noting the named calls a page makes; ``fail`` names one that raises."""

    def __init__(self, fail: str | None = None):
        from saliency_core.engines import LocalEngine

        self.inner = LocalEngine()
        self.fail = fail
        self.names: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def call(self, name, *args, **kwargs):
        from saliency_core.errors import SaliencyError

        self.names.append(name)
        if name == self.fail:
            raise SaliencyError(f"{name} cannot run here")
        return self.inner.call(name, *args, **kwargs)


@pytest.fixture
def calls():
    from workbench.jobs import compute, engine

    compute.result_cache().clear()
    made = _Calls()
    previous = engine.use(made)
    yield made
    engine.use(previous)


def test_an_incompatible_partner_is_skipped_before_any_work(calls):
    at = start(methods=("gradient",))
    at.selectbox(key="sanity.partner").set_value("efficientnet-lite0").run()
    assert not at.exception, [e.value for e in at.exception]
    said = shown(texts(at))
    assert "data randomization test is skipped" in said and "efficientnet-lite0" in said
    assert calls.names == []
    at.button(key="sanity.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert calls.names == ["parameter_randomization"]
    assert at.dataframe and "data test" not in at.dataframe[0].value.columns
    assert "data randomization test is skipped" in shown(texts(at))


def test_a_data_test_that_fails_keeps_the_parameter_test_result(calls):
    from saliency_core import load_model
    from workbench.jobs import compute
    from workbench.jobs.visitor import Visitor
    from workbench.ui.inputs import from_sample

    if not bundled.is_present("shapes-cnn-random-labels"):
        pytest.skip("the bundled twin is missing")
    calls.fail = "data_randomization"
    loaded = load_model("shapes-cnn", "cpu")
    twin = load_model("shapes-cnn-random-labels", "cpu")
    pixels = from_sample("shapes:0").pixels
    x = loaded.preprocess(from_sample("shapes:0").image)
    digest = compute.pixels_digest(pixels)
    result = compute.sanity_checks(Visitor.anonymous(), loaded, "cpu", x, digest, ["gradient"],
                                   "cascading", 0, {}, twin)
    assert result.cascade is not None and result.data is None
    assert "data_randomization cannot run here" in result.data_problem
    # The parameter test's result is kept: asked again without the partner, nothing reruns.
    calls.names.clear()
    again = compute.sanity_checks(Visitor.anonymous(), loaded, "cpu", x, digest, ["gradient"],
                                  "cascading", 0, {}, None)
    assert calls.names == [] and again.cascade.seed == result.cascade.seed


def test_only_methods_the_model_can_run_are_offered():
    """The attention methods need a vision transformer: a CNN is not offered them (they would
    fail with a message after the long cascade started); on shapes-vit they replace the
    ReLU-rule methods, and the choice follows a model switch with one line saying what went."""
    at = start(methods=("gradient", "guided_backprop"))
    offered = at.multiselect(key="sanity.methods").options
    assert "Guided Backprop" in offered and "Grad-CAM" in offered
    assert not {"Attention rollout", "Attention relevance"} & set(offered), offered
    if not bundled.is_present("shapes-vit"):
        return
    at.selectbox(key="sanity.model").set_value("shapes-vit").run()
    assert not at.exception, [e.value for e in at.exception]
    offered = at.multiselect(key="sanity.methods").options
    assert {"Attention rollout", "Attention relevance", "Grad-CAM"} <= set(offered)
    assert "Guided Backprop" not in offered
    chosen = at.multiselect(key="sanity.methods").value
    assert chosen[0] == "gradient" and "guided_backprop" not in chosen
    assert {"attention_rollout", "attention_relevance"} <= set(chosen)
    assert "Not offered for shapes-vit, which cannot run them: Guided Backprop." in texts(at)
