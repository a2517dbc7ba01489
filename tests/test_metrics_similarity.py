"""Map similarity measures on constructed arrays: identical maps, rescaled and negated maps,
independent noise, degenerate (constant) maps and shape errors."""

import numpy as np
import pytest
import torch

from saliency_core import evaluation
from saliency_core.errors import SaliencyError


def _noise(seed, shape=(8, 3, 64, 64)):
    return np.random.default_rng(seed).normal(size=shape)


def _smooth_blob(shape=(64, 64), centre=(20, 40), width=8.0):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * width**2))


def test_identical_maps_score_one_on_every_metric():
    a = _noise(0)
    sims = evaluation.similarities(a, a.copy())
    assert set(sims) == set(evaluation.SIMILARITY_METRICS)
    for name, values in sims.items():
        assert values.shape == (8,)
        np.testing.assert_allclose(values, 1.0, atol=1e-9, err_msg=name)


def test_independent_noise_scores_about_zero():
    sims = evaluation.similarities(_noise(1), _noise(2))
    for name, values in sims.items():
        assert abs(values.mean()) < 0.1, (name, values)
        assert np.all(np.abs(values) < 0.25), (name, values)


def test_rank_measures_ignore_scale_and_abs_ignores_sign():
    a = _noise(3, (2, 3, 32, 32))
    scaled = evaluation.similarities(a, 1e-4 * a)
    np.testing.assert_allclose(scaled["spearman_abs"], 1.0)
    np.testing.assert_allclose(scaled["spearman_signed"], 1.0)
    # SSIM and HOG compare maps each scaled to [0, 1], so a global scale does not matter either
    np.testing.assert_allclose(scaled["ssim"], 1.0, atol=1e-6)
    np.testing.assert_allclose(scaled["hog"], 1.0, atol=1e-6)
    negated = evaluation.similarities(a, -a)
    np.testing.assert_allclose(negated["spearman_abs"], 1.0)
    np.testing.assert_allclose(negated["spearman_signed"], -1.0)


def test_structure_is_seen_by_ssim_and_hog():
    blob = _smooth_blob()
    near = _smooth_blob(centre=(21, 41))
    far = _smooth_blob(centre=(50, 10))
    close = evaluation.similarities(blob[None], near[None])
    apart = evaluation.similarities(blob[None], far[None])
    for name in ("ssim", "hog", "spearman_abs"):
        assert close[name][0] > 0.8, name
        assert apart[name][0] < close[name][0] - 0.3, name


def test_channels_are_aggregated_before_comparing():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(1, 3, 16, 16))
    # Shuffling values between channels at each pixel keeps the absolute sum only when the
    # same values stay at the same pixel: permuting channels must not change the abs map.
    b = a[:, ::-1]
    np.testing.assert_allclose(evaluation.similarities(a, b)["spearman_abs"], 1.0)
    np.testing.assert_allclose(evaluation.to_maps(a, "abs")[0], np.abs(a[0]).sum(0))
    np.testing.assert_allclose(evaluation.to_maps(a, "signed")[0], a[0].sum(0))


def test_cam_maps_tensors_and_small_maps_work():
    cam = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    sims = evaluation.similarities(cam, cam.clone())
    for values in sims.values():
        np.testing.assert_allclose(values, 1.0, atol=1e-9)
    tiny = np.random.default_rng(5).random((2, 4, 4))
    assert np.all(np.isfinite(evaluation.similarities(tiny, tiny[::-1])["hog"]))


def test_constant_maps_are_defined():
    flat = np.zeros((1, 16, 16))
    varied = np.random.default_rng(6).random((1, 16, 16))
    both = evaluation.similarities(flat, flat)
    one = evaluation.similarities(flat, varied)
    assert both["spearman_abs"][0] == 1.0 and both["hog"][0] == 1.0
    assert one["spearman_abs"][0] == 0.0 and one["spearman_signed"][0] == 0.0
    assert all(np.isfinite(v).all() for v in one.values())


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(SaliencyError, match="differ"):
        evaluation.similarities(np.zeros((1, 8, 8)), np.zeros((1, 9, 9)))
    with pytest.raises(SaliencyError, match="attribution must be"):
        evaluation.to_maps(np.zeros(5))
