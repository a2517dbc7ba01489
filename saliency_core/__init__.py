"""saliency_core: gradient saliency for image and text models.

Never imports streamlit; usable from a notebook, the CLI (python -m saliency_core) or the app.
"""

__version__ = "0.2.0"

from .api import Explanation, attribute, explain
from .errors import SaliencyError
from .layers import candidate_layers
from .methods import get as _get_method
from .methods import specs as _specs
from .multi_target import TargetAttributions, attribute_targets, cam_for_targets
from .refine import Refiner
from .specs import MethodSpec, Param
from .text import TextAttribution, attribute_text


def methods() -> list[MethodSpec]:
    """Every method's spec: name, description and hyperparameters (pages and CLI use these)."""
    return _specs()


def get_method(name: str) -> MethodSpec:
    return _get_method(name).spec


def available_models():
    from .models import available_models as _available

    return _available()


def load_model(name: str, device=None):
    from .models import load_model as _load

    return _load(name, device=device)


__all__ = [
    "Explanation",
    "MethodSpec",
    "Param",
    "Refiner",
    "SaliencyError",
    "TargetAttributions",
    "TextAttribution",
    "attribute",
    "attribute_targets",
    "attribute_text",
    "available_models",
    "cam_for_targets",
    "candidate_layers",
    "explain",
    "get_method",
    "load_model",
    "methods",
]
