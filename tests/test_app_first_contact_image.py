"""Issue 26, the Image page's first contact: pictures the model cannot really see get a notice
saying what their map can mean; the completeness advice names only settings not already chosen
and step counts that were measured."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from workbench.ui.inputs import degenerate_notice

SIDE = (224, 224)


def test_a_one_pixel_picture_gets_the_upsampling_notice():
    notice = degenerate_notice(np.full((1, 1, 3), 90, np.uint8), SIDE)
    assert notice is not None
    assert "1 x 1 pixel" in notice and "224 x 224" in notice
    assert "guess" in notice and "interpolation" in notice


def test_a_picture_far_below_the_model_side_gets_the_notice():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)  # 30 < 224 / 4
    assert "30 x 40 pixels" in degenerate_notice(small, SIDE)
    # A quarter of the side or more is blurry but still a picture: no notice.
    assert degenerate_notice(rng.integers(0, 256, (56, 80, 3), dtype=np.uint8), SIDE) is None


@pytest.mark.parametrize("level", [0, 128, 255])
def test_a_uniform_picture_gets_the_blank_notice(level):
    notice = degenerate_notice(np.full((300, 400, 3), level, np.uint8), SIDE)
    assert notice is not None and "one colour" in notice
    assert "nothing in it" in notice and "guess" in notice


def test_an_ordinary_photo_gets_no_notice():
    assert degenerate_notice(skimage.data.chelsea(), SIDE) is None
    assert degenerate_notice(skimage.data.coffee(), SIDE) is None
    # The shapes samples are 64 x 64 for a 64 x 64 model.
    from saliency_core.training.shapes import generate

    assert degenerate_notice(generate(1, seed=0).images[0], (64, 64)) is None


# ---- the completeness advice ------------------------------------------------------------------

POOR = {"sum_attribution": [1.0], "f_x": [3.0], "f_baseline": [1.0],
        "params": {"steps": 50, "quadrature": "gauss_legendre", "baseline": "black"}}


def test_large_gap_advice_never_names_the_setting_already_chosen():
    from workbench.ui import display

    severity, sentence = display.completeness_reading(POOR, most_steps=1024, can_search=True)
    assert severity == "warning" and "50.0%" in sentence
    # Gauss-Legendre is the rule in use; no step count is claimed before one was measured.
    assert "Gauss-Legendre" not in sentence and "Find the steps that close the gap" in sentence
    at_limit = {**POOR, "params": {**POOR["params"], "steps": 1024}}
    _, sentence = display.completeness_reading(at_limit, most_steps=1024, can_search=True)
    assert "Raise" not in sentence and "Find the steps" not in sentence
    assert "already at their limit of 1024" in sentence


def test_large_gap_advice_states_the_measured_step_count():
    from workbench.ui import display

    _, sentence = display.completeness_reading(
        POOR, measured=[(100, 0.21), (200, 0.032)], most_steps=1024, can_search=True)
    assert "200 steps bring the gap down to 3.2%" in sentence and "100 steps" not in sentence
    _, sentence = display.completeness_reading(
        POOR, measured=[(100, 0.21), (200, 0.12)], most_steps=1024, can_search=True)
    assert "even 200 steps leave a gap of 12.0%" in sentence and "Find the steps" not in sentence


def test_gap_search_measures_the_count_that_closes_the_gap():
    """On the shapes CNN, 4 Riemann steps leave a large gap; the search doubles on the nesting
    grid and returns measured gaps, the last one closed, each result cached under its own
    settings (so choosing that count is served at once)."""
    import saliency_core
    from workbench.jobs import compute, progressive
    from workbench.jobs.visitor import Visitor
    from workbench.ui.inputs import from_sample

    compute.result_cache.clear()
    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    sample = from_sample("shapes:0")
    x = loaded.preprocess(sample.image)
    params = {**saliency_core.get_method("integrated_gradients").defaults(),
              "steps": 4, "quadrature": "riemann_right"}
    computation = compute.image_computation(loaded, "cpu", compute.pixels_digest(sample.pixels),
                                            "integrated_gradients", params, "predicted")
    first = saliency_core.explain(loaded, x, "integrated_gradients", **params)
    assert progressive.completeness_gap(first.metadata) > progressive.LARGE_GAP
    measured = compute.gap_search(Visitor.anonymous(), loaded, computation, x)
    counts = [n for n, _ in measured]
    assert counts == progressive.gap_search_counts("integrated_gradients", params, 1024)[:len(counts)]
    assert measured[-1][1] <= progressive.LARGE_GAP
    assert all(g > progressive.LARGE_GAP for _, g in measured[:-1])
    again = compute.cached(computation.with_params(steps=counts[-1]).key)
    assert progressive.completeness_gap(again.metadata) == pytest.approx(measured[-1][1])
    compute.result_cache.clear()


def test_image_page_advice_offers_the_search_then_states_the_measured_count():
    import re

    from support.apptest import run_app_page
    from support.browser import REPO_ROOT

    from workbench.jobs import compute, progressive

    compute.result_cache.clear()
    at = run_app_page(str(REPO_ROOT / "pages" / "image.py"),
                      {"model": "shapes-cnn", "method": "integrated_gradients", "p.steps": "4",
                       "p.quadrature": "riemann_right"}, 180)
    (warning,) = [w.value for w in at.warning if "Completeness" in w.value]
    assert "Gauss-Legendre" not in warning and "Find the steps that close the gap" in warning
    at.button(key="image.gap_search_button").click().run()
    assert not at.exception and not at.error
    (warning,) = [w.value for w in at.warning if "Completeness" in w.value]
    found = re.search(r"(\d+) steps bring the gap down to ([\d.]+)%", warning)
    assert found, warning
    steps, gap = int(found[1]), float(found[2]) / 100
    assert gap <= progressive.LARGE_GAP
    assert not [b for b in at.button if b.key == "image.gap_search_button"]
    # The number is what a run at that count measures, and that run is already cached.
    at.slider(key="image.m.integrated_gradients.steps").set_value(steps).run()
    assert not [w for w in at.warning if "Completeness" in w.value]
    meta = json_details(at)
    assert meta["params"]["steps"] == steps
    assert progressive.completeness_gap(meta) == pytest.approx(gap, abs=0.0005)
    compute.result_cache.clear()


def json_details(at) -> dict:
    import json

    value = at.json[0].value
    return json.loads(value) if isinstance(value, str) else value
