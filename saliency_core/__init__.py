"""saliency_core: gradient saliency for image and text models.

Never imports streamlit; usable from a notebook, the CLI (python -m saliency_core) or the app.
"""

from __future__ import annotations

__version__ = "0.2.0"

from typing import TYPE_CHECKING

import torch

from saliency_core.api import Explanation, attribute, explain
from saliency_core.datasets import DatasetExplanation, explain_dataset
from saliency_core.engine.layers import candidate_layers
from saliency_core.errors import SaliencyError
from saliency_core.harness.multi_target import (
    TargetAttributions,
    attribute_targets,
    cam_for_targets,
)
from saliency_core.harness.refine import Refiner
from saliency_core.methods import get as _get_method
from saliency_core.methods import specs as _specs
from saliency_core.methods.specs import MethodSpec, Param
from saliency_core.text.classifier import TextAttribution, TextRefiner, attribute_text
from saliency_core.text.generation import GenerationAttribution, attribute_generation

if TYPE_CHECKING:
    from saliency_core.models.base import LoadedModel, ModelInfo


def methods() -> list[MethodSpec]:
    """Every method's spec: name, description and hyperparameters (pages and CLI use these).

    Returns:
        One ``MethodSpec`` per method, in the order the pages list them.

    Example:
        >>> import saliency_core as sc
        >>> "integrated_gradients" in [m.name for m in sc.methods()]
        True
    """
    return _specs()


def get_method(name: str) -> MethodSpec:
    """The spec of one method.

    Args:
        name: A method name, e.g. "gradcam".

    Returns:
        Its ``MethodSpec`` (parameters with defaults, ranges and choices).

    Raises:
        UnknownMethodError: No method has this name.

    Example:
        >>> get_method("gradcam").param("layer").type
        'layer'
    """
    return _get_method(name).spec


def available_models() -> list[ModelInfo]:
    """Bundled, cached and downloadable models, with whether their weights are here.

    Returns:
        One ``ModelInfo`` (name, task, source, present, size) per model.

    Example:
        >>> "shapes-cnn" in [m.name for m in available_models()]
        True
    """
    from saliency_core.models import available_models as _available

    return _available()


def load_model(name: str, device: str | torch.device | None = None) -> LoadedModel:
    """A model by name, ready to explain (evaluation mode, shared and never modified).

    Args:
        name: A name from ``available_models()``, e.g. "shapes-cnn" (bundled with the package).
        device: "cpu", "cuda", a ``torch.device``; None picks the GPU when there is one.

    Returns:
        A ``LoadedModel``: the module, labels, preprocessing and default CAM layer.

    Raises:
        ModelUnavailableError: Unknown name, or weights not in the cache (the message says
            which ``saliency fetch`` command gets them).

    Example:
        >>> loaded = load_model("shapes-cnn", device="cpu")
        >>> loaded.task, len(loaded.labels)
        ('image', 6)
    """
    from saliency_core.models import load_model as _load

    return _load(name, device=device)


__all__ = [
    "DatasetExplanation",
    "Explanation",
    "GenerationAttribution",
    "MethodSpec",
    "Param",
    "Refiner",
    "SaliencyError",
    "TargetAttributions",
    "TextAttribution",
    "TextRefiner",
    "attribute",
    "attribute_generation",
    "attribute_targets",
    "attribute_text",
    "available_models",
    "cam_for_targets",
    "candidate_layers",
    "explain",
    "explain_dataset",
    "get_method",
    "load_model",
    "methods",
]
