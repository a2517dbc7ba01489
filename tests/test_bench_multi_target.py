"""Several target classes from one forward pass and one batched backward."""

import pytest
import torch
from support.engine_models import images, max_rel_diff, small_cnn, tiny_vit

import saliency_core as sc
from saliency_core.errors import MethodNotApplicableError, ParameterError, TargetError
from saliency_core.harness.multi_target import attribute_targets, cam_for_targets


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus", "hirescam", "layercam", "xgradcam",
                                    "gradient", "gradient_x_input"])
def test_each_map_equals_a_separate_call(method):
    model, x = small_cnn(), images(1)
    r = attribute_targets(model, x, [0, 3, 4], method)
    ref = torch.cat([sc.attribute(model, x, method, target=t) for t in (0, 3, 4)])
    assert r.attribution.shape == ref.shape
    assert max_rel_diff(r.attribution, ref) < 1e-5
    assert r.metadata["forwards"] == 1 and r.metadata["backward_batched"]
    assert r.targets.tolist() == [0, 3, 4]


def test_top_k_and_layer_resolution():
    model, x = small_cnn(), images(1)
    r = attribute_targets(model, x, method="gradcam", top_k=3, layer="features.5", upsample=False)
    with torch.no_grad():
        logits = model(x)[0]
    assert r.targets.tolist() == logits.topk(3).indices.tolist()
    assert torch.allclose(r.scores, logits.topk(3).values, atol=1e-5)
    assert r.attribution.shape == (3, 8, 8)
    assert r.metadata["layer"] == "features.5"
    assert cam_for_targets(model, x, [1], layer="features.5").shape == (1, 16, 16)


def test_transformer_layers():
    model = tiny_vit()
    x = torch.randn(1, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    r = attribute_targets(model, x, [1, 2], "gradcam", layer=layer)
    ref = torch.cat([sc.attribute(model, x, "gradcam", target=t, layer=layer) for t in (1, 2)])
    assert max_rel_diff(r.attribution, ref) < 1e-5


def test_falls_back_to_one_backward_per_class(monkeypatch):
    model, x = small_cnn(), images(1)
    real_grad = torch.autograd.grad

    def no_vmap(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented (simulated)")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    r = attribute_targets(model, x, [0, 2], "gradcam")
    monkeypatch.undo()
    assert not r.metadata["backward_batched"]
    ref = torch.cat([sc.attribute(model, x, "gradcam", target=t) for t in (0, 2)])
    assert max_rel_diff(r.attribution, ref) < 1e-5


def test_model_untouched_and_errors():
    model, x = small_cnn(), images(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attribute_targets(model, x, [1, 2], "gradient")
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    with pytest.raises(MethodNotApplicableError):
        attribute_targets(model, x, [1], "integrated_gradients")
    with pytest.raises(ParameterError, match="one input"):
        attribute_targets(model, images(2), [1], "gradcam")
    with pytest.raises(TargetError, match="out of range"):
        attribute_targets(model, x, [1, 9], "gradcam")
    with pytest.raises(ParameterError, match="top_k"):
        attribute_targets(model, x, method="gradcam", top_k=0)
    with pytest.raises(ParameterError, match="either"):
        attribute_targets(model, x, [1], "gradcam", top_k=2)
