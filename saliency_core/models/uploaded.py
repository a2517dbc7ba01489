"""Bring-your-own models as one family (models/source.py): models registered at run time
(uploaded weights, zero-shot classifiers over named classes) and the Hugging Face folders the
server's allow-list names (``folder:<directory>``).

A registration belongs to an owner (an app session's token), who alone sees it, or to
everyone (owner None: the library, the CLI, server-side registrations). Uploads are capped
per owner and for the whole server, since each holds a model's weights in memory. byo.py
checks and builds what is uploaded; registration.py names and registers it through the
registry, which also drops loaded instances when a registration changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from saliency_core.errors import SaliencyError
from saliency_core.models import byo, hf_image, hf_text
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import folder_size

MAX_OWNED_ENV = "SALIENCY_MAX_UPLOADED_MODELS"
DEFAULT_MAX_OWNED = 4  # resident uploaded models of all sessions together
MAX_PER_OWNER = 2

Factory = Callable[[torch.device], LoadedModel]


def max_owned() -> int:
    try:
        return max(1, int(os.environ.get(MAX_OWNED_ENV, DEFAULT_MAX_OWNED)))
    except ValueError:
        return DEFAULT_MAX_OWNED


class BringYourOwnSource:
    """Run-time registrations (name -> info, factory, owner) and allow-listed folders, listed
    after every other family, registrations first."""

    downloads = False

    def __init__(self) -> None:
        self._registered: dict[str, tuple[ModelInfo, Factory, str | None]] = {}
        self._lock = threading.Lock()

    def register(self, info: ModelInfo, factory: Factory, owner: str | None = None) -> None:
        """Registry.register_uploaded's rules: an owner replaces only its own model of a name,
        a name another owner uses is refused, and so is an upload beyond the caps."""
        with self._lock:
            existing = self._registered.get(info.name)
            if existing is not None and existing[2] != owner:
                raise SaliencyError(
                    f"The name {info.name!r} is already in use on this server; choose another "
                    "name."
                )
            if owner is not None and existing is None:
                owned = [who for _, _, who in self._registered.values() if who is not None]
                if owned.count(owner) >= MAX_PER_OWNER:
                    raise SaliencyError(
                        f"You have {MAX_PER_OWNER} uploaded models loaded, the most one session "
                        "may keep; remove one (Models page) before uploading another."
                    )
                if len(owned) >= max_owned():
                    raise SaliencyError(
                        f"The server already holds {len(owned)} uploaded models, its limit; try "
                        "again when other sessions have ended."
                    )
            self._registered[info.name] = (info, factory, owner)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)

    def is_registered(self, name: str) -> bool:
        with self._lock:
            return name in self._registered

    def owned_names(self, owner: str) -> list[str]:
        with self._lock:
            return [name for name, (_, _, who) in self._registered.items() if who == owner]

    def builtin_names(self) -> list[str]:
        return []

    def names(self, owner: str | None = None) -> list[str]:
        with self._lock:
            listed = [name for name, (_, _, who) in self._registered.items()
                      if who is None or who == owner]
        return listed + [name for name in byo.allowed_folders() if name not in listed]

    def owns(self, name: str) -> bool:
        return self.is_registered(name) or name in byo.allowed_folders()

    def info(self, name: str) -> ModelInfo:
        with self._lock:
            entry = self._registered.get(name)
        if entry is not None:
            return entry[0]
        folder = byo.allowed_folders()[name]
        return ModelInfo(name, hf_image.folder_task(folder), "uploaded", True,
                         folder_size(folder), f"Hugging Face folder {folder}")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        with self._lock:
            entry = self._registered.get(name)
        if entry is not None:
            return entry[1](device)
        folder = byo.allowed_folders()[name]
        if hf_image.folder_task(folder) == "image":
            return hf_image.load_folder(name, folder, device)
        return hf_text.load_folder(name, folder, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None  # uploads and folders are here already, and never come from a hub

    def fetch(self, name: str, progress: bool = True) -> Path:
        raise SaliencyError(f"{name} is a bring-your-own model; there is nothing to fetch.")


SOURCE = BringYourOwnSource()
