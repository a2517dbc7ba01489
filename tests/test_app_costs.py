"""Honest costs (issue 25): what the server says a request will take is what it takes.

The orders of requests that broke the estimates, through the real jobs path (admission,
scheduler, the real engine and bundled models; nothing replaced): short reviews then a long
one on minilm-sentiment, a lone gradient then a batched SmoothGrad over IG on shapes-cnn. Each
estimate, read before its request runs, is within 2x of the time the request then takes. A
48-megapixel camera JPEG costs what the model reads of it, and on the pages an over-budget
progressive run shows its coarse result with the question, which the run then replaces.
The two heaviest (the text order, the 48-MP photo) are ``long``: ``make test-costs`` runs all.
On Compare, an over-budget IG cell shows its coarse map with its question, and its Run anyway
button names the method.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from support.apptest import run_app_page
from support.browser import REPO_ROOT

from saliency_core.methods import get as method_entry
from workbench.jobs import admission, compute
from workbench.jobs.models import get_model
from workbench.jobs.visitor import Visitor

LONG_REVIEW = ("The film opens slowly, but the second act is wonderful: the actors are great, "
               "the music is better still, and the ending made the whole cinema cheer. " * 40
               )[:5_000]


@pytest.fixture(autouse=True)
def fresh_costs(monkeypatch, tmp_path):
    """Nothing learned yet, and no budget in the way: the estimates themselves are tested."""
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    monkeypatch.setenv("SALIENCY_REQUEST_BUDGET_S", "100000")
    monkeypatch.setenv("SALIENCY_REQUEST_LIMIT_S", "1000000")
    admission.cost_model.clear()
    compute.result_cache.clear()
    yield
    admission.cost_model.clear()
    compute.result_cache.clear()


def seconds(estimate) -> float:
    return float(getattr(estimate, "seconds", estimate))


def estimated_then_measured(request, run) -> tuple[float, float]:
    """(the estimate read before the request runs, its measured time)."""
    before = seconds(admission.estimate(request))
    began = time.perf_counter()
    run()
    return before, time.perf_counter() - began


def text_run(visitor, loaded, text: str, method: str, max_tokens: int, **params):
    params = {**method_entry(method).spec.defaults("text"), **params, "max_length": max_tokens}
    computation = compute.text_computation(loaded, "cpu", text, method, params, "predicted")
    request = compute.text_request(compute.engine.for_models(loaded), loaded, computation, text)
    return estimated_then_measured(
        request, lambda: compute.explain_text(visitor, loaded, computation, text))


def image_run(visitor, loaded, x, digest: str, method: str, **params):
    params = {**method_entry(method).spec.defaults("image"), **params}
    computation = compute.image_computation(loaded, "cpu", digest, method, params, "predicted")
    request = compute.image_request(compute.engine.for_models(loaded), loaded, computation, x)
    return estimated_then_measured(
        request, lambda: compute.explain_image(visitor, loaded, computation, x))


def within_2x(estimate: float, measured: float) -> bool:
    return 0.5 <= measured / estimate <= 2.0


# A 128-token IG run and the text calibration: about 25 s on the shared 2-core machine.
@pytest.mark.long
def test_short_reviews_then_a_long_one_are_estimated_within_2x():
    # The long review is read up to 'Longest input' (128 tokens here): its cost is that of
    # 128 tokens, not the per-token cost of short inputs times its length.
    visitor, loaded = Visitor.anonymous(), get_model("minilm-sentiment", "cpu")
    runs = [text_run(visitor, loaded, text, "integrated_gradients", 128, steps=16)
            for text in ("A short fun movie.", "Terrible acting, but great music.",
                         LONG_REVIEW)]
    est_long, took_long = runs[-1]
    assert within_2x(est_long, took_long), runs


def test_a_lone_gradient_then_a_batched_smoothgrad_are_estimated_within_2x():
    # A pass timed alone is not a pass inside a batch of 64.
    visitor, loaded = Visitor.anonymous(), get_model("shapes-cnn", "cpu")
    x = loaded.preprocess(Image.fromarray(
        (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)))
    image_run(visitor, loaded, x, "noise-0", "gradient")
    est, took = image_run(visitor, loaded, x, "noise-0", "smoothgrad", samples=16,
                          base="integrated_gradients", steps=128)
    assert within_2x(est, took), (est, took)


# EfficientNet-Lite0's calibration and a 48-MP decode: about 30 s on the shared machine.
@pytest.mark.long
def test_a_48_megapixel_jpeg_costs_what_the_model_reads():
    from saliency_core.io.images import load_image

    buffer = io.BytesIO()
    rows = np.linspace(0, 255, 6000, dtype=np.uint8)[:, None, None]
    Image.fromarray(np.broadcast_to(rows, (6000, 8000, 3)).copy()).save(buffer, "JPEG",
                                                                        quality=70)
    image, notices = load_image(buffer.getvalue())
    assert any("scaled down" in n for n in notices), notices
    visitor, loaded = Visitor.anonymous(), get_model("efficientnet-lite0", "cpu")
    x = loaded.preprocess(image)
    small = loaded.preprocess(image.resize((640, 480)))
    assert x.shape == small.shape
    runner = compute.engine.for_models(loaded)
    big_request, small_request = (
        compute.image_request(runner, loaded, compute.image_computation(
            loaded, "cpu", digest, "gradient", {}, "predicted"), tensor)
        for digest, tensor in (("48mp", x), ("vga", small)))
    assert big_request.units == small_request.units == x.shape[-2] * x.shape[-1]
    assert seconds(admission.estimate(big_request)) == seconds(admission.estimate(small_request))
    result = compute.explain_image(visitor, loaded, compute.image_computation(
        loaded, "cpu", "48mp", "gradient", {}, "predicted"), x)
    assert result.attribution.shape[-2:] == tuple(x.shape[-2:])


def budget_between_coarse_and_full_ig(monkeypatch, colour: tuple[int, int, int]) -> None:
    """Learn shapes-cnn's costs with a cheap request on a plain image of ``colour``, then set
    the budget at a third of IG 1024's estimate: above its coarse level, below the full run."""
    visitor, loaded = Visitor.anonymous(), get_model("shapes-cnn", "cpu")
    x = loaded.preprocess(Image.new("RGB", (64, 64), colour))
    image_run(visitor, loaded, x, "warm", "integrated_gradients", steps=64)
    full = admission.cost_model().estimate("shapes-cnn", "cpu", 1025, x.shape[-2] * x.shape[-1],
                                           runs=4).seconds
    monkeypatch.setenv("SALIENCY_REQUEST_BUDGET_S", f"{full / 3:.6f}")


def test_over_budget_ig_shows_its_coarse_map_with_the_question_then_runs(monkeypatch):
    budget_between_coarse_and_full_ig(monkeypatch, (200, 40, 40))
    at = run_app_page(str(REPO_ROOT / "pages" / "image.py"),
                      {"model": "shapes-cnn", "method": "integrated_gradients",
                       "p.steps": "1024", "p.quadrature": "riemann_right"})
    question = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "The map shown is a coarse one" in question and "more than the" in question
    assert "use at most" in question and "steps" in question
    assert at.get("plotly_chart"), "the coarse map is not on screen while the question waits"
    assert any("Coarse result" in c.value for c in at.caption)
    (button,) = [b for b in at.button if b.label.startswith("Run anyway")]
    button.click().run()
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Run anyway")]
    assert not any("The map shown is a coarse one" in w.value for w in at.warning)
    assert not any("Coarse result" in c.value for c in at.caption)
    # The full run's map, refined from the coarse level's kept points.
    assert any("model passes (+" in c.value and "reused" in c.value for c in at.caption)


def test_compare_shows_an_over_budget_ig_cell_with_its_coarse_map_and_a_named_question(
        monkeypatch):
    # On Compare several requests may ask at once: each question stands in its own cell with
    # the coarse map it speaks of, and each Run anyway button names its method.
    budget_between_coarse_and_full_ig(monkeypatch, (40, 200, 40))
    at = run_app_page(str(REPO_ROOT / "pages" / "compare.py"),
                      {"model": "shapes-cnn", "score": "false",
                       "methods": "gradient,integrated_gradients",
                       "integrated_gradients.steps": "1024",
                       "integrated_gradients.quadrature": "riemann_right"})
    # plaintext breaks markdown with zero-width spaces: read the words.
    question = " ".join(w.value for w in at.warning).replace("\\", "").replace("\u200b", "")
    assert "Integrated Gradients: The map shown is a coarse one" in question
    assert not at.error, [e.value for e in at.error]
    # Both maps are on screen: the gradient's and IG's coarse one.
    assert any("Integrated Gradients" in c.value and "128 passes" in c.value
               for c in at.caption), [c.value for c in at.caption]
    buttons = [b.label for b in at.button if b.label.startswith("Run anyway")]
    assert buttons == [f"Run anyway: Integrated Gradients on shapes-cnn ({b.split('(')[-1]}"
                       for b in buttons] and len(buttons) == 1, buttons
