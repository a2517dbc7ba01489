"""Layer geometry read from the model, not guessed: which tokens are patches, the patch grid of
a non-square input, channels-last stages, the default CAM layer of class-token transformers, and
a clear message naming good layers when a layer cannot be laid over the image."""

from __future__ import annotations

import pytest
import timm
import torch
import transformers
from torchvision import models as tv_models

import saliency_core as sc
from saliency_core.engine.geometry import Geometry, geometry_of, grid_shape, to_spatial
from saliency_core.engine.layers import candidate_layers, default_layer
from saliency_core.errors import LayerError

H, W = 32, 48  # a non-square input: a 4 x 6 grid of 8-pixel patches


def tiny_vit(**extra):
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=1,
        img_size=(H, W),
        patch_size=8,
        depth=1,
        embed_dim=16,
        num_heads=2,
        **extra,
    ).eval()


def hf_model(config_class, **extra):
    torch.manual_seed(0)
    config = config_class(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=8,
        num_labels=3,
        **extra,
    )
    return transformers.AutoModelForImageClassification.from_config(
        config, attn_implementation="eager"
    ).eval()


def numbered_tokens(prefix: int, rows: int, cols: int) -> torch.Tensor:
    """[1, prefix + rows*cols, 2] tokens whose value is their own index."""
    t = torch.arange(prefix + rows * cols, dtype=torch.float32)
    return torch.stack([t, t], dim=-1)[None]


@pytest.mark.parametrize(
    ("name", "build", "prefix", "hw"),
    [
        ("ViT", lambda: hf_model(transformers.ViTConfig, image_size=(H, W)), 1, (H, W)),
        (
            "DeiT",
            lambda: hf_model(
                transformers.DeiTConfig,
                image_size=(H, W),
                architectures=["DeiTForImageClassificationWithTeacher"],
            ),
            2,
            (H, W),
        ),
        (
            "DINOv2 with registers",
            lambda: hf_model(
                transformers.Dinov2WithRegistersConfig,
                image_size=32,
                num_register_tokens=4,
            ),
            5,
            (32, 32),
        ),
        ("timm ViT", tiny_vit, 1, (H, W)),
    ],
)
def test_leading_tokens_come_from_the_model(name, build, prefix, hw):
    model = build()
    geometry = geometry_of(model)
    assert geometry.known and geometry.prefix_tokens == prefix, name
    rows, cols = hw[0] // 8, hw[1] // 8
    grid = to_spatial(numbered_tokens(prefix, rows, cols), hw, geometry)
    assert grid.shape == (1, 2, rows, cols)
    # Row-major patches after the class/distillation/register tokens: cell (r, c) is token
    # prefix + r * cols + c.
    expected = prefix + torch.arange(rows * cols, dtype=torch.float32).view(rows, cols)
    assert torch.equal(grid[0, 0], expected)


def test_non_square_grids_follow_the_input():
    assert grid_shape(14 * 20, (224, 320)) == (14, 20)
    assert grid_shape(20 * 14, (320, 224)) == (20, 14)
    assert grid_shape(7 * 7, (224, 224)) == (7, 7)
    # An unknown model: the class token is found and the grid still follows the input.
    assert to_spatial(numbered_tokens(1, 14, 20), (224, 320)).shape == (1, 2, 14, 20)
    # Channels-last stages of a non-square input are recognised by their shape.
    assert to_spatial(torch.zeros(1, 7, 10, 96), (224, 320)).shape == (1, 96, 7, 10)
    assert to_spatial(torch.zeros(1, 96, 7, 10), (224, 320)).shape == (1, 96, 7, 10)


@pytest.mark.parametrize("cell", [(0, 5), (3, 1), (2, 4)])
def test_a_planted_patch_lands_in_its_cell(cell):
    """A ViT whose only non-zero patch is ``cell``: with the blocks reduced to the identity and
    the embedding without bias or position, the layer's only non-zero token is that patch's,
    so HiResCAM at layer resolution must light exactly that cell of the 4 x 6 grid."""
    model = tiny_vit(global_pool="avg")
    with torch.no_grad():
        for p in model.blocks.parameters():
            p.zero_()
        model.patch_embed.proj.bias.zero_()
        model.pos_embed.zero_()
    r, c = cell
    x = torch.zeros(1, 3, H, W)
    x[:, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = torch.rand(
        1, 3, 8, 8, generator=torch.Generator().manual_seed(1)
    )
    maps = sum(
        sc.attribute(
            model,
            x,
            "hirescam",
            layer="blocks.0",
            upsample=False,
            target=lambda logits, s=sign: s * logits[:, 0],
        )
        for sign in (1.0, -1.0)
    )
    assert maps.shape == (1, H // 8, W // 8)
    lit = (maps[0].abs() > 1e-8).nonzero().tolist()
    assert lit == [[r, c]]


def test_class_token_transformers_default_to_the_last_blocks_norm():
    hf_vit = hf_model(transformers.ViTConfig, image_size=(H, W))
    x = torch.rand(1, 3, H, W)
    assert default_layer(hf_vit, x) == "vit.layers.1.layernorm_before"
    assert default_layer(tiny_vit(), x) == "blocks.0.norm1"
    tv_vit = tv_models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=3,
    ).eval()
    assert geometry_of(tv_vit).prefix_tokens == 1
    assert (
        default_layer(tv_vit, torch.rand(1, 3, 32, 32))
        == "encoder.layers.encoder_layer_1.ln_1"
    )
    # The default layer is listed first among the candidates.
    assert candidate_layers(hf_vit, x)[0][0] == "vit.layers.1.layernorm_before"


def test_deit_grad_cam_is_not_flat():
    model = hf_model(
        transformers.DeiTConfig,
        image_size=(H, W),
        architectures=["DeiTForImageClassificationWithTeacher"],
    )
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    cam = sc.attribute(model, x, "hirescam", upsample=False)
    assert cam.shape == (2, 4, 6)
    assert bool((cam.flatten(1).std(1) > 0).all())


def test_torchvision_swin_is_channels_last_on_any_input():
    model = tv_models.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[4, 4],
        num_classes=3,
    ).eval()
    assert geometry_of(model) == Geometry("torchvision", 0, True)
    x = torch.rand(1, 3, 64, 96)
    assert (
        default_layer(model, x) == "permute"
    )  # the last stage, back to channels-first
    cam = sc.attribute(model, x, "gradcam", upsample=False)
    assert cam.shape == (1, 8, 12)
    assert sc.attribute(
        model, x, "gradcam", layer="features.3", upsample=False
    ).shape == (1, 8, 12)


def test_a_layer_off_the_grid_names_the_good_ones():
    model = hf_model(transformers.ViTConfig, image_size=(H, W))
    with pytest.raises(
        LayerError,
        match="layers that map onto the image: "
        r"vit\.layers\.1\.layernorm_before",
    ):
        sc.attribute(model, torch.rand(1, 3, H, W), "gradcam", layer="classifier")


def test_unknown_models_keep_the_square_guess():
    assert to_spatial(numbered_tokens(1, 14, 14)).shape == (1, 2, 14, 14)
    with pytest.raises(LayerError, match="patch grid"):
        to_spatial(torch.zeros(1, 3, 2), (224, 224))
