"""Every model source on a CUDA device gives what it gives on the CPU (skipped without CUDA)."""

import copy

import pytest
import torch
from PIL import Image
from safetensors.torch import save
from test_models_hf import save_tiny_classifier

from saliency_core.models import (
    load_hf_folder,
    load_model,
    load_uploaded_weights,
    torchvision_zoo,
)
from saliency_core.models.cache import torch_checkpoint_dir
from saliency_core.training import shapes
from saliency_core.training.minilm import MeanPooledClassifier

pytestmark = [
    pytest.mark.usefixtures("temp_cache"),
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _image(size=64):
    return Image.fromarray(shapes.generate(1, seed=31, size=size).images[0])


def _same_on_both(name, image):
    # Loose tolerance: cuDNN may compute convolutions in TF32.
    cpu, gpu = load_model(name, device="cpu"), load_model(name, device="cuda")
    x = gpu.preprocess(image)
    assert x.is_cuda and next(gpu.model.parameters()).is_cuda
    assert gpu.example_input().is_cuda
    with torch.no_grad():
        torch.testing.assert_close(
            gpu.model(x).cpu(), cpu.model(cpu.preprocess(image)), atol=1e-2, rtol=1e-2
        )
    return gpu


@pytest.mark.parametrize(
    "name", ["shapes-cnn", "shapes-cnn-watermark", "shapes-cnn-random-labels"]
)
def test_bundled_image_models(name):
    gpu = _same_on_both(name, _image())
    assert load_model(name) is gpu  # the default device is the GPU when there is one


def test_zoo_and_uploaded_torchvision_models():
    torch.manual_seed(0)
    torch_checkpoint_dir().mkdir(parents=True)
    reference = torchvision_zoo.build_architecture("resnet18", 1000)
    torch.save(reference.state_dict(), torchvision_zoo.checkpoint_path("resnet18"))
    _same_on_both("resnet18", _image(256))

    small = torchvision_zoo.build_architecture("resnet18", 4)
    uploaded = load_uploaded_weights(
        "resnet18", save(small.state_dict()), 4, device="cuda"
    )
    assert next(uploaded.model.parameters()).is_cuda
    _same_on_both(uploaded.name, _image(256))


def test_text_models(tmp_path, monkeypatch):
    save_tiny_classifier(tmp_path / "allowed" / "tiny")
    monkeypatch.setenv("SALIENCY_HF_ALLOWLIST", str(tmp_path / "allowed"))
    cpu = load_hf_folder(tmp_path / "allowed" / "tiny", device="cpu")
    gpu = load_hf_folder(tmp_path / "allowed" / "tiny", device="cuda")
    batch = cpu.tokenizer("the movie was bad .", return_tensors="pt")
    with torch.no_grad():
        expected = cpu.model(**batch).logits
        got = gpu.model(**{k: v.cuda() for k, v in batch.items()}).logits.cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    # The bundled sentiment wrapper, around a tiny encoder (the real one is 90 MB).
    encoder = copy.deepcopy(gpu.model.bert)
    wrapper = MeanPooledClassifier(encoder, ["negative", "positive"]).cuda().eval()
    ids = torch.tensor([[2, 5, 6, 7, 9, 3]], device="cuda")
    mask = torch.ones_like(ids)
    with torch.no_grad():
        direct = wrapper(input_ids=ids, attention_mask=mask).logits
        embedded = wrapper(
            inputs_embeds=wrapper.get_input_embeddings()(ids), attention_mask=mask
        )
    torch.testing.assert_close(embedded.logits, direct)
