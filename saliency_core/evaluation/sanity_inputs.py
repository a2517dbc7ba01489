"""What the sanity report runs on: generated shapes images for the bundled models, each model's
twin trained on shuffled labels, and the methods that apply to images."""

from __future__ import annotations

import numpy as np
import torch

from saliency_core.errors import SaliencyError
from saliency_core.evaluation.sanity import architecture_difference

# Images for the checks come from seeds far from the bundled models' training and test seeds.
IMAGE_SEED_BASE = 7000

# Models and their twin trained on shuffled labels, for the data randomization test.
RANDOM_LABEL_PAIRS = {"shapes-cnn": "shapes-cnn-random-labels"}


def random_labels_partner(model_name: str) -> str | None:
    return RANDOM_LABEL_PAIRS.get(model_name)


def partner_problem(model, partner) -> str | None:
    """Why ``partner`` cannot serve in ``model``'s data randomization test, or None.

    Comparing parameter names and shapes is cheap next to a single map, so callers check it
    before starting any work: an unfit pair is never found out after the long parameter test.
    """
    differ = architecture_difference(model, partner)
    if not differ:
        return None
    name = getattr(model, "name", type(model).__name__)
    other = getattr(partner, "name", type(partner).__name__)
    return (f"{other} is not the same architecture as {name} (they differ in "
            f"{', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''}), so it cannot stand "
            f"for {name} trained on shuffled labels.")


def shapes_inputs(loaded, samples: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``samples`` generated shapes images in ``loaded``'s input space, and their labels."""
    from PIL import Image

    from saliency_core.training.shapes import generate

    if loaded.preprocess is None or loaded.task != "image":
        raise SaliencyError(f"{loaded.name} is not an image model; sanity checks here need images")
    data = generate(samples, IMAGE_SEED_BASE + seed)
    x = torch.cat([loaded.preprocess(Image.fromarray(img)) for img in data.images])
    return x, data.labels


def image_methods() -> list[str]:
    from saliency_core.methods import REGISTRY

    return [name for name, entry in REGISTRY.items() if entry.spec.family in ("input", "cam")]
