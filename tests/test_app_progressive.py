"""Progressive results on the Image page: the ladder of levels ends at the one-shot map,
raising the steps reuses what was computed, lowering them runs no model, Stop keeps the best
level so far; and the top-classes view from one batched backward pass."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
import test_app_image
import torch
from support.apptest import CountingEngine, engine_in_place, run_app_page
from support.browser import REPO_ROOT
from support.engine_models import max_rel_diff

import saliency_core
from saliency_core.methods import get as method_entry
from workbench.jobs import compute, engine, progressive
from workbench.ui import topk
from workbench.ui.inputs import from_sample
from workbench.ui.progress import STOPPED_KEY

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

PAGE = str(REPO_ROOT / "pages" / "image.py")
TIMEOUT = 180
engine_calls = test_app_image.engine_calls  # the Image page tests' fixture
run_details = test_app_image.run_details
SHAPES = test_app_image.SHAPES
RIEMANN = {**SHAPES, "method": "integrated_gradients", "p.quadrature": "riemann_right", "p.baseline": "black"}


def one_shot(method: str, **params) -> torch.Tensor:
    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    x = loaded.preprocess(from_sample("shapes:0").image)
    return saliency_core.attribute(loaded, x, method, **params)[0]


def page_result(method: str, **changes) -> np.ndarray:
    """The attribution the page cached for these settings (defaults plus changes)."""
    params = {**method_entry(method).spec.defaults(), **changes}
    digest = compute.pixels_digest(from_sample("shapes:0").pixels)
    hit = compute.cached(compute.image_computation(saliency_core.load_model("shapes-cnn", "cpu"), "cpu", digest, method, params, "predicted").key)
    assert hit is not None
    return hit.attribution


def test_ladder_levels():
    assert progressive.ladder("integrated_gradients", {"steps": 50, "quadrature": "riemann_right"}) == [5, 25, 50]
    assert progressive.ladder("integrated_gradients", {"steps": 50, "quadrature": "gauss_legendre"}) == [7, 50]
    assert progressive.ladder("integrated_gradients", {"steps": 8, "quadrature": "riemann_right"}) == [8]
    assert progressive.ladder("smoothgrad", {"samples": 32, "base": "gradient"}) == [4, 8, 16, 32]
    assert progressive.ladder("gradcam", {}) == []


@pytest.mark.slow
def test_riemann_ladder_ends_at_the_one_shot_map_and_reuses_on_the_way_up(engine_calls):
    at = run_app_page(PAGE, {**RIEMANN, "p.steps": "50"}, TIMEOUT)
    assert engine_calls == ["integrated_gradients"] * 3  # 5, 25, 50
    meta = run_details(at)
    # The whole ladder costs the 50 evaluations of the last level (plus the baseline's score).
    assert meta["passes"] == 25 and meta["reused_passes"] == 25
    ig = {"quadrature": "riemann_right", "baseline": "black"}
    ref = one_shot("integrated_gradients", steps=50, **ig)
    assert max_rel_diff(torch.from_numpy(page_result("integrated_gradients", steps=50, **ig)), ref) < 1e-5
    assert any("completeness" in c.value.lower() or "Completeness" in c.value
               for c in [*at.success, *at.info, *at.warning])

    at.slider(key="image.m.integrated_gradients.steps").set_value(75).run()  # +50 %
    meta = run_details(at)
    assert meta["passes"] == 50 and meta["reused_passes"] == 25  # from the kept 25-step grid
    ref = one_shot("integrated_gradients", steps=75, **ig)
    assert max_rel_diff(torch.from_numpy(page_result("integrated_gradients", steps=75, **ig)), ref) < 1e-5

    n = len(engine_calls)
    at.slider(key="image.m.integrated_gradients.steps").set_value(25).run()  # down: kept
    assert not at.exception and len(engine_calls) == n


def test_smoothgrad_ladder_equals_the_one_shot_map(engine_calls):
    run_app_page(PAGE, {**SHAPES, "method": "smoothgrad", "p.samples": "32"}, TIMEOUT)
    assert engine_calls == ["smoothgrad"] * 4  # 4, 8, 16, 32 samples
    ref = one_shot("smoothgrad", samples=32)
    assert max_rel_diff(torch.from_numpy(page_result("smoothgrad", samples=32)), ref) < 1e-5


class _StoppedAt50:
    """A refiner whose 50-step level is where the user clicks Stop."""

    def __init__(self, inner):
        self.inner = inner

    def explain(self, **changes):
        if changes.get("steps") == 50 and STOPPED_KEY not in st.session_state:
            params = {**method_entry("integrated_gradients").spec.defaults(),
                      "quadrature": "riemann_right", "baseline": "black"}
            digest = compute.pixels_digest(from_sample("shapes:0").pixels)
            st.session_state[STOPPED_KEY] = compute.image_computation(
                saliency_core.load_model("shapes-cnn", "cpu"), "cpu", digest,
                "integrated_gradients", params, "predicted").key
            st.rerun()
        return self.inner.explain(**changes)


class _StopsAt50(CountingEngine):
    def refiner(self, model, inputs, method, target="predicted"):
        return _StoppedAt50(super().refiner(model, inputs, method, target=target))


def test_stop_keeps_the_best_level_so_far():
    """A click on Stop while the last level runs: the Stop button's callback marks the run and
    Streamlit restarts the script (st.rerun stands in for the interrupt)."""
    compute.result_cache.clear()
    with engine_in_place(_StopsAt50(engine.local(), lambda _model, _method: None)):
        at = run_app_page(PAGE, {**RIEMANN, "p.steps": "50"}, TIMEOUT)
    compute.result_cache.clear()
    assert any("Stopped" in w.value for w in at.warning)
    assert any("Best result before Stop: 25 of 50 steps" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 1  # the 25-step map stays on screen
    assert run_details(at)["params"]["steps"] == 25


@pytest.mark.parametrize("method,used", [("gradient", "gradient"),
                                         ("guided_backprop", "gradcam")])
def test_top_classes_from_one_batched_backward(engine_calls, method, used):
    calls = []

    class CountingTargets(CountingEngine):
        def call(self, function, *args, **kwargs):
            if function == "attribute_targets":
                calls.append(kwargs.get("method"))
            return super().call(function, *args, **kwargs)

    with engine_in_place(CountingTargets(engine.local(), lambda _model, _method: None)):
        at = run_app_page(PAGE, {**SHAPES, "method": method}, TIMEOUT)
        images = len(at.get("image"))
        at.toggle(key="image.topk").set_value(True).run()
        at.number_input(key="image.topk_k").set_value(3).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert calls == [used, used]  # k = 5, then k = 3; one call each
    assert len(at.get("image")) == images + 3
    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    x = loaded.preprocess(from_sample("shapes:0").image)
    probabilities = torch.softmax(loaded.model(x), 1)[0]
    top = probabilities.topk(3).indices.tolist()
    captions = [c for e in at.get("image")[-3:] for c in [e.proto.imgs[0].caption]]
    assert [c.split(" · ")[0] for c in captions] == [loaded.labels[t] for t in top]
    if used != method:
        assert any("no several-class form" in c.value for c in at.caption)
    # Each map is the single-target map of its class (read back from the page's cache).
    digest = compute.pixels_digest(from_sample("shapes:0").pixels)
    cached = topk.compute_top_k(loaded, "cpu", x, digest, method,
                                method_entry(method).spec.defaults(), 3)
    assert len(calls) == 2
    for i, t in enumerate(top):
        single = saliency_core.attribute(loaded, x, used, target=t)[0]
        assert max_rel_diff(torch.from_numpy(cached.maps[i]), single) < 1e-4
