"""torchvision ImageNet classifiers with their official weights, preprocessing and class names.

Loading never downloads: the checkpoint must already be in the cache (``fetch`` puts it there
with torch.hub's own downloader, from download.pytorch.org or the mirror named by
SALIENCY_TORCHVISION_MIRROR), otherwise ModelUnavailableError names the fetch command. The
architecture is built empty and the server-side checkpoint read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import deployment_source
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import (
    NewFolders,
    fetch_command,
    is_network_failure,
    relative_to_cache,
    torch_checkpoint_dir,
    unreachable_message,
)
from saliency_core.models.source import FixedCatalogue


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
        task="image",
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


# Base URL of a mirror of download.pytorch.org/models (an organisation's own copy): the
# checkpoint is fetched from <mirror>/<file name>, and checked against the same hash.
MIRROR_ENV = "SALIENCY_TORCHVISION_MIRROR"
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


def download_url(arch: str) -> str:
    url = official_weights(arch).url
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if mirror else url


def download_checkpoint(url: str, path: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` with torch.hub's downloader: into a temporary file next to
    it, checked against the SHA-256 prefix in the file's name, then moved into place. A
    failure (network, truncation, wrong bytes) leaves neither a partial file nor the folders
    this call created, so running it again starts cleanly."""
    match = _HASH_PREFIX.search(path.name)
    folders = NewFolders(path.parent)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=match and match.group(1),
                                       progress=progress)
    except BaseException:
        folders.discard()
        raise
    return path


def fetch(arch: str, progress: bool = True) -> Path:
    """The official checkpoint into the cache, from download.pytorch.org or the mirror."""
    path = checkpoint_path(arch)
    if path.is_file():
        return path
    url = download_url(arch)
    try:
        return download_checkpoint(url, path, progress)
    except Exception as exc:
        if is_network_failure(exc):
            raise ModelUnavailableError(unreachable_message(
                arch, url, MIRROR_ENV, relative_to_cache(path))) from exc
        raise ModelUnavailableError(
            f"{arch}: the download from {url} failed ({exc.__class__.__name__}: "
            f"{str(exc)[:300]}); nothing was kept, so it can simply be run again."
        ) from exc


class TorchvisionSource(FixedCatalogue):
    """torchvision's ImageNet classifiers (models/source.py), fetched into the cache."""

    downloads = True
    catalogue = ARCHITECTURES

    def info(self, name: str) -> ModelInfo:
        present = is_present(name) or deployment_source.in_source(lambda: [checkpoint_path(name)])
        return ModelInfo(name, "image", "zoo", present, size_bytes(name),
                         f"{ARCHITECTURES[name].description}, ImageNet-1k (torchvision)")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        deployment_source.ensure_local(lambda: [checkpoint_path(name)], lambda: is_present(name))
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        return fetch(name, progress=progress)


SOURCE = TorchvisionSource()
