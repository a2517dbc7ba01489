"""saliency_core.render grids: several methods or several classes of one input in one call, as
a PIL image or a matplotlib figure; every cell checked against the overlay it must show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import saliency_core as sc
from saliency_core import render
from saliency_core.errors import InputShapeError, ParameterError


@pytest.fixture(scope="module")
def loaded():
    return sc.load_model("shapes-cnn", device="cpu")


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 64, 64, generator=g)


def cells(fig: Figure) -> dict[str, np.ndarray]:
    """Title -> the picture its axes show."""
    return {ax.get_title(): np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images}


def test_attribution_map_reads_captum_gradcam_and_plain_layouts():
    a = np.zeros((2, 3, 4, 4))
    a[1, 0, 0, 0], a[1, 2, 0, 0] = -5.0, 2.0
    np.testing.assert_array_equal(render.attribution_map(a, 1)[0, 0], 5.0)  # max_abs over channels
    assert render.attribution_map(a, 1, "signed_sum")[0, 0] == -3.0
    assert render.attribution_map(torch.tensor(a), 0).sum() == 0.0
    cams = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)  # pytorch-grad-cam's [N, H, W]
    np.testing.assert_array_equal(render.attribution_map(cams, 1), cams[1])
    np.testing.assert_array_equal(render.attribution_map(cams[0]), cams[0])
    with pytest.raises(InputShapeError, match="out of range"):
        render.attribution_map(cams, 2)
    with pytest.raises(InputShapeError, match=r"\[N, C, H, W\]"):
        render.attribution_map(np.zeros((1, 1, 1, 4, 4)))


def test_input_image_undoes_normalization_and_passes_pictures_through():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 5, 6)).astype(np.float64) / 255
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    x = (torch.tensor(pixels) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    np.testing.assert_array_equal(render.input_image(x[None], 0, (mean, std)),
                                  np.rint(pixels * 255).astype(np.uint8).transpose(1, 2, 0))
    assert render.input_image(torch.ones(1, 3, 2, 2)).max() == 255  # [0, 1] pixels
    stretched = render.input_image(torch.tensor([[[-2.0, 2.0]]]))  # outside [0, 1], one channel
    assert stretched.shape == (1, 2, 3) and stretched[0, 0, 0] == 0 and stretched[0, 1, 0] == 255
    picture = np.full((4, 4, 3), 7, np.uint8)
    assert render.input_image(picture) is not None and render.input_image(picture)[0, 0, 0] == 7
    assert render.input_image(Image.fromarray(picture)).shape == (4, 4, 3)
    with pytest.raises(InputShapeError):
        render.input_image(torch.zeros(1, 5, 4, 4))


def test_grid_cells_are_the_input_and_each_maps_overlay():
    picture = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    maps = {"first": np.random.default_rng(2).random((1, 3, 16, 16)),
            "second": np.random.default_rng(3).random((1, 8, 8))}  # a coarse CAM, resized
    fig = render.grid(picture, maps, output="figure", heading="two maps", cmap="viridis", alpha=0.7)
    shown = cells(fig)
    assert list(shown) == ["input", "first", "second"]
    np.testing.assert_array_equal(shown["input"], picture)
    for title, a in maps.items():
        expected = render.overlay(picture, render.normalize(render.attribution_map(a)), cmap="viridis",
                                  alpha=0.7, signed=False)
        np.testing.assert_array_equal(shown[title], expected)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "two maps"
    image = render.grid(picture, maps)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width > 2.5 * image.height  # one row of three cells


def test_grid_shared_scale_signed_maps_columns_and_no_image():
    weak, strong = np.full((1, 4, 4), 1.0), np.full((1, 4, 4), 10.0)
    weak[0, 0, 0] = strong[0, 0, 0] = 0.0
    shown = cells(render.grid(None, {"weak": weak, "strong": strong}, output="figure",
                              shared_scale=True, percentile=100.0))
    np.testing.assert_array_equal(shown["weak"], render.colorize(np.where(weak[0] > 0, 0.1, 0.0), "inferno"))
    np.testing.assert_array_equal(shown["strong"], render.colorize(np.where(strong[0] > 0, 1.0, 0.0), "inferno"))
    signed = np.array([[[-1.0, 1.0], [0.0, 0.5]]])
    shown = cells(render.grid(None, {"s": signed}, output="figure", sign="signed", cmap="inferno",
                              percentile=100.0))
    np.testing.assert_array_equal(shown["s"], render.colorize(signed[0], render.DEFAULT_DIVERGING, signed=True))
    fig = render.grid(np.zeros((4, 4, 3), np.uint8), {"a": weak, "b": weak, "c": weak}, output="figure",
                      columns=2)
    positions = sorted({(round(ax.get_position().x0, 2), round(ax.get_position().y0, 2))
                        for ax in fig.axes if ax.images})
    assert len(positions) == 4 and len({y for _x, y in positions}) == 2  # 2 rows of 2


def test_grid_rejects_what_it_cannot_draw():
    with pytest.raises(ParameterError, match="at least one map"):
        render.grid(None, {})
    with pytest.raises(ParameterError, match="output must be one of"):
        render.grid(None, {"a": np.zeros((1, 4, 4))}, output="svg")  # type: ignore[call-overload]
    with pytest.raises(InputShapeError, match="out of range"):
        render.grid(None, {"a": np.zeros((1, 4, 4))}, index=3)


def test_method_grid_explains_each_method_on_the_chosen_input(loaded, x):
    fig = render.method_grid(loaded, x, ["gradient", "gradcam"], index=1, output="figure",
                             params={"gradcam": {"upsample": True}})
    shown = cells(fig)
    titles = list(shown)
    assert titles[0] == "input" and titles[1].startswith("gradient · ") and titles[2].startswith("gradcam · ")
    picture = loaded.unpreprocess(x[1:2])
    np.testing.assert_array_equal(shown["input"], picture)
    cam = sc.attribute(loaded, x[1:2], "gradcam")
    np.testing.assert_array_equal(shown[titles[2]], render.overlay(
        picture, render.normalize(render.attribution_map(cam)), signed=False))
    e = sc.explain(loaded, x[1:2], "gradient")
    predicted = loaded.labels[int(e.predicted[0])]
    assert fig._suptitle is not None and fig._suptitle.get_text().startswith(f"predicted: {predicted} (")
    assert isinstance(render.method_grid(loaded, x, ["gradient"]), Image.Image)


def test_method_grid_rejects_params_for_methods_not_asked_and_no_methods(loaded, x):
    with pytest.raises(ParameterError, match="integrated_gradients"):
        render.method_grid(loaded, x, ["gradient"], params={"integrated_gradients": {"steps": 4}})
    with pytest.raises(ParameterError, match="at least one method"):
        render.method_grid(loaded, x, [])
    with pytest.raises(InputShapeError, match=r"\[N, C, H, W\]"):
        render.method_grid(loaded, x[0], ["gradient"])


def test_class_grid_shows_the_top_classes_with_their_maps(loaded, x):
    fig = render.class_grid(loaded, x, top_k=3, method="gradcam", output="figure")
    shown = cells(fig)
    probabilities = torch.softmax(loaded.model(x[:1]), 1)[0]
    top = probabilities.topk(3).indices.tolist()
    titles = list(shown)[1:]
    assert [t.split(" · ")[0] for t in titles] == [loaded.labels[k] for k in top]
    maps = sc.cam_for_targets(loaded, x[:1], top, "gradcam")
    picture = loaded.unpreprocess(x[:1])
    for title, m in zip(titles, maps):
        np.testing.assert_array_equal(shown[title], render.overlay(
            picture, render.normalize(m.numpy()), signed=False))


def test_class_grid_runs_other_methods_once_per_class(loaded, x):
    fig = render.class_grid(loaded, x, [1, 4], method="integrated_gradients", params={"steps": 8},
                            output="figure", index=1)
    shown = cells(fig)
    titles = list(shown)[1:]
    assert [t.split(" · ")[0] for t in titles] == [loaded.labels[1], loaded.labels[4]]
    ig = sc.attribute(loaded, x[1:2], "integrated_gradients", target=4, steps=8)
    np.testing.assert_array_equal(shown[titles[1]], render.overlay(
        loaded.unpreprocess(x[1:2]), render.normalize(render.attribution_map(ig)), signed=False))
    with pytest.raises(ParameterError, match="top_k"):
        render.class_grid(loaded, x, method="integrated_gradients", top_k=99)
