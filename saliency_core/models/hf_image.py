"""Any Hugging Face image classifier as ``hf:<repo>`` (e.g. ``hf:google/vit-base-patch16-224``),
and the image classifiers among the allow-listed folders (bring-your-own, uploaded.py).

``fetch`` downloads the repository's config, image-processor config and one copy of the
weights (safetensors when there are any) from huggingface.co or the mirror named by
HF_ENDPOINT; loading is offline (``local_files_only``), never runs code shipped with a model,
and asks for eager attention so that attention probabilities can be read (attention
rollout and relevance). Preprocessing follows the model's own ``preprocessor_config.json``
(resize, centre crop, rescale, mean and std), done here with Pillow, so no processor class or
per-model transform is needed; class names come from ``config.id2label``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from saliency_core.errors import ModelUnavailableError, SaliencyError
from saliency_core.models import deployment_source
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import fetch_command, folder_size, hf_hub_dir
from saliency_core.models.hf_text import (
    download_snapshot,
    first_line,
    labels_from_config,
    repo_cache_dir,
    snapshot_dir,
)

PREFIX = "hf:"
PROCESSOR_FILE = "preprocessor_config.json"
# ImageNet's statistics: what an image processor uses when its config names none.
_DEFAULT_MEAN = (0.485, 0.456, 0.406)
_DEFAULT_STD = (0.229, 0.224, 0.225)


def is_hf_image_name(name: str) -> bool:
    return name.startswith(PREFIX) and "/" in name[len(PREFIX) :]


def repo_of(name: str) -> str:
    return name[len(PREFIX) :]


def is_image_classifier(config: dict) -> bool:
    """Whether a config.json describes an image classifier (its architectures say so)."""
    return any(
        "ForImageClassification" in str(arch)
        for arch in config.get("architectures") or ()
    )


def _weights_in(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()


def present_snapshot(repo_id: str) -> Path | None:
    snapshot = snapshot_dir(repo_id)
    return snapshot if snapshot is not None and _weights_in(snapshot) else None


def cached_names() -> list[str]:
    """The image classifiers whose files are in the cache, as ``hf:<repo>``."""
    found = []
    for repo_dir in sorted(hf_hub_dir().glob("models--*--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        snapshot = present_snapshot(repo_id)
        if snapshot is None:
            continue
        try:
            config = json.loads((snapshot / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if is_image_classifier(config):
            found.append(PREFIX + repo_id)
    return found


# ----------------------------------------------------------------------------- preprocessing


def _pair(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    return None


class ImagePreprocessing:
    """What ``preprocessor_config.json`` asks for, done with Pillow and NumPy.

    Example:
        >>> p = ImagePreprocessing({"size": {"height": 4, "width": 6}, "image_mean": [0.5] * 3,
        ...                         "image_std": [0.5] * 3})
        >>> p(Image.new("RGB", (30, 20))).shape
        torch.Size([1, 3, 4, 6])
    """

    def __init__(self, config: dict, fallback_size: int = 224):
        self.config = dict(config)
        size = config.get("size", fallback_size)
        self.resize_to = _pair(size)  # exact (height, width)
        self.shortest_edge = (
            size.get("shortest_edge") if isinstance(size, dict) else None
        )
        self.do_resize = bool(config.get("do_resize", True))
        self.do_crop = bool(config.get("do_center_crop", False))
        self.crop = _pair(config.get("crop_size")) if self.do_crop else None
        self.crop_pct = config.get("crop_pct")
        self.resample = Image.Resampling(
            int(config.get("resample", Image.Resampling.BILINEAR))
        )
        self.rescale = (
            float(config.get("rescale_factor", 1 / 255))
            if config.get("do_rescale", True)
            else 1.0
        )
        normalize = bool(config.get("do_normalize", True))
        self.mean = (
            list(config.get("image_mean") or _DEFAULT_MEAN) if normalize else None
        )
        self.std = list(config.get("image_std") or _DEFAULT_STD) if normalize else None
        self.input_size = self._output_size(fallback_size)

    def _output_size(self, fallback: int) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop
        if self.resize_to is not None:
            return self.resize_to
        edge = int(self.shortest_edge or fallback)
        return edge, edge

    def _resized(self, image: Image.Image) -> Image.Image:
        if not self.do_resize:
            return image
        if self.resize_to is not None:
            return image.resize((self.resize_to[1], self.resize_to[0]), self.resample)
        edge = int(self.shortest_edge or self.input_size[0])
        if self.crop_pct is not None and not self.do_crop:
            # ConvNeXt's processor: below 384 pixels, resize to edge / crop_pct and crop edge.
            if edge < 384:
                image = _shortest_edge(
                    image, int(edge / float(self.crop_pct)), self.resample
                )
                return _centre_crop(image, (edge, edge))
            return image.resize((edge, edge), self.resample)
        return _shortest_edge(image, edge, self.resample)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self._resized(image.convert("RGB"))
        if self.crop is not None:
            image = _centre_crop(image, self.crop)
        pixels = np.asarray(image, dtype=np.float32) * self.rescale
        x = torch.from_numpy(pixels).permute(2, 0, 1)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            std = torch.tensor(self.std).view(-1, 1, 1)
            x = (x - mean) / std
        return x.unsqueeze(0)

    def normalization(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) in the [0, 1] pixel scale the baselines use, or None."""
        if self.mean is None or self.std is None or abs(self.rescale * 255 - 1) > 1e-6:
            return None
        return list(self.mean), list(self.std)

    def describe(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "mean": self.mean,
            "std": self.std,
            "resample": self.resample.name,
            "crop": self.crop is not None,
        }


def _shortest_edge(image: Image.Image, edge: int, resample) -> Image.Image:
    w, h = image.size
    scale = edge / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)


def _centre_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    h, w = size
    left = (image.width - w) // 2
    top = (image.height - h) // 2
    return image.crop((left, top, left + w, top + h))


# ----------------------------------------------------------------------------- loading


def _model_size(model, config) -> int:
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        return int(size[0])
    return int(size) if isinstance(size, int) else 224


def load_image_classifier(
    location: str | Path, cache_dir: Path | None, device: torch.device
):
    """An image classifier from a hub id in ``cache_dir`` or from a folder, offline only, with
    eager attention where the architecture has a choice."""
    from transformers import AutoModelForImageClassification

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    try:
        model = AutoModelForImageClassification.from_pretrained(  # nosec B615 - local_files_only
            str(location), attn_implementation="eager", **kwargs
        )
    except ValueError as exc:  # an architecture without the choice (a CNN)
        if "attn_implementation" not in str(exc) and "attention" not in str(exc):
            raise
        model = AutoModelForImageClassification.from_pretrained(str(location), **kwargs)  # nosec B615 - local_files_only
    return model.to(device).eval()


def hf_loaded_model(
    name: str, model, processor_config: dict, source: str, card: dict
) -> LoadedModel:
    """A Hugging Face image classifier with the preprocessing of its processor config and the
    class names of its config."""
    preprocessing = ImagePreprocessing(
        processor_config, _model_size(model, model.config)
    )
    device = next(model.parameters()).device

    def preprocess(image) -> torch.Tensor:
        return preprocessing(image).to(device)

    return LoadedModel(
        name=name,
        task="image",
        model=model,
        labels=labels_from_config(model.config),
        preprocess=preprocess,
        normalization=preprocessing.normalization(),
        input_size=preprocessing.input_size,
        source=source,
        card={
            **card,
            "architecture": list(model.config.architectures or []),
            "preprocessing": preprocessing.describe(),
        },
    )


def _processor_config(folder: Path) -> dict:
    path = folder / PROCESSOR_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise SaliencyError(f"{path} is not valid JSON: {exc}") from exc


def load(name: str, device: torch.device) -> LoadedModel:
    repo_id = repo_of(name)
    snapshot = present_snapshot(repo_id)
    if snapshot is None:
        raise ModelUnavailableError(
            f"{name} is not in the local cache ({repo_cache_dir(repo_id)}). On a machine with "
            f"internet access (or with HF_ENDPOINT set to a mirror) run: {fetch_command(name)}"
        )
    try:
        model = load_image_classifier(repo_id, hf_hub_dir(), device)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(
            f"{name} could not be loaded from the cache ({first_line(exc)}). If it is an image "
            f"classifier, delete {repo_cache_dir(repo_id)} and run: {fetch_command(name)}"
        ) from exc
    return hf_loaded_model(
        name,
        model,
        _processor_config(snapshot),
        "zoo",
        {"repo_id": repo_id, "weights": str(snapshot)},
    )


def load_folder(name: str, folder: Path, device: torch.device) -> LoadedModel:
    """An allow-listed folder holding an image classifier (config, weights, processor config)."""
    try:
        model = load_image_classifier(folder, None, device)
    except (OSError, ValueError, KeyError) as exc:
        raise SaliencyError(
            f"{folder} is not a usable Hugging Face image classifier folder: {first_line(exc)}"
        ) from exc
    return hf_loaded_model(
        name, model, _processor_config(folder), "uploaded", {"folder": str(folder)}
    )


def folder_task(folder: Path) -> str:
    """ "image" for a folder whose config.json is an image classifier's, else "text"."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "text"
    return "image" if is_image_classifier(config) else "text"


def fetch(name: str) -> Path:
    """Config, processor config and one copy of the weights (safetensors when there are any,
    else the PyTorch .bin) into the cache."""

    def wanted(files: list[str]) -> list[str]:
        weights = [f for f in files if f.endswith(".safetensors") and "/" not in f] or [
            f for f in files if f == "pytorch_model.bin"
        ]
        return [*weights, *(f for f in files if f in ("config.json", PROCESSOR_FILE))]

    return download_snapshot(name, repo_of(name), wanted)


class HubImageSource:
    """Hugging Face image classifiers as ``hf:<repo>`` (models/source.py): an open family,
    listing those whose files are in the cache."""

    downloads = True

    def builtin_names(self) -> list[str]:
        return []

    def names(self, owner: str | None = None) -> list[str]:
        return cached_names()

    def owns(self, name: str) -> bool:
        return is_hf_image_name(name)

    def info(self, name: str) -> ModelInfo:
        repo_id = repo_of(name)
        snapshot = present_snapshot(repo_id)
        present = snapshot is not None or deployment_source.in_source(
            lambda: [repo_cache_dir(repo_id)]
        )
        size = folder_size(snapshot) if snapshot is not None else None
        return ModelInfo(
            name,
            "image",
            "zoo",
            present,
            size,
            f"Hugging Face image classifier {repo_id}",
        )

    def load(self, name: str, device: torch.device) -> LoadedModel:
        repo_id = repo_of(name)
        deployment_source.ensure_local(
            lambda: [repo_cache_dir(repo_id)],
            lambda: present_snapshot(repo_id) is not None,
        )
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        return fetch(name)


SOURCE = HubImageSource()
