"""The coverage table (benchmarks/coverage.py -> docs/coverage.md): a representative subset is
built on every run, every family behind ``long``; and Grad-CAM on ViT, DeiT and Swin agrees with
pytorch-grad-cam given the reshape function a user would have to write for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from torch import nn

import saliency_core as sc
from benchmarks import coverage

H, W = 64, 96


def test_a_representative_subset_of_the_table_builds():
    rows = coverage.coverage(coverage.REPRESENTATIVE, ["gradcam", "attention_rollout"])
    by_name = {row.family.name: row for row in rows}
    assert by_name["hf-vit"].default_layer == "vit.layers.1.layernorm_before"
    assert by_name["hf-deit"].default_layer == "deit.layers.1.layernorm_before"
    assert by_name["timm-vit"].default_layer == "blocks.1.norm1"
    assert (
        by_name["torchvision-vit"].default_layer
        == "encoder.layers.encoder_layer_1.ln_1"
    )
    # Grad-CAM runs on every family with no layer or reshape given.
    assert all(row.cells["gradcam"].ok for row in rows), {
        r.family.name: r.cells["gradcam"].note for r in rows
    }
    # Rollout runs where attention over one set of tokens can be read, and says why elsewhere.
    ran = {row.family.name for row in rows if row.cells["attention_rollout"].ok}
    assert ran == {"hf-vit", "hf-deit", "timm-vit", "torchvision-vit"}
    assert "class token" in by_name["hf-swin"].cells["attention_rollout"].note
    table = coverage.markdown(rows)
    assert (
        "| hf-deit | Hugging Face | 64×96 | `deit.layers.1.layernorm_before` |" in table
    )
    assert "[1]" in table and "class token" in table


@pytest.mark.long
def test_every_family_is_covered():
    rows = coverage.coverage()
    assert {row.family.name for row in rows} == {f.name for f in coverage.FAMILIES}
    for row in rows:
        assert row.cells["gradcam"].ok, (row.family.name, row.cells["gradcam"].note)
        assert row.cells["gradient"].ok and row.cells["integrated_gradients"].ok
    attention = {r.family.name for r in rows if r.cells["attention_relevance"].ok}
    assert {
        "hf-vit",
        "hf-deit",
        "hf-beit",
        "hf-dinov2",
        "hf-dinov2-registers",
        "timm-vit",
        "timm-deit-distilled",
        "timm-vit-registers",
    } <= attention


# ----------------------------------------------------------------------------- pytorch-grad-cam


class Logits(nn.Module):
    """pytorch-grad-cam wants a tensor out of the model: the logits of a Hugging Face output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def _tokens_to_grid(prefix: int, rows: int, cols: int):
    """The reshape_transform a pytorch-grad-cam user writes for a ViT-style model."""

    def reshape(t):
        t = t[:, prefix:, :]
        return t.reshape(t.shape[0], rows, cols, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _theirs(model, layer, x, targets, reshape):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=Logits(model), target_layers=[layer], reshape_transform=reshape)
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    cam(input_tensor=x, targets=wanted)
    acts = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    raw = cam.get_cam_image(x, layer, wanted, acts, grads, False)
    cam.activations_and_grads.release()
    return torch.from_numpy(np.maximum(raw, 0))


def _hf(config):
    torch.manual_seed(0)
    return transformers.AutoModelForImageClassification.from_config(
        config, attn_implementation="eager"
    ).eval()


VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 64, "patch_size": 16, "image_size": (H, W), "num_labels": 5}  # fmt: skip


@pytest.mark.parametrize(("name", "build", "layer", "reshape"), [
    ("ViT", lambda: _hf(transformers.ViTConfig(**VIT)),
     lambda m: m.vit.layers[-1].layernorm_before, _tokens_to_grid(1, 4, 6)),
    ("DeiT", lambda: _hf(transformers.DeiTConfig(
        **VIT, architectures=["DeiTForImageClassificationWithTeacher"])),
     lambda m: m.deit.layers[-1].layernorm_before, _tokens_to_grid(2, 4, 6)),
    ("Swin", lambda: _hf(transformers.SwinConfig(
        embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, image_size=(H, W),
        num_labels=5)), lambda m: m.swin.layernorm, _tokens_to_grid(0, 8, 12)),
])  # fmt: skip
def test_grad_cam_agrees_with_pytorch_grad_cam_given_the_reshape(
    name, build, layer, reshape
):
    model = build()
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 3])
    ours = sc.explain(model, x, "gradcam", target=targets, upsample=False)
    theirs = _theirs(model, layer(model), x, targets, reshape)
    assert ours.metadata["layer"]  # the default layer: nothing was given
    assert ours.attribution.shape == theirs.shape
    assert float(theirs.abs().max()) > 0, name
    torch.testing.assert_close(ours.attribution, theirs.float(), rtol=1e-4, atol=1e-6)
