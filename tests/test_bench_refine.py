"""Incremental refinement: a finer estimate from the coarser one's evaluations plus only
the new ones, equal to computing it from scratch."""

import pytest
import torch
from support.engine_models import images, max_rel_diff, small_cnn

import saliency_core as sc
from saliency_core.errors import MethodNotApplicableError, ParameterError
from saliency_core.harness.refine import Refiner

TARGETS = [1, 3]


@pytest.mark.parametrize("rule,coarse,fine,new", [
    ("riemann_left", 8, 16, 8),
    ("riemann_right", 8, 32, 24),
    ("riemann_trapezoid", 9, 17, 8),  # 8 intervals -> 16
])
def test_nested_grids_reuse_every_evaluation(rule, coarse, fine, new):
    model, x = small_cnn(), images()
    r = Refiner(model, x, "integrated_gradients", target=TARGETS, quadrature=rule, baseline="black")
    first = r.explain(steps=coarse)
    second = r.explain(steps=fine)
    ref = sc.explain(model, x, "integrated_gradients", target=TARGETS, quadrature=rule,
                     baseline="black", steps=fine)
    assert max_rel_diff(first.attribution, sc.attribute(
        model, x, "integrated_gradients", target=TARGETS, quadrature=rule, baseline="black", steps=coarse)) < 1e-5
    assert max_rel_diff(second.attribution, ref.attribution) < 1e-5
    assert second.metadata["passes"] == new * x.shape[0]
    assert second.metadata["reused_passes"] == coarse * x.shape[0]
    assert second.metadata["completeness_delta"] == pytest.approx(ref.metadata["completeness_delta"], abs=1e-4)
    assert torch.equal(second.target, torch.tensor(TARGETS))


@pytest.mark.parametrize("rule,coarse,fine", [
    ("gauss_legendre", 8, 16),  # nodes never nest
    ("riemann_middle", 8, 16),
    ("riemann_left", 8, 12),  # 12 is no multiple of 8
    ("riemann_left", 16, 8),  # coarser: starts over
])
def test_grids_that_do_not_nest_start_over_and_stay_exact(rule, coarse, fine):
    model, x = small_cnn(), images(1)
    r = Refiner(model, x, "integrated_gradients", target=2, quadrature=rule)
    r.explain(steps=coarse)
    e = r.explain(steps=fine)
    assert e.metadata["reused_passes"] == 0 and e.metadata["passes"] == fine
    ref = sc.attribute(model, x, "integrated_gradients", target=2, quadrature=rule, steps=fine)
    assert max_rel_diff(e.attribution, ref) < 1e-5


def test_other_changes_start_over():
    model, x = small_cnn(), images(1)
    r = Refiner(model, x, "integrated_gradients", target=2, quadrature="riemann_left", baseline="black")
    r.explain(steps=8)
    e = r.explain(steps=16, baseline="white")
    assert e.metadata["reused_passes"] == 0
    ref = sc.attribute(model, x, "integrated_gradients", target=2, quadrature="riemann_left", baseline="white", steps=16)
    assert max_rel_diff(e.attribution, ref) < 1e-5


def test_random_baselines_refine_too():
    model, x = small_cnn(), images(1)
    kw = {"target": 0, "quadrature": "riemann_right", "baseline": "uniform", "baseline_samples": 3, "seed": 2}
    r = Refiner(model, x, "integrated_gradients", **kw)
    r.explain(steps=4)
    e = r.explain(steps=8)
    assert e.metadata["reused_passes"] == 12
    assert max_rel_diff(e.attribution, sc.attribute(model, x, "integrated_gradients", steps=8, **kw)) < 1e-5


@pytest.mark.parametrize("variant", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("base", ["gradient", "integrated_gradients"])
def test_smoothgrad_samples_extend(variant, base):
    model, x = small_cnn(), images()
    extra = {"steps": 4} if base == "integrated_gradients" else {}
    r = Refiner(model, x, "smoothgrad", target=TARGETS, base=base, variant=variant, seed=5, **extra)
    r.explain(samples=3)
    e = r.explain(samples=7)
    ref = sc.attribute(model, x, "smoothgrad", target=TARGETS, samples=7, base=base, variant=variant, seed=5, **extra)
    assert max_rel_diff(e.attribution, ref) < 1e-5
    per_sample = 4 if base == "integrated_gradients" else 1
    assert e.metadata["passes"] == 4 * per_sample * x.shape[0]
    assert e.metadata["reused_passes"] == 3 * x.shape[0]


def test_smoothgrad_new_sigma_starts_over():
    model, x = small_cnn(), images(1)
    r = Refiner(model, x, "smoothgrad", target=1, samples=4)
    r.explain()
    e = r.explain(samples=8, sigma=0.3)
    assert e.metadata["reused_passes"] == 0
    assert max_rel_diff(e.attribution, sc.attribute(model, x, "smoothgrad", target=1, samples=8, sigma=0.3)) < 1e-5


def test_refiner_errors_and_predicted_target():
    model, x = small_cnn(), images()
    with pytest.raises(MethodNotApplicableError, match="refinement"):
        Refiner(model, x, "gradcam")
    r = Refiner(model, x, "integrated_gradients", quadrature="riemann_left")
    with pytest.raises(ParameterError):
        r.explain(steps=0)
    e = r.explain(steps=4)
    assert torch.equal(e.target, e.predicted)
    direct = sc.attribute(model, x, "integrated_gradients", target=e.predicted.tolist(),
                          quadrature="riemann_left", steps=8)
    assert max_rel_diff(r.attribute(steps=8), direct) < 1e-5


def test_kept_counts_are_served_again_and_larger_ones_start_from_the_best_kept():
    model, x = small_cnn(), images(1)
    kw = {"target": 2, "quadrature": "riemann_right", "baseline": "black"}
    r = Refiner(model, x, "integrated_gradients", **kw)
    for steps in (5, 25, 50):
        r.explain(steps=steps)
    back = r.explain(steps=25)  # lowering: the kept sums, no model pass
    assert back.metadata["passes"] == 0 and back.metadata["reused_passes"] == 25
    assert max_rel_diff(back.attribution, sc.attribute(model, x, "integrated_gradients", steps=25, **kw)) < 1e-5
    up = r.explain(steps=75)  # +50 %: 75 nodes contain the 25-node grid, not the 50-node one
    assert up.metadata["reused_passes"] == 25 and up.metadata["passes"] == 50
    assert max_rel_diff(up.attribution, sc.attribute(model, x, "integrated_gradients", steps=75, **kw)) < 1e-5


def test_smoothgrad_lower_counts_come_from_kept_sums():
    model, x = small_cnn(), images(1)
    r = Refiner(model, x, "smoothgrad", target=1, seed=3)
    for samples in (4, 8, 16):
        r.explain(samples=samples)
    again = r.explain(samples=8)
    assert again.metadata["passes"] == 0
    assert torch.equal(again.attribution, r.explain(samples=8).attribution)
    more = r.explain(samples=12)  # from the kept 8, after the 16 moved the noise on
    assert more.metadata["passes"] == 4
    ref = sc.attribute(model, x, "smoothgrad", target=1, seed=3, samples=12)
    assert max_rel_diff(more.attribution, ref) < 1e-5


def test_nested_counts():
    from saliency_core.harness.refine import nested_counts

    assert nested_counts("riemann_right", 50) == [1, 2, 5, 10, 25]
    assert nested_counts("riemann_trapezoid", 9) == [2, 3, 5]  # 1, 2, 4 intervals of 8
    assert nested_counts("gauss_legendre", 50) == []
