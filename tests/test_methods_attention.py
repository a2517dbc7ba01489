"""Attention rollout and attention relevance agree with each paper's formula written here, on
the attention maps the Hugging Face model itself returns (``output_attentions=True``); models
with fused attention are switched for the call and restored; models whose attention cannot be
read get a message saying what to use instead."""

from __future__ import annotations

import pytest
import timm
import torch
import transformers
from torchvision import models as tv_models

import saliency_core as sc
from saliency_core.errors import MethodNotApplicableError
from saliency_core.methods import get, with_capability
from saliency_core.methods.attention import attention_problem

H, W = 32, 48  # non-square: a 4 x 6 patch grid


def hf_vit(attn="eager", **extra):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
        image_size=(H, W), patch_size=8, num_labels=4, **extra,
    )  # fmt: skip
    return transformers.AutoModelForImageClassification.from_config(
        config, attn_implementation=attn
    ).eval()


def inputs(n=2):
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(3))


def paper_rollout(attentions):
    """Abnar & Zuidema: Â = 0.5·A + 0.5·I per layer (heads averaged), product over layers."""
    joint = None
    for a in attentions:
        a = a.mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1])
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else torch.bmm(a, joint)
    return joint[:, 0, 1:].reshape(-1, H // 8, W // 8)


def paper_relevance(attentions, gradients):
    """Chefer et al. eq. (5)-(6): Ā = E_h[(∇A ⊙ A)⁺]; R ← R + Ā·R from R = I."""
    n, t = attentions[0].shape[0], attentions[0].shape[-1]
    r = torch.eye(t).repeat(n, 1, 1)
    for a, g in zip(attentions, gradients, strict=True):
        r = r + torch.bmm((g * a).clamp(min=0).mean(dim=1), r)
    return r[:, 0, 1:].reshape(-1, H // 8, W // 8)


def test_rollout_is_the_papers_formula():
    model, x = hf_vit(), inputs()
    with torch.no_grad():
        attentions = model(x, output_attentions=True).attentions
    assert len(attentions) == 3
    ours = sc.attribute(model, x, "attention_rollout", upsample=False)
    torch.testing.assert_close(ours, paper_rollout(attentions))
    assert sc.attribute(model, x, "attention_rollout").shape == (2, H, W)


def test_relevance_is_the_papers_formula_for_the_target():
    model, x = hf_vit(), inputs()
    target = torch.tensor([1, 3])
    out = model(x, output_attentions=True)
    score = out.logits.gather(1, target[:, None]).sum()
    gradients = torch.autograd.grad(score, out.attentions)
    expected = paper_relevance([a.detach() for a in out.attentions], gradients)
    ours = sc.attribute(model, x, "attention_relevance", target=target, upsample=False)
    torch.testing.assert_close(ours, expected)
    # Class-specific, unlike rollout.
    other = sc.attribute(model, x, "attention_relevance", target=0, upsample=False)
    assert not torch.allclose(other, ours)


def test_a_model_loaded_with_sdpa_is_switched_for_the_call_and_restored():
    model, x = hf_vit(attn="sdpa"), inputs(1)
    reference = sc.attribute(hf_vit(), x, "attention_rollout", upsample=False)
    torch.testing.assert_close(
        sc.attribute(model, x, "attention_rollout", upsample=False), reference
    )
    assert model.config._attn_implementation == "sdpa"


def test_timm_fused_attention_is_switched_off_for_the_call_only():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3,
                              img_size=(H, W), patch_size=8, depth=2, embed_dim=16,
                              num_heads=2).eval()  # fmt: skip
    for block in model.blocks:
        block.attn.fused_attn = True
    x = inputs(1)
    with torch.no_grad():
        before = model(x)
    rollout = sc.attribute(model, x, "attention_rollout", upsample=False)
    relevance = sc.attribute(model, x, "attention_relevance", upsample=False)
    assert rollout.shape == relevance.shape == (1, 4, 6)
    assert all(block.attn.fused_attn for block in model.blocks)
    assert not any(m._forward_hooks for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    # Rollout rows are distributions: the class row over all tokens sums to 1, so the patches'
    # share is at most 1.
    assert float(rollout.sum()) <= 1.0 + 1e-5


def test_torchvision_vit_rollout_runs_and_relevance_says_why_not():
    model = tv_models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                        hidden_dim=16, mlp_dim=32, num_classes=3).eval()  # fmt: skip
    x = torch.rand(1, 3, 32, 32)
    assert sc.attribute(model, x, "attention_rollout", upsample=False).shape == (
        1,
        4,
        4,
    )
    with pytest.raises(
        MethodNotApplicableError, match="attention rollout and Grad-CAM work"
    ):
        sc.attribute(model, x, "attention_relevance")
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_models_without_readable_attention_get_a_clear_message():
    swin = transformers.AutoModelForImageClassification.from_config(
        transformers.SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[2, 2], image_size=32,
                                patch_size=4, window_size=4, num_labels=3),
        attn_implementation="eager").eval()  # fmt: skip
    with pytest.raises(MethodNotApplicableError, match="no class token"):
        sc.attribute(swin, torch.rand(1, 3, 32, 32), "attention_rollout")
    assert "class token" in attention_problem(swin)  # so the pages do not offer it
    cnn = sc.load_model("shapes-cnn", "cpu")
    assert "Grad-CAM" in attention_problem(cnn.model)
    with pytest.raises(MethodNotApplicableError, match="no attention layers"):
        sc.attribute(cnn, torch.rand(1, 3, 64, 64), "attention_rollout")


def test_registered_like_every_method():
    assert {"attention_rollout", "attention_relevance"} <= set(
        with_capability("needs_attention")
    )
    spec = get("attention_relevance").spec
    assert spec.family == "cam" and spec.reference.startswith("Chefer")
    assert sc.get_method("attention_rollout").label == "Attention rollout"


def test_pages_are_offered_what_runs_on_the_model():
    from saliency_core.methods import applicable_to

    vit_methods = applicable_to(hf_vit())
    assert {"attention_rollout", "attention_relevance", "gradcam"} <= set(vit_methods)
    # GELU blocks: the ReLU-rule methods would refuse when run, so they are not offered.
    assert "guided_backprop" not in vit_methods and "guided_gradcam" not in vit_methods
    cnn_methods = applicable_to(sc.load_model("shapes-cnn", "cpu").model)
    assert "guided_backprop" in cnn_methods and "attention_rollout" not in cnn_methods
