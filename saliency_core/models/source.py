"""What a family of models is to the rest of the library: the ``ModelSource`` protocol.

Adding a family (say Hugging Face image classifiers as ``hf:<repo>``) is one new module and one
registration line:

1. a module in saliency_core/models with a class that has the members of ``ModelSource``
   below (the protocol is structural: nothing to inherit, though a family with a fixed list
   of names can take its listing from ``FixedCatalogue``) and one instance of it,
   conventionally ``SOURCE``;
2. that instance added to ``SOURCES`` in models/registry.py, at the place in the list where
   its models should appear in ``available_models()``.

Nothing else changes: ``available_models()`` lists every source's ``names()`` in that order,
``load_model`` asks the sources which one ``owns`` a name, ``python -m saliency_core models``
prints the catalogue and ``python -m saliency_core fetch`` calls the owner's ``fetch``. A
family never imports the registry (tests/test_foundation_layout.py checks it): the registry
depends on the families, not the other way round.

A family whose weights are downloaded into the cache keeps them where the libraries' own
tools would (cache.py) and, in a deployment, lets models/deployment_source.py copy them from
the shared model source before loading (``ensure_local``) and count them as present when the
source holds them (``in_source``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from saliency_core.models.base import LoadedModel, ModelInfo


@runtime_checkable
class ModelSource(Protocol):
    """One family of models: what it offers, what each model is, how to load and fetch it."""

    #: Whether ``fetch`` downloads this family's weights into the model cache. False for
    #: weights that ship with the project or its requirements, or arrive at run time.
    downloads: bool

    def builtin_names(self) -> list[str]:
        """The names the family defines in code, whether their weights are here or not (the
        models ``fetch zoo`` fetches when the family downloads); empty for open families
        whose names come from the cache, a configuration or uploads."""
        ...

    def names(self, owner: str | None = None) -> list[str]:
        """The models the family offers now, in catalogue order. ``owner`` (an app session's
        token) adds that owner's uploads; families without uploads ignore it."""
        ...

    def owns(self, name: str) -> bool:
        """Whether ``name`` is this family's, listed or not (``timm:<anything>`` is timm's
        before its weights are fetched). Cheap: it is asked for every name loaded."""
        ...

    def info(self, name: str) -> ModelInfo:
        """The catalogue entry of an owned ``name``: task, source, present, size."""
        ...

    def load(self, name: str, device: torch.device) -> LoadedModel:
        """Build ``name`` on ``device`` from weights on this machine (or the deployment's model
        source). Never downloads: missing weights raise ModelUnavailableError naming the
        command that fetches them."""
        ...

    def nothing_to_fetch(self, name: str) -> str | None:
        """Why ``fetch`` has nothing to download for ``name`` ("bundled with the project"),
        or None: then ``fetch`` downloads it, or, for a family that does not download, the
        name cannot be fetched at all."""
        ...

    def fetch(self, name: str, progress: bool = True) -> Path:
        """Download ``name``'s weights into the cache (from its hub, or the mirror its
        environment variable names) and return where they are. Only called when
        ``downloads`` is true; raises ModelUnavailableError saying what to do."""
        ...


class FixedCatalogue:
    """The listing part of a ``ModelSource`` whose names are the keys of one mapping defined in
    code (bundled models, EfficientNet-Lite, torchvision's and the hub's zoo): it offers all
    of them to everyone, whether their weights are here or not."""

    catalogue: Mapping[str, Any]

    def builtin_names(self) -> list[str]:
        return list(self.catalogue)

    def names(self, owner: str | None = None) -> list[str]:
        return list(self.catalogue)

    def owns(self, name: str) -> bool:
        return name in self.catalogue
