"""Any timm image classifier by name (``timm:<name>``, e.g. ``timm:resnet50.a1_in1k``), once its
weights are in the cache: fetched from the hub's ``timm/<name>`` repository (``fetch``), or given
as ``<cache>/timm/<name>.safetensors``.

The network is built empty by timm (its architectures are code in the installed package, never
from the download) and the weights, read by safetensors (plain tensors), loaded strictly.
Preprocessing is the pretrained configuration timm ships for the name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import deployment_source
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import cache_root, fetch_command, hf_hub_dir

PREFIX = "timm:"


def is_timm_name(name: str) -> bool:
    return name.startswith(PREFIX)


def _arch(name: str) -> str:
    return name[len(PREFIX):]


def pretrained_cfg(name: str):
    import timm
    from timm.models import get_pretrained_cfg

    arch = _arch(name)
    cfg = get_pretrained_cfg(arch) if timm.is_model(arch) else None
    if cfg is None or not cfg.hf_hub_id:
        raise ModelUnavailableError(
            f"timm has no pretrained model called {arch!r} on the hub; names look like "
            "timm:resnet50.a1_in1k (timm.list_models(pretrained=True) lists them)."
        )
    return cfg


def repo_id(name: str) -> str:
    return pretrained_cfg(name).hf_hub_id.removeprefix("hf-hub:")


def given_path(name: str) -> Path:
    return cache_root() / "timm" / f"{_arch(name)}.safetensors"


def _hub_files(name: str) -> tuple[Path, Path] | None:
    from saliency_core.models.hf_text import snapshot_dir

    snapshot = snapshot_dir(repo_id(name))
    if snapshot is None or not (snapshot / "model.safetensors").is_file():
        return None
    return snapshot / "model.safetensors", snapshot / "config.json"


def weights_path(name: str) -> Path | None:
    if given_path(name).is_file():
        return given_path(name)
    found = _hub_files(name)
    return found[0] if found else None


def cached_names() -> list[str]:
    """timm models whose weights are on this machine."""
    names = {PREFIX + p.stem for p in (cache_root() / "timm").glob("*.safetensors")}
    for repo in hf_hub_dir().glob("models--timm--*"):
        name = PREFIX + repo.name.removeprefix("models--timm--")
        try:
            if weights_path(name) is not None:
                names.add(name)
        except ModelUnavailableError:
            continue
    return sorted(names)


def load(name: str, device: torch.device) -> LoadedModel:
    import timm

    cfg = pretrained_cfg(name)
    path = weights_path(name)
    if path is None:
        raise ModelUnavailableError(
            f"The weights of {name} are not in the local cache. On a machine with internet "
            f"access run: {fetch_command(name)} (or put them at {given_path(name)})"
        )
    config = {}
    if path.name == "model.safetensors" and (path.parent / "config.json").is_file():
        config = json.loads((path.parent / "config.json").read_text())
    try:
        state = load_file(str(path))
        classifier = state.get(f"{cfg.classifier}.weight") if cfg.classifier else None
        num_classes = int(config.get("num_classes") or (classifier.shape[0] if classifier is not None
                                                       else cfg.num_classes))
        network = timm.create_model(_arch(name), pretrained=False, num_classes=num_classes)
        network.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"The cached weights of {name} at {path} could not be loaded "
            f"({exc.__class__.__name__}: {str(exc)[:300]}). Delete them and run: "
            f"{fetch_command(name)}"
        ) from exc
    labels = _labels(config, num_classes)
    return timm_loaded_model(name, network.to(device).eval(), labels, "zoo",
                             {"architecture": f"timm {_arch(name)}", "weights": str(path),
                              "trained_on": "ImageNet-1k" if num_classes == 1000 else None})


def _labels(config: dict, num_classes: int) -> list[str]:
    given = config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names")
    if given and len(given) == num_classes:
        return [str(label) for label in given]
    if num_classes == 1000:
        from saliency_core.models.efficientnet_lite import imagenet_labels

        return imagenet_labels()
    return [f"class {i}" for i in range(num_classes)]


def timm_loaded_model(name: str, network, labels: list[str], source: str, card: dict) -> LoadedModel:
    """A timm network with the preprocessing of its pretrained configuration."""
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=network)
    transform = create_transform(**config)
    device = next(network.parameters()).device
    size = config["input_size"][1:]

    def preprocess(image) -> torch.Tensor:
        return transform(image.convert("RGB")).unsqueeze(0).to(device)

    return LoadedModel(
        name=name, task="image", model=network, labels=labels, preprocess=preprocess,
        normalization=(list(config["mean"]), list(config["std"])), input_size=tuple(size),
        default_layer=None, source=source, card={**card, "preprocessing": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}},
    )


def fetch(name: str) -> Path:
    """``config.json`` and ``model.safetensors`` of the hub's ``timm/<name>`` repository."""
    from saliency_core.models.hf_text import download_snapshot

    return download_snapshot(name, repo_id(name),
                             lambda files: [f for f in files
                                            if f in ("config.json", "model.safetensors")])


def _file_size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None else None


class TimmSource:
    """Any timm classifier as ``timm:<name>`` (models/source.py): an open family, listing the
    names whose weights are in the cache."""

    downloads = True

    def builtin_names(self) -> list[str]:
        return []

    def names(self, owner: str | None = None) -> list[str]:
        return cached_names()

    def owns(self, name: str) -> bool:
        return is_timm_name(name)

    def info(self, name: str) -> ModelInfo:
        try:
            path = weights_path(name)
        except ModelUnavailableError:  # not a timm model with pretrained weights
            path = None
        return ModelInfo(name, "image", "zoo", path is not None, _file_size(path),
                         f"timm {_arch(name)} (weights in the cache)")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        from saliency_core.models.hf_text import repo_cache_dir

        deployment_source.ensure_local(
            lambda: [given_path(name), repo_cache_dir(repo_id(name))],
            lambda: weights_path(name) is not None)
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        return fetch(name)


SOURCE = TimmSource()
