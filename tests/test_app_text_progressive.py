"""Progressive results on the Text page: Integrated Gradients with many steps and SmoothGrad
with many samples show coarse token scores first and end at the one-shot result; Stop keeps the
best level so far. TextRefiner itself equals attribute_text at every count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import streamlit as st
from support.apptest import CountingEngine, engine_in_place, run_app_page
from support.browser import REPO_ROOT

import saliency_core
from saliency_core.methods import get as method_entry
from workbench.jobs import compute, engine, progressive
from workbench.ui.progress import STOPPED_KEY

PAGE = str(REPO_ROOT / "pages" / "text.py")
TIMEOUT = 180
TEXT = "Great food, but the staff ignored us."
RIEMANN = {"method": "integrated_gradients", "p.quadrature": "riemann_right", "p.steps": "64",
           "text": TEXT}


@pytest.fixture(scope="module")
def loaded():
    return saliency_core.load_model("minilm-sentiment", "cpu")


class _ListedRefiner:
    def __init__(self, inner, seen: list[int], before):
        self.inner = inner
        self.seen = seen
        self.before = before

    def explain(self, **changes):
        self.seen.append(changes.get("steps", changes.get("samples")))
        if self.before is not None:
            self.before(changes)
        return self.inner.explain(**changes)


class LevelsEngine(CountingEngine):
    """The app's engine with the count of each TextRefiner level listed (a level served from
    kept sums is still listed); ``before(changes)`` runs ahead of each level when set."""

    def __init__(self):
        super().__init__(engine.local(), lambda _model, _method: None)
        self.seen: list[int] = []
        self.before = None

    def text_refiner(self, model, text, method, target="predicted", max_length=None):
        return _ListedRefiner(self.inner.text_refiner(model, text, method, target,
                                                      max_length=max_length),
                              self.seen, self.before)


@pytest.fixture
def levels_engine():
    compute.result_cache.clear()
    with engine_in_place(LevelsEngine()) as installed:
        yield installed
    compute.result_cache.clear()


@pytest.fixture
def levels(levels_engine):
    """The counts each TextRefiner level ran."""
    return levels_engine.seen


def one_shot(loaded, method: str, **params) -> np.ndarray:
    return saliency_core.attribute_text(loaded, loaded.tokenizer, TEXT, method, **params).scores


def page_scores(method: str, **changes) -> np.ndarray:
    params = {**method_entry(method).spec.defaults("text"), **changes, "max_length": 512}
    loaded = saliency_core.load_model("minilm-sentiment", "cpu")
    hit = compute.cached(compute.text_computation(loaded, "cpu", TEXT, method, params,
                                                  "predicted").key)
    assert hit is not None
    return hit.scores


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max()) <= 1e-5 * max(float(np.abs(b).max()), 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("method,params,counts", [
    ("integrated_gradients", {"quadrature": "riemann_trapezoid", "baseline": "pad"}, (9, 17, 33)),
    ("smoothgrad", {"sigma": 0.1, "seed": 3}, (4, 8, 16)),
])
def test_text_refiner_equals_attribute_text_at_each_count(loaded, method, params, counts):
    knob = "steps" if method == "integrated_gradients" else "samples"
    refiner = saliency_core.TextRefiner(loaded, loaded.tokenizer, TEXT, method, **params)
    done = 0
    for count in counts:
        out = refiner.explain(**{knob: count})
        assert out.metadata["reused_passes"] == done
        assert out.tokens == saliency_core.attribute_text(loaded, loaded.tokenizer, TEXT, method,
                                                          **params, **{knob: count}).tokens
        assert close(out.scores, one_shot(loaded, method, **params, **{knob: count}))
        done = count


@pytest.mark.slow
def test_text_ladder_ends_at_the_one_shot_result(loaded, levels):
    at = run_app_page(PAGE, RIEMANN, TIMEOUT)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert levels == [8, 16, 32, 64]
    ig = {"quadrature": "riemann_right"}
    assert close(page_scores("integrated_gradients", steps=64, **ig),
                 one_shot(loaded, "integrated_gradients", steps=64, **ig))
    # Every coarse level is kept, so going back down runs nothing.
    assert close(page_scores("integrated_gradients", steps=8, **ig),
                 one_shot(loaded, "integrated_gradients", steps=8, **ig))
    assert "token-saliency" in next(m.value for m in at.markdown if "token-saliency" in m.value)

    at.slider(key="text.m.integrated_gradients.steps").set_value(96).run()  # +50 %
    assert levels[-1] == 96 and not at.exception
    assert close(page_scores("integrated_gradients", steps=96, **ig),
                 one_shot(loaded, "integrated_gradients", steps=96, **ig))


def test_text_smoothgrad_ladder_equals_the_one_shot_result(loaded, levels):
    run_app_page(PAGE, {"method": "smoothgrad", "p.samples": "32", "text": TEXT}, TIMEOUT)
    assert levels == [4, 8, 16, 32]
    assert close(page_scores("smoothgrad", samples=32), one_shot(loaded, "smoothgrad", samples=32))


def test_text_stop_keeps_the_best_level_so_far(loaded, levels_engine):
    def stopped_at_64(changes):
        if changes.get("steps") == 64 and STOPPED_KEY not in st.session_state:
            params = {**method_entry("integrated_gradients").spec.defaults("text"),
                      "quadrature": "riemann_right", "steps": 64, "max_length": 512}
            st.session_state[STOPPED_KEY] = compute.text_computation(
                loaded, "cpu", TEXT, "integrated_gradients", params, "predicted").key
            st.rerun()

    levels_engine.before = stopped_at_64
    at = run_app_page(PAGE, RIEMANN, TIMEOUT)
    assert any("Stopped" in w.value for w in at.warning)
    assert any("Best result before Stop: 32 of 64 steps" in c.value for c in at.caption)
    assert any("token-saliency" in m.value for m in at.markdown)
    assert run_details(at)["params"]["steps"] == 32


def run_details(at) -> dict:
    value = at.json[0].value
    return json.loads(value) if isinstance(value, str) else value


def test_ladder_reads_capabilities_not_names():
    assert progressive.ladder("integrated_gradients", {"steps": 64, "quadrature": "riemann_right"},
                              "text") == [8, 16, 32, 64]
    assert progressive.ladder("smoothgrad", {"samples": 50, "base": "integrated_gradients",
                                             "baseline": "uniform"}) == [7, 50]
    assert progressive.ladder("deconvnet", {}) == []
