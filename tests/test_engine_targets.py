"""Targets as values (saliency_core.targets): class names, contrasts and target functions
reach every method through one path and mean what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support.engine_models import images, make_tiny_text_model, small_cnn, tiny_hf_vit

import saliency_core as sc
from saliency_core.cli import main
from saliency_core.engine.stream import logits_of
from saliency_core.errors import TargetError
from saliency_core.methods import with_capability
from saliency_core.serve import wire
from saliency_core.serve.client import Client
from saliency_core.targets import Contrast, describe, from_wire, target_key

# Every method, with parameters small enough for a 16-pixel CNN.
METHODS = {
    "gradient": {}, "gradient_x_input": {}, "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 3}, "guided_backprop": {}, "deconvnet": {},
    "gradcam": {}, "gradcam_plus_plus": {}, "hirescam": {}, "layercam": {}, "xgradcam": {},
    "guided_gradcam": {}, "attention_rollout": {}, "attention_relevance": {},
}
# Methods that read attention run on a vision transformer instead of the CNN.
ON_TRANSFORMER = set(with_capability("needs_attention"))
SMOOTH_BASES = ("gradient_x_input", "integrated_gradients", "guided_backprop", "guided_gradcam")


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


@pytest.fixture(scope="module")
def vit():
    return tiny_hf_vit()


@pytest.fixture
def model_for(cnn, vit):
    return lambda method: vit if method in ON_TRANSFORMER else cnn


@pytest.fixture(scope="module")
def shapes():
    return sc.load_model("shapes-cnn", device="cpu")


def contrast_fn(a, b):
    def score(logits):
        return logits[:, a] - logits[:, b]

    return score


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_registry_and_this_file_name_the_same_methods():
    assert set(METHODS) == {m.name for m in sc.methods()}


def test_a_class_name_equals_its_index_bit_for_bit(shapes):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for method in ("gradient", "gradcam", "integrated_gradients"):
        params = {"steps": 8} if method == "integrated_gradients" else {}
        by_name = sc.explain(shapes, x, method, target="square", **params)
        by_index = sc.explain(shapes, x, method, target=1, **params)
        assert torch.equal(by_name.attribution, by_index.attribution)
        assert by_name.target.tolist() == [1, 1] and by_name.metadata["target_value"] == "square"
    per_input = sc.attribute(shapes, x, "gradient", target=["square", "Circle"])
    assert torch.equal(per_input, sc.attribute(shapes, x, "gradient", target=[1, 0]))


@pytest.mark.parametrize("method", list(METHODS))
def test_a_contrast_is_the_function_of_its_two_logits(model_for, method):
    cnn = model_for(method)
    x = images()
    params = METHODS[method]
    contrast = sc.explain(cnn, x, method, target=Contrast(1, rather_than=3), **params)
    function = sc.attribute(cnn, x, method, target=contrast_fn(1, 3), **params)
    assert close(contrast.attribution, function)
    logits = logits_of(cnn(x)).detach()
    assert close(contrast.score, logits[:, 1] - logits[:, 3])
    assert contrast.target.tolist() == [1, 1]
    assert contrast.metadata["target_value"] == {"target": 1, "rather_than": 3}
    json.dumps(contrast.metadata)


@pytest.mark.parametrize("method", list(METHODS))
def test_a_target_function_reads_as_the_class_it_scores(model_for, method):
    cnn = model_for(method)
    x = images()
    params = METHODS[method]
    got = sc.explain(cnn, x, method, target=lambda logits: logits[:, 2], **params)
    assert close(got.attribution, sc.attribute(cnn, x, method, target=2, **params))
    assert got.target.tolist() == [-1, -1]  # a function explains a score, not a class
    assert got.metadata["target_value"]["function"].endswith("<lambda>")


@pytest.mark.parametrize("base", SMOOTH_BASES)
def test_smoothgrad_around_any_base_takes_a_contrast(cnn, base):
    x = images()
    extra = {"steps": 4} if base == "integrated_gradients" else {}
    for variant in ("smoothgrad", "vargrad"):
        got = sc.attribute(cnn, x, "smoothgrad", target=Contrast(0, 4), base=base, samples=2,
                           variant=variant, **extra)
        want = sc.attribute(cnn, x, "smoothgrad", target=contrast_fn(0, 4), base=base, samples=2,
                            variant=variant, **extra)
        assert close(got, want)


def test_for_the_gradient_a_contrast_is_the_difference_of_the_two_attributions(cnn):
    x = images()
    got = sc.attribute(cnn, x, "gradient", target=Contrast(1, 3))
    want = sc.attribute(cnn, x, "gradient", target=1) - sc.attribute(cnn, x, "gradient", target=3)
    assert close(got, want)


def test_predicted_rather_than_a_class(cnn):
    x = images()
    top = cnn(x).argmax(1)
    got = sc.explain(cnn, x, "integrated_gradients", target=Contrast("predicted", 0), steps=8)
    assert got.target.tolist() == top.tolist()
    for i, k in enumerate(top.tolist()):
        one = sc.attribute(cnn, x[i:i + 1], "integrated_gradients", target=contrast_fn(k, 0), steps=8)
        assert close(got.attribution[i:i + 1], one)


def test_integrated_gradients_completeness_holds_for_a_contrast(cnn):
    x = images()
    e = sc.explain(cnn, x, "integrated_gradients", target=Contrast(1, 3), steps=64, baseline="zeros")
    logits_x, logits_0 = cnn(x).detach(), cnn(torch.zeros_like(x)).detach()
    assert np.allclose(e.metadata["f_x"], (logits_x[:, 1] - logits_x[:, 3]).tolist(), atol=1e-5)
    assert np.allclose(e.metadata["f_baseline"], (logits_0[:, 1] - logits_0[:, 3]).tolist(), atol=1e-5)
    gap = np.abs(np.array(e.metadata["f_x"]) - np.array(e.metadata["f_baseline"]))
    assert (np.abs(e.metadata["completeness_delta"]) < 0.01 * gap + 1e-4).all()
    # A rule with a node at the baseline reads f(baseline) on the way: the same score.
    left = sc.explain(cnn, x, "integrated_gradients", target=Contrast(1, 3), steps=64,
                      baseline="zeros", quadrature="riemann_left")
    assert np.allclose(left.metadata["f_baseline"], e.metadata["f_baseline"], atol=1e-5)


def test_a_refiner_keeps_the_contrast_it_was_given(cnn):
    x = images()
    refiner = sc.Refiner(cnn, x, "integrated_gradients", target=Contrast(1, 3),
                         quadrature="riemann_right")
    refiner.explain(steps=4)
    fine = refiner.explain(steps=8)
    direct = sc.explain(cnn, x, "integrated_gradients", target=Contrast(1, 3), steps=8,
                        quadrature="riemann_right")
    assert close(fine.attribution, direct.attribution) and fine.metadata["reused_passes"] == 8
    assert close(fine.score, direct.score)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradient", "gradient_x_input"])
def test_several_targets_equal_the_calls_one_by_one(cnn, method):
    x = images(1)
    wanted = [2, Contrast(1, rather_than=3), contrast_fn(4, 0), "predicted"]
    several = sc.attribute_targets(cnn, x, wanted, method)
    for k, target in enumerate(wanted):
        one = sc.explain(cnn, x, method, target=target)
        assert close(several.attribution[k], one.attribution[0]), k
        assert close(several.scores[k], one.score[0]), k
    assert several.targets.tolist()[:3] == [2, 1, -1]
    assert several.metadata["target_value"][:2] == [2, {"target": 1, "rather_than": 3}]


def test_several_targets_by_name(shapes):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    by_name = sc.cam_for_targets(shapes, x, ["square", Contrast("star", "ring")], "hirescam")
    by_index = sc.cam_for_targets(shapes, x, [1, Contrast(4, 5)], "hirescam")
    assert torch.equal(by_name, by_index)


def test_text_takes_a_contrast(tmp_path):
    model, tokenizer = make_tiny_text_model(tmp_path)
    got = sc.attribute_text(model, tokenizer, "a fine film", "gradient", target=Contrast(1, 0))
    one = sc.attribute_text(model, tokenizer, "a fine film", "gradient", target=1)
    other = sc.attribute_text(model, tokenizer, "a fine film", "gradient", target=0)
    assert close(got.attribution, one.attribution - other.attribution)
    assert got.target == 1 and got.metadata["target_value"] == {"target": 1, "rather_than": 0}


def test_bad_targets_say_what_is_wrong(cnn, shapes):
    x = images()
    with pytest.raises(TargetError, match="Did you mean 'square'"):
        sc.attribute(shapes, torch.rand(1, 3, 64, 64), "gradient", target="sqare")
    with pytest.raises(TargetError, match="needs a model with labels"):
        sc.attribute(cnn, x, "gradient", target="cat")
    with pytest.raises(TargetError, match="got 3 targets for 2 inputs"):
        sc.attribute(cnn, x, "gradcam", target=[0, 1, 2])
    with pytest.raises(TargetError, match="out of range"):
        sc.attribute(cnn, x, "gradient", target=Contrast(1, rather_than=9))
    with pytest.raises(TargetError, match="one score per row"):
        sc.attribute(cnn, x, "gradient", target=lambda logits: logits)
    with pytest.raises(TargetError, match="one score per row"):
        sc.attribute(cnn, x, "gradcam", target=lambda logits: logits.sum())
    with pytest.raises(TargetError, match="do not depend on the logits"):
        sc.attribute(cnn, x, "gradient", target=lambda logits: logits[:, 0].detach())
    with pytest.raises(TargetError, match="not 'predicted'"):
        sc.attribute(cnn, x, "gradient", target=Contrast(1, rather_than="predicted"))
    with pytest.raises(TargetError, match="one score per row"):
        sc.attribute_targets(cnn, x[:1], [1, lambda logits: logits], "gradient")


def test_keys_are_stable_and_names_share_their_index_key(shapes):
    assert target_key(3) == target_key(3) and target_key(3) != target_key([3])
    assert target_key("square") != target_key(1)
    assert target_key("square", shapes.labels) == target_key(1, shapes.labels)
    assert target_key(Contrast("Square", "cross"), shapes.labels) == target_key(Contrast(1, 3))
    assert target_key(torch.tensor([1, 2])) == target_key([1, 2])
    fn = contrast_fn(1, 2)
    assert target_key(fn) == target_key(fn) and target_key(fn) != target_key(contrast_fn(1, 2))
    assert describe(Contrast("predicted", "dog")) == {"target": "predicted", "rather_than": "dog"}


def test_a_target_function_cannot_cross_to_the_engine_service():
    x = images()
    with pytest.raises(TargetError, match="in-process"):
        wire.encode_request("explain", "shapes-cnn", "gradient", contrast_fn(1, 2), {}, inputs=x)
    with pytest.raises(TargetError, match="in-process"):
        wire.encode_call("attribute_targets", [wire.ModelRef("shapes-cnn"), x],
                         {"targets": [1, contrast_fn(1, 2)]})
    # The client refuses before it connects: nothing listens on this port.
    with pytest.raises(TargetError, match="in-process"):
        Client("http://127.0.0.1:9").explain("shapes-cnn", x, "gradient", target=contrast_fn(1, 2))


def test_classes_names_and_contrasts_cross_the_wire():
    x = images()
    for target in (3, "square", [1, "star"], "predicted", Contrast("cat", rather_than=2),
                   Contrast([1, 2], rather_than="dog")):
        body = wire.encode_request("explain", "shapes-cnn", "gradient", target, {}, inputs=x)
        assert wire.decode_request(body)["target"] == target
    body = wire.encode_call("attribute_targets", [wire.ModelRef("shapes-cnn"), x],
                            {"targets": [1, Contrast(2, 3)]})
    assert wire.decode_request(body)["kwargs"]["targets"] == [1, Contrast(2, 3)]
    assert from_wire({"target": 1, "rather_than": 2}) == Contrast(1, 2)
    with pytest.raises(wire.WireError):
        wire.decode_request(wire.pack({"inputs": x}, {"op": "explain", "model": "m", "method": "gradient",
                                                      "target": {"function": "x"}, "params": {}}))


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_the_cli_takes_a_name_and_a_contrast(picture, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["explain", str(picture), "--model", "shapes-cnn", "--method", "gradient",
                 "--target", "square", "--rather-than", "cross", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "explained: square rather than cross" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["target"] == [1] and record["target_value"] == {"target": 1, "rather_than": 3}
    assert record["target_label"] == "square" and record["rather_than_label"] == "cross"
    assert main(["explain", str(picture), "--model", "shapes-cnn", "--target", "square",
                 "--rather-than", "crosss", "--out", str(tmp_path / "x.json"), "--device", "cpu"]) == 2
    assert "Did you mean 'cross'" in capsys.readouterr().err


def test_the_cli_help_shows_the_contrast(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "--target cat --rather-than dog" in " ".join(capsys.readouterr().out.split())
