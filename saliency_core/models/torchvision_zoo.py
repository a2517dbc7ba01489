"""torchvision ImageNet classifiers with their official weights, preprocessing and class names.

Loading never downloads: the checkpoint must already be in the cache (``fetch`` puts it there
with torch.hub's own downloader), otherwise ModelUnavailableError names the fetch command. The
architecture is built empty and the server-side checkpoint read with ``weights_only=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from ..errors import ModelUnavailableError
from .base import LoadedModel
from .cache import fetch_command, torch_checkpoint_dir


@dataclass(frozen=True)
class ZooArchitecture:
    name: str
    default_layer: (
        str  # the last spatial feature block, what CAM methods should look at
    )
    description: str


ARCHITECTURES = {
    arch.name: arch
    for arch in [
        ZooArchitecture("resnet18", "layer4", "ResNet-18, 11.7M parameters"),
        ZooArchitecture("resnet50", "layer4", "ResNet-50, 25.6M parameters"),
        ZooArchitecture(
            "vgg16", "features.29", "VGG-16, 138M parameters, plain ReLU stack"
        ),
        ZooArchitecture(
            "densenet121", "features.norm5", "DenseNet-121, 8.0M parameters"
        ),
        ZooArchitecture(
            "mobilenet_v3_large", "features.16", "MobileNetV3-Large, 5.5M parameters"
        ),
        ZooArchitecture(
            "efficientnet_b0", "features.8", "EfficientNet-B0, 5.3M parameters"
        ),
        ZooArchitecture(
            "convnext_tiny", "features.7", "ConvNeXt-Tiny, 28.6M parameters"
        ),
        # Transformers: token [N, 197, 768] (ViT) and channels-last [N, 7, 7, 768] (Swin)
        # outputs; CAM code must reshape them.
        ZooArchitecture(
            "vit_b_16",
            "encoder.layers.encoder_layer_11.ln_1",
            "ViT-B/16, 86.6M parameters",
        ),
        ZooArchitecture("swin_t", "features.7", "Swin-T, 28.3M parameters"),
    ]
}

# DenseNet checkpoints predate a module rename: "denselayer1.norm.1.weight" is now
# "denselayer1.norm1.weight".
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def official_weights(arch: str):
    """The architecture's default (best official) ImageNet weights enum member."""
    return tv_models.get_model_weights(arch).DEFAULT


def checkpoint_path(arch: str) -> Path:
    url = official_weights(arch).url
    return torch_checkpoint_dir() / url.rsplit("/", 1)[-1]


def is_present(arch: str) -> bool:
    return checkpoint_path(arch).is_file()


def size_bytes(arch: str) -> int:
    """On-disk size if fetched, else the download size torchvision documents."""
    path = checkpoint_path(arch)
    if path.is_file():
        return path.stat().st_size
    return int(official_weights(arch).meta.get("_file_size", 0) * 1024 * 1024)


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    return tv_models.get_model(arch, weights=None, num_classes=num_classes)


def rename_legacy_keys(arch: str, state_dict: dict) -> dict:
    if not arch.startswith("densenet"):
        return state_dict
    renamed = {}
    for key, value in state_dict.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def image_loaded_model(
    name: str, arch: str, model: nn.Module, labels: list[str], source: str, card: dict
) -> LoadedModel:
    """Wrap a torchvision classifier with the official preprocessing of its architecture."""
    transform = official_weights(arch).transforms()
    crop = transform.crop_size[0]
    device = next(model.parameters()).device

    def preprocess(image) -> torch.Tensor:
        return transform(image.convert("RGB")).unsqueeze(0).to(device)

    return LoadedModel(
        name=name,
        kind="image",
        model=model.eval(),
        labels=labels,
        preprocess=preprocess,
        normalization=(list(transform.mean), list(transform.std)),
        input_size=(crop, crop),
        default_layer=ARCHITECTURES[arch].default_layer,
        source=source,
        card=card,
    )


def load(arch: str, device: torch.device) -> LoadedModel:
    path = checkpoint_path(arch)
    if not path.is_file():
        raise ModelUnavailableError(
            f"The weights of {arch} are not in the local cache ({path}). On a machine with "
            f"internet access run: {fetch_command(arch)}"
        )
    weights = official_weights(arch)
    categories = list(weights.meta["categories"])
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model = build_architecture(arch, len(categories))
        model.load_state_dict(rename_legacy_keys(arch, state_dict))
    # A truncated or foreign file: say which and how to recover.
    except Exception as exc:
        raise ModelUnavailableError(
            f"The cached weights of {arch} at {path} could not be loaded ({exc.__class__.__name__}:"
            f" {str(exc)[:300]}). Delete the file and run: {fetch_command(arch)}"
        ) from exc
    card = {
        "trained_on": "ImageNet-1k",
        "weights": str(weights),
        "url": weights.url,
        "metrics": weights.meta.get("_metrics", {}),
        "parameters": weights.meta.get("num_params"),
        "recipe": weights.meta.get("recipe"),
    }
    return image_loaded_model(arch, arch, model.to(device), categories, "zoo", card)


def fetch(arch: str, progress: bool = True) -> Path:
    """Download the official checkpoint into the cache with torch.hub (hash checked)."""
    target_dir = torch_checkpoint_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    torch.hub.load_state_dict_from_url(
        official_weights(arch).url,
        model_dir=str(target_dir),
        map_location="cpu",
        progress=progress,
        check_hash=True,
        weights_only=True,
    )
    return checkpoint_path(arch)
