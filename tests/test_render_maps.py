"""render: aggregation, clipping/normalisation, colormaps, overlays, PNG export and token HTML,
checked on constructed arrays whose right answer is known."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from saliency_core import render


def _attr():
    # Channel 0 positive, channel 1 negative, channel 2 zero: every mode gives something
    # different at pixel (0, 0).
    a = np.zeros((3, 2, 2))
    a[0] = [[3.0, 0.0], [1.0, 0.0]]
    a[1] = [[-4.0, 0.0], [1.0, 0.0]]
    return a


def test_aggregate_channels_modes_on_known_values():
    a = _attr()
    assert render.aggregate_channels(a, "max_abs")[0, 0] == 4.0
    assert render.aggregate_channels(a, "l2")[0, 0] == pytest.approx(5.0)
    assert render.aggregate_channels(a, "sum")[0, 0] == 1.0  # |3 - 4|
    assert render.aggregate_channels(a, "signed_sum")[0, 0] == -1.0
    assert render.aggregate_channels(a, "mean_abs")[0, 0] == pytest.approx(7.0 / 3)
    assert render.aggregate_channels(a, "sum")[1, 0] == 2.0


def test_aggregate_accepts_torch_batch_of_one_and_passes_2d_maps_through():
    a = torch.tensor(_attr()).unsqueeze(0)
    out = render.aggregate_channels(a, "max_abs")
    assert out.shape == (2, 2) and isinstance(out, np.ndarray)
    cam = np.array([[0.0, 2.0], [1.0, 0.5]])
    np.testing.assert_array_equal(render.aggregate_channels(cam, "l2"), cam)


def test_aggregate_rejects_unknown_mode_and_bad_shapes():
    with pytest.raises(ValueError, match="aggregation"):
        render.aggregate_channels(_attr(), "median")
    with pytest.raises(ValueError, match="shape"):
        render.aggregate_channels(np.zeros(5), "max_abs")


def test_normalize_clips_outlier_at_percentile():
    m = np.linspace(0, 1, 101)
    m[-1] = 1000.0  # one outlier would otherwise make every other value ~0
    out = render.normalize(m, "absolute", percentile=98.0)
    assert out.max() == 1.0 and out.min() == 0.0
    assert out[50] == pytest.approx(0.5 / np.percentile(np.abs(m[1:]), 98.0))
    assert out[50] > 0.4
    assert render.normalize(m, "absolute", percentile=100.0)[50] < 0.001


def test_normalize_sign_modes():
    m = np.array([[-2.0, -1.0], [1.0, 4.0]])
    pos = render.normalize(m, "positive", 100.0)
    np.testing.assert_allclose(pos, [[0, 0], [0.25, 1.0]])
    neg = render.normalize(m, "negative", 100.0)
    np.testing.assert_allclose(neg, [[1.0, 0.5], [0, 0]])
    signed = render.normalize(m, "signed", 100.0)
    np.testing.assert_allclose(signed, [[-0.5, -0.25], [0.25, 1.0]])
    absolute = render.normalize(m, "absolute", 100.0)
    np.testing.assert_allclose(absolute, [[0.5, 0.25], [0.25, 1.0]])


def test_normalize_all_zero_and_nan_maps_give_zeros_not_nan():
    assert not render.normalize(np.zeros((4, 4))).any()
    m = np.array([[np.nan, np.inf], [1.0, 0.0]])
    out = render.normalize(m)
    assert np.isfinite(out).all() and out[1, 0] == 1.0
    # Nothing negative in a positive-only map: the negative view is empty, not an error.
    assert not render.normalize(np.ones((2, 2)), "negative").any()


def test_normalize_shared_scale_overrides_percentile():
    m = np.array([1.0, 2.0])
    np.testing.assert_allclose(render.normalize(m, "absolute", scale=4.0), [0.25, 0.5])
    assert render.clip_value(np.array([0, 0, 3.0]), "absolute", 100.0) == 3.0


def test_normalize_rejects_bad_options():
    with pytest.raises(ValueError, match="sign"):
        render.normalize(np.ones(3), "both")
    with pytest.raises(ValueError, match="percentile"):
        render.normalize(np.ones(3), "absolute", percentile=0)


def test_colorize_uses_colormap_ends_and_diverging_middle():
    import matplotlib

    m = np.array([[0.0, 1.0]])
    rgb = render.colorize(m, "gray")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    signed = render.colorize(np.array([[-1.0, 0.0, 1.0]]), "RdBu_r")
    cmap = matplotlib.colormaps["RdBu_r"]
    expected_mid = (np.array(cmap(0.5)[:3]) * 255).round()
    np.testing.assert_allclose(signed[0, 1], expected_mid, atol=1)
    assert signed[0, 0, 2] > signed[0, 0, 0]  # negative end is blue
    assert signed[0, 2, 0] > signed[0, 2, 2]  # positive end is red
    with pytest.raises(ValueError, match="colormap"):
        render.colorize(m, "no-such-map")


def test_overlay_blends_with_alpha_and_resizes_map():
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    m = np.ones((2, 2))  # a layer-resolution CAM
    white = render.overlay(image, m, cmap="gray", alpha=0.5)
    assert white.shape == (8, 8, 3) and white.dtype == np.uint8
    assert np.all(white == 178)  # round(0.5 * 100 + 0.5 * 255)
    np.testing.assert_array_equal(render.overlay(image, m, "gray", alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(image, m, alpha=1.5)


def test_overlay_by_strength_keeps_the_image_where_the_map_is_zero():
    image = np.full((1, 2, 3), 100, dtype=np.uint8)
    m = np.array([[0.0, 1.0]])
    out = render.overlay(image, m, cmap="gray", alpha=0.5, by_strength=True)
    assert out[0, 0].tolist() == [100, 100, 100]  # zero map: untouched picture
    assert out[0, 1].tolist() == [178, 178, 178]  # full map: the plain blend


def test_resize_map_keeps_values_of_a_constant_map():
    out = render.resize_map(np.full((3, 5), 0.25), (30, 50))
    assert out.shape == (30, 50)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_to_png_round_trips():
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    back = np.asarray(Image.open(io.BytesIO(render.to_png(arr))))
    np.testing.assert_array_equal(back, arr)
    with pytest.raises(ValueError):
        render.to_png(arr.astype(np.float32))


def test_token_html_escapes_colours_by_sign_and_greys_special_tokens():
    tokens = ["[CLS]", "<b>good</b>", "bad", "##ly", "[SEP]"]
    scores = np.array([9.0, 2.0, -1.0, 0.0, 9.0])
    html_text = render.token_html(tokens, scores, special=[True, False, False, False, True])
    assert "<b>" not in html_text and "&lt;b&gt;good&lt;/b&gt;" in html_text
    # Special tokens do not set the scale: "good" is the peak, so it is fully opaque red.
    assert "rgba(220, 38, 38, 1.000)" in html_text
    assert "rgba(37, 99, 235, 0.500)" in html_text  # "bad": half as strong, negative
    assert "color:#9ca3af" in html_text  # special tokens greyed
    # A word-piece continuation joins its word without a space and without "##".
    assert '>bad</span><span class="token"' in html_text and ">ly<" in html_text
    assert 'title="bad: -1"' in html_text


def test_token_html_checks_lengths_and_handles_all_zero():
    with pytest.raises(ValueError):
        render.token_html(["a", "b"], [1.0])
    out = render.token_html(["a", "b"], [0.0, 0.0])
    assert "rgba(220, 38, 38, 0.000)" in out


def test_token_display_markers():
    assert render.token_display("##ing") == ("ing", False)
    assert render.token_display("▁word") == ("word", True)
    assert render.token_display("Ġword") == ("word", True)
    assert render.token_display("##") == ("##", True)


def test_one_token_colour_convention_for_the_app_and_the_cli_chart():
    """Red for evidence for the target, blue against, in the HTML and the CLI's bar chart."""
    from saliency_core.render import (
        TOKEN_AGAINST_RGB,
        TOKEN_FOR_RGB,
        token_colour_hex,
        token_html,
    )

    html_out = token_html(["good", "bad"], [1.0, -1.0])
    assert f"rgba({', '.join(map(str, TOKEN_FOR_RGB))}, 1.000)" in html_out.split("bad")[0]
    assert f"rgba({', '.join(map(str, TOKEN_AGAINST_RGB))}, 1.000)" in html_out.split("bad")[1]
    assert token_colour_hex(0.5) == "#dc2626"
    assert token_colour_hex(-0.5) == "#2563eb"
    assert TOKEN_FOR_RGB[0] > TOKEN_FOR_RGB[2] and TOKEN_AGAINST_RGB[2] > TOKEN_AGAINST_RGB[0]
