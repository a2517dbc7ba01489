"""Results show themselves in Jupyter: an Explanation as the input, its overlay and the
prediction (HTML and PNG), a TextAttribution as highlighted tokens in the app's colours (red
for the class explained, blue against) and as a bar chart."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import saliency_core as sc
from saliency_core import render
from saliency_core.models.base import LoadedModel
from saliency_core.serve.wire import decode_result, encode_result, encode_value
from saliency_core.show import notebook


@pytest.fixture(scope="module")
def loaded():
    return sc.load_model("shapes-cnn", device="cpu")


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def images_in(page: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB"))
            for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_explanation_html_shows_input_overlay_and_top_classes(loaded, x):
    e = sc.explain(loaded, x, "gradcam", target=[0, 1, 2])
    page = e._repr_html_()
    pictures = images_in(page)
    assert len(pictures) == 6  # input and overlay for each of the three inputs
    for i in range(3):
        picture = loaded.unpreprocess(x[i:i + 1])
        np.testing.assert_array_equal(pictures[2 * i], picture)
        np.testing.assert_array_equal(pictures[2 * i + 1], render.overlay(
            picture, render.normalize(e.attribution[i].numpy()), signed=False))
    assert re.findall(r"explained: <b>([^<]+)</b>", page) == loaded.labels[:3]
    best = int(e.probabilities[0].argmax())
    assert f"<td>{loaded.labels[best]}</td><td>{float(e.probabilities[0, best]):.1%}</td>" in page
    assert "gradcam" in page and "cpu" in page


def test_explanation_png_is_a_figure_of_input_and_overlay_per_input(loaded, x):
    e = sc.explain(loaded, x[:2], "gradient")
    png = e._repr_png_()
    assert Image.open(io.BytesIO(png)).format == "PNG"
    fig = notebook.explanation_figure(e)
    shown = [(ax.get_title(), np.asarray(ax.images[0].get_array())) for ax in fig.axes if ax.images]
    assert [t for t, _ in shown][::2] == ["input", "input"]
    label = loaded.labels[int(e.predicted[1])]
    assert shown[3][0].startswith(f"predicted {label} (")
    picture = loaded.unpreprocess(x[1:2])
    np.testing.assert_array_equal(shown[3][1], render.overlay(
        picture, render.normalize(render.attribution_map(e.attribution, 1)), signed=False))


def test_a_large_batch_shows_the_first_inputs_and_says_how_many_more(loaded):
    e = sc.explain(loaded, torch.rand(6, 3, 64, 64), "gradient")
    page = e._repr_html_()
    assert len(images_in(page)) == 2 * notebook.MAX_SHOWN and "… and 2 more inputs" in page


def test_labels_are_escaped_and_a_plain_module_uses_its_normalization():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2)).eval()
    hostile = LoadedModel(name="t", task="image", model=net, labels=["<script>x</script>", "ok & fine"])
    page = sc.explain(hostile, torch.rand(1, 3, 8, 8), "gradient", target=0)._repr_html_()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "ok &amp; fine" in page
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    pixels = torch.rand(1, 3, 8, 8)
    e = sc.explain(net, (pixels - 0.5) / 0.25, "gradient", normalization=(mean, std))
    np.testing.assert_array_equal(images_in(e._repr_html_())[0], render.input_image(pixels))
    assert "class 0" in e._repr_html_() or "class 1" in e._repr_html_()  # no labels: class numbers


def test_an_explanation_without_its_inputs_or_pixels_still_shows_what_it_can(loaded, x):
    e = sc.explain(loaded, x[:1], "gradcam")
    decoded = decode_result(encode_result(e))  # across a process boundary: no inputs kept
    tensors: dict = {}
    sent = encode_value(e, tensors)  # the service's structured values leave them behind too
    assert set(sent["fields"]) == {"attribution", "target", "score", "predicted", "probabilities", "metadata"}
    assert not any(t is e.inputs for t in tensors.values())
    pictures = images_in(decoded._repr_html_())
    assert len(pictures) == 1
    np.testing.assert_array_equal(pictures[0], render.colorize(render.normalize(e.attribution[0].numpy())))
    vectors = nn.Linear(5, 3).eval()
    flat = sc.explain(vectors, torch.rand(2, 5), "gradient")
    page = flat._repr_html_()
    assert not images_in(page) and page.count("<table>") == 2
    assert Image.open(io.BytesIO(flat._repr_png_())).format == "PNG"


def _text(scores, special=None, labels=("negative", "positive")) -> sc.TextAttribution:
    tokens = ["[CLS]", "a", "fine", "##ly", "dull", "film", "[SEP]"][: len(scores)]
    return sc.TextAttribution(tokens=tokens, special=special or [False] * len(scores),
                              scores=np.asarray(scores, dtype=np.float64),
                              attribution=torch.zeros(len(scores), 4), target=1, predicted=1,
                              probabilities=np.array([0.2, 0.8]),
                              metadata={"method": "gradient_x_input"}, labels=list(labels))


def test_text_html_highlights_tokens_red_for_and_blue_against():
    ta = _text([0.0, 0.1, 0.8, 0.2, -0.4, 0.0, 0.0], special=[True, False, False, False, False, False, True])
    page = ta._repr_html_()
    spans = dict(re.findall(r'title="([^"]+)" style="([^"]+)"', page))
    assert "rgba(220, 38, 38, 1.000)" in spans["fine: +0.8"]  # the largest, for the target
    assert "rgba(37, 99, 235, 0.500)" in spans["dull: -0.4"]  # against, half as strong
    assert "#9ca3af" in spans["[CLS]: +0"]  # special tokens greyed
    assert "predicted positive (80%) · explained positive · gradient_x_input" in page
    assert "<td>negative</td><td>20.0%</td>" in page


def test_text_png_is_the_token_chart_in_the_same_colours():
    ta = _text([0.0, 0.5, -0.5], special=[True, False, False])
    assert Image.open(io.BytesIO(ta._repr_png_())).format == "PNG"
    fig = render.token_chart(ta.tokens, ta.scores, ta.special)
    colours = [tuple(round(c * 255) for c in bar.get_facecolor()[:3]) for bar in fig.axes[0].patches]
    assert colours == [(156, 163, 175), render.TOKEN_FOR_RGB, render.TOKEN_AGAINST_RGB]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["[CLS]", "a", "fine"]


@pytest.mark.slow
def test_a_real_text_result_knows_its_labels():
    text_model = sc.load_model("minilm-sentiment", device="cpu")
    ta = sc.attribute_text(text_model, text_model.tokenizer, "a wonderful film", "gradient_x_input")
    assert ta.labels == text_model.labels
    page = ta._repr_html_()
    assert f"explained {text_model.labels[ta.target]}" in page and 'class="token"' in page
