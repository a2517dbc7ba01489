"""Hugging Face image classifiers as ``hf:<repo>``, for real: a local mirror serves a tiny ViT the
test writes (config, safetensors, preprocessor config), HF_ENDPOINT points at it, the CLI's
fetch downloads it, and the workbench loads it with the model's own preprocessing and class
names and explains it with no settings. Also: an allow-listed folder, and a missing model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from support.hub_mirror import HubMirror

import saliency_core as sc
from saliency_core.cli import main as cli_main
from saliency_core.errors import ModelUnavailableError
from saliency_core.models import available_models, forget_loaded, load_model
from saliency_core.models.hf_image import ImagePreprocessing

pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py

REPO = "tiny-org/vit-tiny"
NAME = "hf:" + REPO
LABELS = {0: "circle", 1: "square", 2: "triangle"}
PROCESSOR = {
    "do_resize": True,
    "size": {"height": 32, "width": 48},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.4, 0.3],
    "image_std": [0.2, 0.25, 0.3],
    "image_processor_type": "ViTImageProcessor",
}


def save_tiny_vit(folder):
    """A 2-block ViT on a non-square 32 x 48 input, saved as the hub holds it."""
    import json

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=(32, 48), patch_size=8, num_labels=3, id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return model


def picture(seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


def test_a_hub_image_classifier_is_fetched_through_the_mirror_and_explained(
    tmp_path, monkeypatch, capsys
):
    upstream = tmp_path / "upstream"
    original = save_tiny_vit(upstream)
    files = {p.name: p.read_bytes() for p in upstream.iterdir()}
    files["README.md"] = b"# not needed\n"
    with HubMirror() as mirror:
        mirror.repos[REPO] = files
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        assert NAME not in [m.name for m in available_models()]
        assert cli_main(["fetch", NAME]) == 0
    listed = {m.name: m for m in available_models()}
    assert listed[NAME].present and listed[NAME].task == "image"
    forget_loaded()
    loaded = load_model(NAME, "cpu")
    assert loaded.labels == ["circle", "square", "triangle"]
    assert loaded.input_size == (32, 48)
    assert loaded.model.config._attn_implementation == "eager"
    # Preprocessing follows the processor config as transformers' own processor does.
    image = picture()
    x = loaded.preprocess(image)
    reference = transformers.AutoImageProcessor.from_pretrained(upstream)(
        image, return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(x, reference, atol=2e-2, rtol=0)
    assert loaded.normalization == (PROCESSOR["image_mean"], PROCESSOR["image_std"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).logits, original(x).logits)
    # Explained with no settings: the default layer is known, the map covers the input.
    explanation = sc.explain(loaded, x, "gradcam")
    assert explanation.metadata["layer"] == "vit.layers.1.layernorm_before"
    assert explanation.attribution.shape == (1, 32, 48)
    assert float(explanation.attribution.std()) > 0


def test_an_allow_listed_folder_is_an_image_model(tmp_path, monkeypatch):
    folder = tmp_path / "served" / "my-vit"
    save_tiny_vit(folder)
    monkeypatch.setenv("SALIENCY_HF_ALLOWLIST", str(tmp_path / "served"))
    listed = {m.name: m for m in available_models()}
    assert listed["folder:my-vit"].task == "image"
    loaded = load_model("folder:my-vit", "cpu")
    assert loaded.task == "image" and loaded.labels[2] == "triangle"
    assert sc.attribute(loaded, loaded.preprocess(picture()), "gradcam").shape == (
        1,
        32,
        48,
    )


def test_a_missing_hub_model_says_how_to_fetch_it():
    with pytest.raises(
        ModelUnavailableError, match="python -m saliency_core fetch hf:nobody/none"
    ):
        load_model("hf:nobody/none", "cpu")


def test_shortest_edge_and_crop_pct_configs():
    image = Image.new("RGB", (300, 200))
    # DINOv2's processor: shortest edge 256, centre crop 224.
    dino = ImagePreprocessing(
        {
            "size": {"shortest_edge": 256},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
        }
    )
    assert dino(image).shape == (1, 3, 224, 224) and dino.input_size == (224, 224)
    # ConvNeXt's: below 384, resize to 224 / 0.875 and crop 224.
    convnext = ImagePreprocessing({"size": {"shortest_edge": 224}, "crop_pct": 0.875})
    assert convnext(image).shape == (1, 3, 224, 224)
