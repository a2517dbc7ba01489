"""timm models by name (``timm:<name>``): fetched from the hub (a local mirror here) or given as
.safetensors in the cache, built by timm and loaded strictly, then explained like any model."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save, save_file
from support.hub_mirror import HubMirror

import saliency_core as sc
from saliency_core.errors import ModelUnavailableError
from saliency_core.models import available_models, load_model, timm_zoo
from saliency_core.models.cache import cache_root

NAME = "timm:test_resnet.r160_in1k"  # a tiny ReLU network timm keeps for tests


pytestmark = pytest.mark.usefixtures("temp_cache", "native_guided_rule")  # tests/conftest.py


def reference(arch="test_resnet.r160_in1k", num_classes=1000, seed=0):
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes).eval()


def photo() -> Image.Image:
    pixels = torch.linspace(0, 255, 200 * 240 * 3).reshape(200, 240, 3).to(torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_a_timm_model_fetched_from_the_hub_loads_and_explains(monkeypatch):
    network = reference()
    config = {"architecture": "test_resnet", "num_classes": 1000,
              "pretrained_cfg": {"input_size": [3, 160, 160], "crop_pct": 0.95}}
    with HubMirror() as mirror:
        mirror.repos["timm/test_resnet.r160_in1k"] = {
            "config.json": json.dumps(config).encode(),
            "model.safetensors": save({k: v.contiguous() for k, v in network.state_dict().items()}),
            "pytorch_model.bin": b"not fetched",
        }
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        assert NAME not in {m.name for m in available_models()}
        with pytest.raises(ModelUnavailableError, match=f"python -m saliency_core fetch {NAME}"):
            load_model(NAME, "cpu")
        timm_zoo.fetch(NAME)
    info = {m.name: m for m in available_models()}[NAME]
    assert info.present and info.source == "zoo" and info.task == "image"
    loaded = load_model(NAME, "cpu")
    assert loaded.input_size == (160, 160) and len(loaded.labels) == 1000
    assert loaded.labels[0] == "tench"
    x = loaded.preprocess(photo())
    assert x.shape == (1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), network(x))
    for method, params in (("gradcam", {}), ("guided_backprop", {}),
                           ("integrated_gradients", {"steps": 4})):
        assert torch.isfinite(sc.attribute(loaded, x, method, **params)).all()


def test_weights_given_as_safetensors_in_the_cache(temp_cache):
    network = reference("test_efficientnet.r160_in1k", num_classes=7, seed=3)
    folder = cache_root() / "timm"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()},
              str(folder / "test_efficientnet.r160_in1k.safetensors"))
    loaded = load_model("timm:test_efficientnet.r160_in1k", "cpu")
    assert loaded.labels == [f"class {i}" for i in range(7)]
    x = loaded.preprocess(photo())
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), network(x))


def test_unknown_and_damaged_timm_weights_get_clear_messages(temp_cache):
    with pytest.raises(ModelUnavailableError, match="no pretrained model called 'no_such_net'"):
        load_model("timm:no_such_net", "cpu")
    folder = cache_root() / "timm"
    folder.mkdir(parents=True)
    (folder / "test_resnet.r160_in1k.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match="could not be loaded"):
        load_model(NAME, "cpu")


def test_bring_your_own_weights_for_a_timm_architecture():
    from saliency_core.models import load_uploaded_weights, unregister_uploaded

    network = reference(num_classes=3, seed=5)
    data = save({k: v.contiguous() for k, v in network.state_dict().items()})
    try:
        loaded = load_uploaded_weights(NAME, data, 3, labels=["cat", "dog", "bird"],
                                       name="my-timm-net")
        assert loaded.labels == ["cat", "dog", "bird"] and loaded.source == "uploaded"
        x = loaded.preprocess(photo())
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), network(x))
        with pytest.raises(sc.SaliencyError, match="does not fit"):
            load_uploaded_weights(NAME, data, 5, name="wrong-classes")
    finally:
        unregister_uploaded("my-timm-net")
