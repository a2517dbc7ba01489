"""Attributions computed by Captum ([N, C, H, W] tensors) and pytorch-grad-cam ([N, H, W]
NumPy arrays) are drawn by saliency_core.render and scored by saliency_core.evaluation as they
come, next to this library's own maps of the same method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import saliency_core as sc
from saliency_core import evaluation, render
from saliency_core.errors import InputShapeError
from saliency_core.io.interop import as_array, as_tensor
from saliency_core.training.shapes import generate

STEPS = 16


@pytest.fixture(scope="module")
def loaded():
    return sc.load_model("shapes-cnn", device="cpu")


@pytest.fixture(scope="module")
def data(loaded):
    """Two shapes images with their ground-truth masks, in the model's input space."""
    shapes = generate(2, seed=11)
    x = torch.cat([loaded.preprocess(Image.fromarray(img)) for img in shapes.images])
    return x, shapes.masks, torch.as_tensor(shapes.labels)


@pytest.fixture(scope="module")
def theirs(loaded, data):
    x, _masks, targets = data
    ig = IntegratedGradients(loaded.model).attribute(x, target=targets, n_steps=STEPS)
    saliency = Saliency(loaded.model).attribute(x, target=targets, abs=False)
    layer = dict(loaded.model.named_modules())[loaded.default_layer]
    with GradCAM(model=loaded.model, target_layers=[layer]) as cam:
        gradcam = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return {"ig": ig, "saliency": saliency, "gradcam": gradcam}


@pytest.fixture(scope="module")
def ours(loaded, data):
    x, _masks, targets = data
    return {"ig": sc.attribute(loaded, x, "integrated_gradients", targets, steps=STEPS, baseline="zeros"),
            "saliency": sc.attribute(loaded, x, "gradient", targets),
            "gradcam": sc.attribute(loaded, x, "gradcam", targets)}


def test_their_outputs_have_the_shapes_the_docs_promise(theirs, data):
    x = data[0]
    assert isinstance(theirs["ig"], torch.Tensor) and theirs["ig"].shape == x.shape
    assert isinstance(theirs["gradcam"], np.ndarray) and theirs["gradcam"].shape == (2, *x.shape[-2:])


def test_their_maps_are_read_as_ours_by_the_similarity_measures(theirs, ours):
    for name in ("ig", "saliency"):
        sim = evaluation.similarities(theirs[name], ours[name])
        assert (sim["spearman_signed"] > 0.999).all(), (name, sim)
    # pytorch-grad-cam scales each map to [0, 1]; ranks are unchanged by that.
    sim = evaluation.similarities(theirs["gradcam"], ours["gradcam"])
    assert (sim["spearman_abs"] > 0.99).all(), sim


def test_faithfulness_and_localisation_score_their_maps_like_ours(loaded, data, theirs, ours):
    x, masks, targets = data
    for name in ("ig", "gradcam"):
        mine = evaluation.deletion(loaded, x, ours[name], targets, steps=8)
        other = evaluation.deletion(loaded, x, theirs[name], targets, steps=8)
        np.testing.assert_allclose(other.auc, mine.auc, atol=0.02)
        np.testing.assert_array_equal(evaluation.pointing_game(theirs[name], masks),
                                      evaluation.pointing_game(ours[name], masks))
    np.testing.assert_allclose(evaluation.mass_in_mask(theirs["ig"], masks),
                               evaluation.mass_in_mask(ours["ig"], masks), atol=1e-3)


def test_the_scoreboard_ranks_their_maps_beside_ours(loaded, data, theirs, ours):
    x, masks, targets = data
    maps = {"captum ig": theirs["ig"][:1], "pytorch-grad-cam": theirs["gradcam"][:1],
            "ours gradcam": ours["gradcam"][:1]}
    rows = evaluation.scoreboard(loaded, x[:1], maps, int(targets[0]), mask=masks[:1], steps=8)
    assert {r["method"] for r in rows} == set(maps)
    by_name = {r["method"]: r for r in rows}
    direct = evaluation.insertion(loaded, x[:1], theirs["gradcam"][:1], int(targets[0]), steps=8)
    assert by_name["pytorch-grad-cam"]["insertion_auc"] == pytest.approx(direct.mean_auc)
    assert by_name["pytorch-grad-cam"]["deletion_auc"] == pytest.approx(
        by_name["ours gradcam"]["deletion_auc"], abs=0.02)


def test_render_draws_their_maps_in_a_grid(loaded, data, theirs):
    x = data[0]
    fig = render.grid(loaded.unpreprocess(x[1:2]), {"captum": theirs["ig"], "grad-cam": theirs["gradcam"]},
                      index=1, output="figure")
    shown = {ax.get_title(): np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images}
    picture = loaded.unpreprocess(x[1:2])
    expected_ig = render.overlay(picture, render.normalize(
        render.aggregate_channels(theirs["ig"][1].detach().numpy())), signed=False)
    np.testing.assert_array_equal(shown["captum"], expected_ig)
    expected_cam = render.overlay(picture, render.normalize(theirs["gradcam"][1]), signed=False)
    np.testing.assert_array_equal(shown["grad-cam"], expected_cam)


def test_captum_tuples_are_unwrapped_and_several_attributions_refused(data, loaded, theirs):
    x, _masks, targets = data
    as_tuple = IntegratedGradients(loaded.model).attribute((x,), target=targets, n_steps=4)
    assert isinstance(as_tuple, tuple)
    assert as_tensor(as_tuple).shape == x.shape and as_array(as_tuple).dtype == np.float64
    assert evaluation.to_maps(as_tuple).shape == (2, *x.shape[-2:])
    with pytest.raises(InputShapeError, match="one per input tensor"):
        evaluation.to_maps((theirs["ig"], theirs["ig"]))
    with pytest.raises(InputShapeError, match="tensor or an array"):
        render.attribution_map("not a map")
