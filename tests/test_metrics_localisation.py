"""Pointing game and attribution mass inside a mask, on constructed maps and masks."""

import numpy as np
import pytest
import torch

from saliency_core import evaluation
from saliency_core.errors import SaliencyError


def _mask():
    m = np.zeros((16, 16), dtype=bool)
    m[4:8, 4:8] = True
    return m


def _peak_at(y, x, value=5.0, shape=(16, 16)):
    a = np.random.default_rng(0).random(shape)  # background below the peak
    a[y, x] = value
    return a


def test_pointing_game_hits_inside_and_misses_outside():
    maps = np.stack([_peak_at(5, 5), _peak_at(12, 12), _peak_at(4, 7)])
    np.testing.assert_array_equal(evaluation.pointing_game(maps, _mask()), [1.0, 0.0, 1.0])


def test_pointing_game_tolerance_grows_the_mask():
    near = _peak_at(8, 9)[None]  # one row below and two columns right of the mask's corner
    assert evaluation.pointing_game(near, _mask(), tolerance=0)[0] == 0.0
    assert evaluation.pointing_game(near, _mask(), tolerance=1)[0] == 0.0
    assert evaluation.pointing_game(near, _mask(), tolerance=2)[0] == 0.0  # sqrt(1 + 4) > 2
    assert evaluation.pointing_game(near, _mask(), tolerance=3)[0] == 1.0
    with pytest.raises(SaliencyError, match="tolerance"):
        evaluation.pointing_game(near, _mask(), tolerance=-1)


def test_pointing_game_uses_positive_evidence_and_aggregates_channels():
    signed = np.zeros((1, 16, 16))
    signed[0, 5, 5] = 1.0
    signed[0, 12, 12] = -9.0  # strong negative evidence outside: not where the map points
    assert evaluation.pointing_game(signed, _mask())[0] == 1.0
    rgb = np.zeros((1, 3, 16, 16))
    rgb[0, :, 6, 6] = 1.0  # summed over channels it beats the single-channel peak
    rgb[0, 0, 14, 1] = 2.0
    assert evaluation.pointing_game(rgb, _mask())[0] == 1.0


def test_a_flat_map_points_nowhere():
    assert evaluation.pointing_game(np.zeros((1, 16, 16)), _mask())[0] == 0.0


def test_mass_in_mask_is_the_inside_share():
    a = np.zeros((1, 16, 16))
    a[0, 4:8, 4:8] = 1.0  # 16 inside
    a[0, 0, :16] = 0.5  # 8 outside
    a[0, 15, 0] = -8.0  # negative: only counts as absolute mass
    assert evaluation.mass_in_mask(a, _mask(), "positive")[0] == pytest.approx(16 / 24)
    assert evaluation.mass_in_mask(a, _mask(), "absolute")[0] == pytest.approx(16 / 32)
    assert evaluation.mass_in_mask(np.zeros((1, 16, 16)), _mask())[0] == 0.0


def test_per_sample_masks_and_coarse_cams():
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[0, :8, :8] = True
    masks[1, 8:, 8:] = True
    cam = torch.zeros(2, 4, 4)
    cam[0, 0, 0] = 1.0  # top-left cell: inside the first mask only
    cam[1, 0, 0] = 1.0
    np.testing.assert_array_equal(evaluation.pointing_game(cam, masks), [1.0, 0.0])
    mass = evaluation.mass_in_mask(cam, masks)
    assert mass[0] > 0.9 and mass[1] < 0.1


def test_mask_errors_are_clear():
    with pytest.raises(SaliencyError, match="mask"):
        evaluation.pointing_game(np.zeros((2, 16, 16)), np.zeros((3, 16, 16), dtype=bool))
    with pytest.raises(SaliencyError, match="energy"):
        evaluation.mass_in_mask(np.zeros((1, 16, 16)), _mask(), energy="squared")
