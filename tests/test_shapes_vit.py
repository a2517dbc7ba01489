"""The bundled vision transformer: it loads offline, the transformer methods localise the shape
on held-out images, and the model randomization test runs on it as on the CNN (the weights are
committed in saliency_core/weights; the floors sit just under what was measured, on CPU)."""

import numpy as np
import pytest
import torch

from saliency_core import attribute, available_models, evaluation, load_model
from saliency_core.models import bundled
from saliency_core.training.shapes import generate
from saliency_core.training.shapes_cnn import images_to_tensor

pytestmark = pytest.mark.skipif(
    not bundled.is_present("shapes-vit"),
    reason="bundled shapes-vit missing; python -m saliency_core train-bundled --only shapes-vit",
)

# Measured on these 200 held-out images (seed 7100; docs/shapes_vit.md gives the figures on
# 500): pointing game 0.585 (Grad-CAM), 0.945 (rollout), 0.845 (relevance); mass in mask 2.9,
# 2.38 and 3.36 times the masks' share of the image (14%). Rollout and relevance are held to
# the goal of 0.8; Grad-CAM misses it on this transformer (see the docs), its floor only
# guards against a regression.
GOAL = 0.8
# method -> (pointing game floor, floor of the mass in mask over the masks' area).
FLOORS = {
    "gradcam": (0.5, 2.5),
    "attention_rollout": (GOAL, 2.0),
    "attention_relevance": (GOAL, 3.0),
}
# The card's test accuracy is 0.9075 on 2,000 images; 0.925 on these 200.
ACCURACY_FLOOR = 0.85


@pytest.fixture(scope="module")
def shapes_vit():
    return load_model("shapes-vit", "cpu")


def test_listed_and_loaded_offline_as_a_hugging_face_vit(shapes_vit, held_out):
    assert "shapes-vit" in [info.name for info in available_models()]
    assert type(shapes_vit.model).__name__ == "ViTForImageClassification"
    assert shapes_vit.model.config._attn_implementation == "eager"
    assert shapes_vit.default_layer == "vit.layers.2.layernorm_before"
    assert shapes_vit.card["metrics"]["test_accuracy"] >= ACCURACY_FLOOR
    x, data = held_out
    with torch.no_grad():
        predicted = shapes_vit.model(pixel_values=x).logits.argmax(1).numpy()
    assert (predicted == data.labels).mean() >= ACCURACY_FLOOR


@pytest.fixture(scope="module")
def held_out():
    data = generate(200, 7100)
    return images_to_tensor(data.images), data


@pytest.mark.parametrize("method", sorted(FLOORS))
def test_transformer_methods_localise_the_shape(shapes_vit, held_out, method):
    x, data = held_out
    attribution = attribute(shapes_vit, x, method, data.labels.tolist())
    pointing = evaluation.pointing_game(attribution, data.masks).mean()
    mass = evaluation.mass_in_mask(attribution, data.masks).mean()
    pointing_floor, mass_floor = FLOORS[method]
    assert pointing >= pointing_floor, pointing
    assert mass >= mass_floor * data.masks.mean(), (mass, data.masks.mean())


def test_model_randomization_changes_relevance_but_not_rollout_at_the_head(shapes_vit):
    """Relevance weighs attention by the class score's gradient, so re-initialising the model
    from the logits down changes it (it passes); rollout never looks at the head, so the first
    step (the classifier randomized) leaves it exactly as it was."""
    x, _ = evaluation.shapes_inputs(shapes_vit, 4, 0)
    res = evaluation.cascading_randomization(
        shapes_vit, x, ["attention_relevance", "attention_rollout"], seed=0, keep_maps=False
    )
    assert res.verdicts()["attention_relevance"].passes
    rollout = res.mean_curve("attention_rollout")
    assert rollout[1] == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(res.mean_curve("attention_relevance")).all()


def test_the_cascade_names_each_transformer_step_once(shapes_vit):
    """Each block's MLP is followed by the next block's first norm; named by their common path,
    two steps were both called ``vit.layers`` on the Sanity page."""
    x, _ = evaluation.shapes_inputs(shapes_vit, 1, 0)
    names = [unit.name for unit in evaluation.randomization_units(shapes_vit, x)]
    assert len(names) == len(set(names)), names
    assert names[:3] == ["classifier", "vit.layers.2.mlp", "vit.layers.2.attention"]
