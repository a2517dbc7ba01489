"""torchvision models: the zoo's loading code on checkpoints the tests write into a temporary
cache, and uploaded safetensors weights for the zoo's architectures."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save

from saliency_core.errors import ModelUnavailableError, SaliencyError
from saliency_core.models import (
    available_models,
    load_model,
    load_uploaded_weights,
    parse_labels,
    torchvision_zoo,
)
from saliency_core.models.cache import torch_checkpoint_dir

pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py


def _random_resnet18(num_classes=1000, seed=0):
    torch.manual_seed(seed)
    return torchvision_zoo.build_architecture("resnet18", num_classes).eval()


def _photo():
    gradient = torch.linspace(0, 255, 300).to(torch.uint8)
    pixels = torch.stack([gradient.expand(200, 300), gradient.flip(0).expand(200, 300),
                          torch.full((200, 300), 90, dtype=torch.uint8)], dim=-1)  # fmt: skip
    return Image.fromarray(pixels.numpy())


def test_checkpoint_file_name_is_the_one_torch_hub_downloads(temp_cache):
    path = torchvision_zoo.checkpoint_path("resnet18")
    assert (
        path == temp_cache / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    )
    assert (
        path.name == torchvision_zoo.official_weights("resnet18").url.rsplit("/", 1)[-1]
    )


def test_resnet18_loads_from_the_cache_with_official_preprocessing(temp_cache):
    reference = _random_resnet18()
    torch_checkpoint_dir().mkdir(parents=True)
    # torch.save of a plain state dict, exactly the format the official .pth files use.
    torch.save(reference.state_dict(), torchvision_zoo.checkpoint_path("resnet18"))
    info = {m.name: m for m in available_models()}["resnet18"]
    assert info.present and info.source == "zoo" and info.task == "image"
    assert info.size_bytes == torchvision_zoo.checkpoint_path("resnet18").stat().st_size

    loaded = load_model("resnet18", device="cpu")
    assert (
        loaded.kind == "image" and loaded.source == "zoo" and not loaded.model.training
    )
    assert len(loaded.labels) == 1000 and loaded.labels[0] == "tench"
    assert loaded.input_size == (224, 224) and loaded.default_layer == "layer4"
    assert loaded.normalization == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    x = loaded.preprocess(_photo())
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference(x))
    assert loaded.unpreprocess(x).shape == (224, 224, 3)


def test_missing_checkpoint_names_the_fetch_command():
    info = {m.name: m for m in available_models()}["vgg16"]
    assert not info.present and info.size_bytes > 500e6  # the documented download size
    with pytest.raises(
        ModelUnavailableError, match="python -m saliency_core fetch vgg16"
    ):
        load_model("vgg16", device="cpu")


def test_a_corrupt_checkpoint_is_reported_not_crashed():
    torch_checkpoint_dir().mkdir(parents=True)
    torchvision_zoo.checkpoint_path("resnet18").write_bytes(b"half a download")
    with pytest.raises(
        ModelUnavailableError,
        match="Delete the file and run: python -m saliency_core fetch resnet18",
    ):
        load_model("resnet18", device="cpu")


def test_checkpoints_are_not_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    torch_checkpoint_dir().mkdir(parents=True)
    torch.save({"x": Boom()}, torchvision_zoo.checkpoint_path("resnet18"))
    with pytest.raises(ModelUnavailableError):
        load_model("resnet18", device="cpu")


@pytest.mark.slow
def test_default_layers_exist_in_every_architecture():
    for arch in torchvision_zoo.ARCHITECTURES.values():
        model = torchvision_zoo.build_architecture(arch.name, 10)
        assert arch.default_layer in dict(model.named_modules()), arch.name


def test_old_densenet_keys_are_renamed():
    old = {
        "features.denseblock1.denselayer1.norm.1.weight": 1,
        "features.denseblock1.denselayer12.conv.2.weight": 2,
        "features.norm5.bias": 3,
    }
    assert torchvision_zoo.rename_legacy_keys("densenet121", old) == {
        "features.denseblock1.denselayer1.norm1.weight": 1,
        "features.denseblock1.denselayer12.conv2.weight": 2,
        "features.norm5.bias": 3,
    }
    assert torchvision_zoo.rename_legacy_keys("resnet18", old) == old


# ------------------------------------------------------------------------ uploaded weights


def test_uploaded_weights_become_a_model(temp_cache):
    reference = _random_resnet18(num_classes=3, seed=1)
    data = save(reference.state_dict())
    loaded = load_uploaded_weights(
        "resnet18", data, 3, labels=["cat", "dog", "fox"], device="cpu"
    )
    assert loaded.source == "uploaded" and loaded.labels == ["cat", "dog", "fox"]
    assert loaded.name.startswith("resnet18-upload-")
    x = loaded.preprocess(_photo())
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference(x))
    assert load_model(loaded.name, device="cpu") is loaded
    info = {m.name: m for m in available_models()}[loaded.name]
    assert info.source == "uploaded" and info.present and info.task == "image"
    # The same bytes again are the same model.
    assert (
        load_uploaded_weights(
            "resnet18", data, 3, labels=["cat", "dog", "fox"], device="cpu"
        ).name
        == loaded.name
    )


def test_upload_with_a_chosen_name_and_default_labels():
    state = {
        "module." + k: v
        for k, v in _random_resnet18(num_classes=2).state_dict().items()
    }
    # A class count from a widget or a NumPy array is fine as long as it is an integer.
    loaded = load_uploaded_weights(
        "resnet18", save(state), np.int64(2), name=" my-net ", device="cpu"
    )
    assert loaded.name == "my-net" and loaded.labels == ["class 0", "class 1"]
    assert load_model("my-net", device="cpu") is loaded
    with pytest.raises(SaliencyError, match="taken by a built-in"):
        load_uploaded_weights("resnet18", save(state), 2, name="resnet50")


def test_wrong_class_count_lists_the_mismatch():
    data = save(_random_resnet18(num_classes=1000).state_dict())
    with pytest.raises(
        SaliencyError,
        match=r"wrong shape \(fc.weight is \[1000, 512\] in the file, \[10, 512\]",
    ):
        load_uploaded_weights("resnet18", data, 10)


def test_weights_of_another_architecture_are_refused_briefly():
    data = save(_random_resnet18(num_classes=10).state_dict())
    with pytest.raises(SaliencyError) as error:
        load_uploaded_weights("mobilenet_v3_large", data, 10)
    message = str(error.value)
    assert "missing" in message and "unexpected" in message and "more" in message
    assert len(message) < 1000


def test_files_that_are_not_safetensors_are_refused_without_unpickling():
    buffer = io.BytesIO()
    torch.save(_random_resnet18(num_classes=2).state_dict(), buffer)
    for data in (buffer.getvalue(), b"", b"\x00" * 64, b"hello world, not weights"):
        with pytest.raises(SaliencyError, match="not a readable safetensors file"):
            load_uploaded_weights("resnet18", data, 2)
    with pytest.raises(SaliencyError, match="no tensors"):
        load_uploaded_weights("resnet18", save({}), 2)


def test_bad_upload_arguments_are_refused():
    data = save(_random_resnet18(num_classes=2).state_dict())
    with pytest.raises(SaliencyError, match="one of: resnet18"):
        load_uploaded_weights("alexnet", data, 2)
    for count in (0, 2.5, "2", True):
        with pytest.raises(SaliencyError, match="positive integer"):
            load_uploaded_weights("resnet18", data, count)
    with pytest.raises(SaliencyError, match="file's bytes"):
        load_uploaded_weights("resnet18", "model.safetensors", 2)
    with pytest.raises(SaliencyError, match="3 names but the model has 2 classes"):
        load_uploaded_weights("resnet18", data, 2, labels=["a", "b", "c"])


def test_labels_files_in_every_accepted_form():
    assert parse_labels(b"cat\ndog\n\n fox \n") == ["cat", "dog", "fox"]
    assert parse_labels('["cat", "dog"]') == ["cat", "dog"]
    assert parse_labels(b'{"1": "dog", "0": "cat"}') == ["cat", "dog"]
    for bad in ('{"0": "cat", "2": "dog"}', '{"a": "cat"}', "[1, 2", " \n\n", "[]"):
        with pytest.raises(SaliencyError):
            parse_labels(bad)
