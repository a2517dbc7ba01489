"""Deletion and insertion (RISE) and the scoreboard, on a model whose answer depends on one
known pixel region only: a map pointing at that region must win."""

import numpy as np
import pytest
import torch
from torch import nn

from saliency_core import attribute, evaluation
from saliency_core.errors import SaliencyError

H = W = 32
REGION = (slice(8, 16), slice(20, 28))  # 64 of 1024 pixels


class RegionModel(nn.Module):
    """Class 0 wins only while the region is bright and sharp; nothing else matters (a blur
    spreads the region's brightness out, so blurred evidence falls under the threshold)."""

    def forward(self, x):
        evidence = x[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))
        return torch.stack([40 * (evidence - 0.9), torch.zeros_like(evidence)], dim=1)


def _image(n=2):
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(n, 3, H, W, generator=g)
    x[:, :, REGION[0], REGION[1]] = 1.0
    return x


def _region_map(n=2, where=REGION):
    m = torch.zeros(n, H, W)
    m[:, where[0], where[1]] = 1.0
    return m


RIGHT = _region_map()
WRONG = 1.0 - RIGHT  # everything else first, the region last


@pytest.mark.parametrize("substrate", ["blur", "mean"])
def test_deleting_the_right_region_first_drops_the_score_quickly(substrate):
    x = _image()
    curve = evaluation.deletion(RegionModel(), x, RIGHT, target=0, steps=32, substrate=substrate)
    assert curve.scores.shape == (2, 33) and curve.fractions[0] == 0 and curve.fractions[-1] == 1
    assert curve.direction == "deletion" and curve.substrate == substrate
    p0 = torch.softmax(RegionModel()(x), 1)[:, 0].numpy()
    np.testing.assert_allclose(curve.scores[:, 0], p0, rtol=1e-6)
    # After 2/32 of the pixels (the region is 1/16 of the image) the evidence is gone.
    assert np.all(curve.scores[:, 2] < 0.1)
    wrong = evaluation.deletion(RegionModel(), x, WRONG, target=0, steps=32, substrate=substrate)
    assert np.all(wrong.scores[:, 2] > 0.9)
    assert np.all(curve.auc < 0.1) and np.all(wrong.auc > 0.8)


@pytest.mark.parametrize("substrate", ["blur", "mean"])
def test_inserting_the_right_region_first_raises_the_score_quickly(substrate):
    x = _image()
    right = evaluation.insertion(RegionModel(), x, RIGHT, target=0, steps=32, substrate=substrate)
    wrong = evaluation.insertion(RegionModel(), x, WRONG, target=0, steps=32, substrate=substrate)
    assert np.all(right.scores[:, 0] < 0.1) and np.all(right.scores[:, 2] > 0.9)
    assert np.all(right.auc > 0.8) and np.all(wrong.auc < 0.1)
    np.testing.assert_allclose(right.scores[:, -1], wrong.scores[:, -1])  # full image both


def test_the_models_own_gradient_is_a_faithful_map():
    x = _image()
    grad = attribute(RegionModel(), x, "gradient", target=0)
    good = evaluation.deletion(RegionModel(), x, grad, target=0).auc
    bad = evaluation.deletion(RegionModel(), x, WRONG, target=0).auc
    assert np.all(good < bad - 0.3)


def test_batching_does_not_change_the_curve():
    x = _image()
    noise = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    big = evaluation.deletion(RegionModel(), x, noise, target=0, steps=20, batch_size=64)
    small = evaluation.deletion(RegionModel(), x, noise, target=0, steps=20, batch_size=3)
    np.testing.assert_allclose(big.scores, small.scores, rtol=1e-6)


def test_coarse_cam_maps_are_upsampled_and_progress_reported():
    coarse = torch.zeros(1, 4, 4)
    coarse[0, 1, 2] = 1.0  # the cell holding the region at 8x8 pixel cells
    seen = []
    curve = evaluation.deletion(RegionModel(), _image(1), coarse, target=0, steps=16,
                             progress=lambda done, total: seen.append((done, total)))
    assert curve.scores[0, 2] < 0.1
    assert seen[-1] == (17, 17)


def test_scoreboard_ranks_the_right_map_first_with_and_without_a_mask():
    x = _image(1)
    maps = {"wrong": WRONG[:1], "right": RIGHT[:1],
            "gradient": attribute(RegionModel(), x, "gradient", target=0)}
    rows = evaluation.scoreboard(RegionModel(), x, maps, target=0, steps=16)
    assert [r["method"] for r in rows][-1] == "wrong"
    assert rows[0]["rank"] == 1 and rows[0]["method"] in ("right", "gradient")
    by_name = {r["method"]: r for r in rows}
    assert by_name["right"]["deletion_auc"] < by_name["wrong"]["deletion_auc"]
    assert by_name["right"]["insertion_auc"] > by_name["wrong"]["insertion_auc"]
    assert len(by_name["right"]["deletion_curve"]) == len(by_name["right"]["fractions"]) == 17
    mask = RIGHT[0].bool()
    rows = evaluation.scoreboard(RegionModel(), x, maps, target=0, mask=mask, steps=16)
    by_name = {r["method"]: r for r in rows}
    assert by_name["right"]["pointing"] == 1.0 and by_name["wrong"]["pointing"] == 0.0
    assert by_name["right"]["mass_in_mask"] == pytest.approx(1.0)
    assert by_name["wrong"]["rank"] == 3 and by_name["wrong"]["mass_in_mask_rank"] == 3


def test_bad_choices_are_clear_errors():
    x = _image(1)
    with pytest.raises(SaliencyError, match="substrate"):
        evaluation.deletion(RegionModel(), x, RIGHT[:1], target=0, substrate="zeros")
    with pytest.raises(SaliencyError, match="steps"):
        evaluation.deletion(RegionModel(), x, RIGHT[:1], target=0, steps=0)
    with pytest.raises(SaliencyError, match="direction must be 'deletion' or 'insertion'"):
        evaluation.perturbation_curve(RegionModel(), x, RIGHT[:1], target=0, direction="sideways")
    with pytest.raises(SaliencyError, match="maps for"):
        evaluation.deletion(RegionModel(), x, RIGHT, target=0)
    with pytest.raises(SaliencyError, match="at least one"):
        evaluation.scoreboard(RegionModel(), x, {}, target=0)
    with pytest.raises(SaliencyError, match="target"):
        evaluation.deletion(RegionModel(), x, RIGHT[:1], target=5)
