"""One catalogue over every model source, and the shared in-process cache of loaded models.

The families of models are the ``SOURCES`` below (each a models/source.py ``ModelSource``);
everything here iterates over them, so a new family is one module and one line in that list.

A loaded model is built once per (name, device) and then shared: the app serves many browser
sessions from one process, and attribution code never changes a model, so sharing is safe and
saves memory. A lock per key makes concurrent first requests wait for one load instead of each
loading their own copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import (
    bundled,
    efficientnet_lite,
    hf_image,
    hf_lm,
    hf_text,
    timm_zoo,
    torchvision_zoo,
    uploaded,
)
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.source import ModelSource
from saliency_core.models.uploaded import (  # noqa: F401  (the registry's documented names)
    DEFAULT_MAX_OWNED,
    MAX_OWNED_ENV,
    MAX_PER_OWNER,
    max_owned,
)

# Catalogue order: the bundled models first (they always work offline: the shapes and
# sentiment models in the repository, EfficientNet-Lite from pinned packages), then the zoo,
# then the models users bring.
SOURCES: list[ModelSource] = [
    bundled.SOURCE,
    efficientnet_lite.SOURCE,
    torchvision_zoo.SOURCE,
    hf_text.SOURCE,
    hf_lm.SOURCE,
    hf_image.SOURCE,
    timm_zoo.SOURCE,
    uploaded.SOURCE,
]
_loaded: dict[tuple[str, str], LoadedModel] = {}
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def register_source(source: ModelSource) -> None:
    """Add a family at run time (tests, plugins), listed after the others. A family of the
    library itself is a line in ``SOURCES`` instead."""
    with _registry_lock:
        if source not in SOURCES:
            SOURCES.append(source)


def unregister_source(source: ModelSource) -> None:
    """Remove a family added by ``register_source`` and the instances it loaded."""
    with _registry_lock:
        if source in SOURCES:
            SOURCES.remove(source)
        for key in [key for key in _loaded if source.owns(key[0])]:
            del _loaded[key]


def source_of(name: str) -> ModelSource | None:
    """The family that serves ``name``, or None.

    Asked from the last family to the first: a run-time registration (bring-your-own, listed
    last) is for one exact name and must win over a family's name pattern (the default name
    of an uploaded timm network starts with timm:)."""
    with _registry_lock:
        sources = list(SOURCES)
    return next((source for source in reversed(sources) if source.owns(name)), None)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks the GPU when there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def builtin_names() -> list[str]:
    with _registry_lock:
        sources = list(SOURCES)
    return [name for source in sources for name in source.builtin_names()]


def available_models(owner: str | None = None) -> list[ModelInfo]:
    """Every family's models in ``SOURCES`` order: bundled first, then the zoo, then user
    models (``owner``'s own uploads and everyone's, never another owner's)."""
    with _registry_lock:
        sources = list(SOURCES)
    return [source.info(name) for source in sources for name in source.names(owner)]


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
        uploaded.SOURCE.register(info, factory, owner)
        for key in [key for key in _loaded if key[0] == info.name]:
            del _loaded[key]


def owned_names(owner: str) -> list[str]:
    return uploaded.SOURCE.owned_names(owner)


def drop_owner(owner: str) -> None:
    """Forget every model ``owner`` uploaded (its session ended) and their loaded instances."""
    for name in owned_names(owner):
        unregister_uploaded(name)


def is_registered(name: str) -> bool:
    return uploaded.SOURCE.is_registered(name)


def unregister_uploaded(name: str) -> None:
    """Remove a run-time model (e.g. a user discarding an upload) and its loaded instances."""
    with _registry_lock:
        uploaded.SOURCE.unregister(name)
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
    source = source_of(name)
    if source is None:
        raise ModelUnavailableError(
            f"There is no model called {name!r}. Known models: {', '.join(builtin_names())}"
            " (and uploaded ones, listed by: python -m saliency_core models)."
        )
    return source.load(name, device)
