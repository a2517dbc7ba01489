"""Models for the workbench: bundled (ship with the project, work offline), the zoo (official
torchvision and Hugging Face weights, fetched once into the cache) and user models (uploaded
weights, allow-listed folders). Everything loads through ``load_model(name)``."""

from saliency_core.models.base import LoadedModel
from saliency_core.models.byo import parse_labels
from saliency_core.models.registration import (
    load_hf_folder,
    load_uploaded_weights,
    load_zero_shot,
)
from saliency_core.models.registry import (
    ModelInfo,
    available_models,
    forget_loaded,
    load_model,
    unregister_uploaded,
)

__all__ = [
    "LoadedModel",
    "ModelInfo",
    "available_models",
    "forget_loaded",
    "load_hf_folder",
    "load_model",
    "load_uploaded_weights",
    "load_zero_shot",
    "parse_labels",
    "unregister_uploaded",
]
