"""Progressive results on the Text page: Integrated Gradients with many steps and SmoothGrad
with many samples show coarse token scores first and end at the one-shot result; Stop keeps the
best level so far. TextRefiner itself equals attribute_text at every count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import streamlit as st
from support.apptest import run_app_page
from support.browser import REPO_ROOT

import saliency_core
from saliency_core.methods import get as method_entry
from workbench.jobs import compute, progressive
from workbench.ui.progress import STOPPED_KEY

PAGE = str(REPO_ROOT / "pages" / "text.py")
TIMEOUT = 180
TEXT = "Great food, but the staff ignored us."
RIEMANN = {"method": "integrated_gradients", "p.quadrature": "riemann_right", "p.steps": "64",
           "text": TEXT}


@pytest.fixture(scope="module")
def loaded():
    return saliency_core.load_model("minilm-sentiment", "cpu")


@pytest.fixture
def levels(monkeypatch):
    """The counts each TextRefiner level ran (a level served from kept sums is still listed)."""
    compute.result_cache.clear()
    seen: list[int] = []
    real = saliency_core.TextRefiner.explain

    def explain(self, **changes):
        seen.append(changes.get("steps", changes.get("samples")))
        return real(self, **changes)

    monkeypatch.setattr(saliency_core.TextRefiner, "explain", explain)
    yield seen
    compute.result_cache.clear()


def one_shot(loaded, method: str, **params) -> np.ndarray:
    return saliency_core.attribute_text(loaded, loaded.tokenizer, TEXT, method, **params).scores


def page_scores(method: str, **changes) -> np.ndarray:
    params = {**method_entry(method).spec.defaults("text"), **changes, "max_length": 512}
    loaded = saliency_core.load_model("minilm-sentiment", "cpu")
    hit = compute.cached(compute.text_key(loaded, "cpu", TEXT, method, params, "predicted"))
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


def test_text_stop_keeps_the_best_level_so_far(loaded, levels, monkeypatch):
    real = saliency_core.TextRefiner.explain

    def stopped_at_64(self, **changes):
        if changes.get("steps") == 64 and STOPPED_KEY not in st.session_state:
            params = {**method_entry("integrated_gradients").spec.defaults("text"),
                      "quadrature": "riemann_right", "steps": 64, "max_length": 512}
            st.session_state[STOPPED_KEY] = compute.text_key(
                loaded, "cpu", TEXT, "integrated_gradients", params, "predicted")
            st.rerun()
        return real(self, **changes)

    monkeypatch.setattr(saliency_core.TextRefiner, "explain", stopped_at_64)
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
