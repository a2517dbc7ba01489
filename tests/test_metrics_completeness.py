"""Integrated Gradients completeness and the automatic-steps mode."""

import numpy as np
import pytest
import torch
from torch import nn

from saliency_core import evaluation, explain
from saliency_core.errors import SaliencyError


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return net.eval()


def _inputs():
    return torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def test_completeness_reads_the_explanation():
    e = explain(_net(), _inputs(), "integrated_gradients", steps=64)
    c = evaluation.completeness(e)
    np.testing.assert_allclose(c["delta"], c["sum_attribution"] - (c["f_x"] - c["f_baseline"]),
                               atol=1e-5)
    np.testing.assert_allclose(c["relative_delta"],
                               np.abs(c["delta"]) / np.abs(c["f_x"] - c["f_baseline"]))
    with pytest.raises(SaliencyError, match="Integrated Gradients"):
        evaluation.completeness(explain(_net(), _inputs(), "gradient"))


def test_auto_steps_reaches_the_tolerance_and_reports_the_steps():
    net, x = _net(), _inputs()
    res = evaluation.integrated_gradients_auto(net, x, tol=0.001, start_steps=2, max_steps=512)
    assert res.converged.all()
    assert np.all(res.relative_delta < 0.001)
    assert res.steps.min() >= 2 and res.steps.max() <= 512
    assert res.steps.max() > 2  # this net needs more than the start
    assert len(res.history) >= 2 and res.history[0]["steps"] == 2
    # The nested grid gives exactly the trapezoid rule at the final number of intervals.
    for i in range(x.shape[0]):
        k = int(res.steps[i])
        ref = explain(net, x[i:i + 1], "integrated_gradients", target=int(res.target[i]),
                      steps=k + 1, quadrature="riemann_trapezoid")
        torch.testing.assert_close(res.attribution[i:i + 1], ref.attribution, atol=1e-5, rtol=1e-4)


def test_auto_steps_stops_at_the_limit_and_says_so():
    res = evaluation.integrated_gradients_auto(_net(), _inputs(), tol=1e-9, start_steps=2, max_steps=8)
    assert np.all(res.steps == 8)
    assert not res.converged.any()
    assert [h["steps"] for h in res.history] == [2, 4, 8]


def test_auto_steps_with_random_baselines_refines_every_sample_together():
    res = evaluation.integrated_gradients_auto(_net(), _inputs(), tol=0.001, start_steps=2,
                                            max_steps=256, baseline="uniform", seed=3)
    assert len(set(res.steps.tolist())) == 1
    assert res.converged.all()


def test_auto_steps_refuses_fixed_steps():
    with pytest.raises(SaliencyError, match="automatically"):
        evaluation.integrated_gradients_auto(_net(), _inputs(), steps=10)
    with pytest.raises(SaliencyError, match="tol"):
        evaluation.integrated_gradients_auto(_net(), _inputs(), tol=0)
