"""What the engine learns about a model (default CAM layer, memory per point, the guided-path
checks, the lock) belongs to that model: it leaves with it, and a new model that gets a dead
model's id() starts from nothing instead of inheriting the dead model's facts."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import saliency_core as sc
from saliency_core.engine.model_state import known_owners, model_state

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


def deep_cnn():
    """Default CAM layer: the second convolution block ("b")."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


class Other(nn.Module):
    """A model whose default CAM layer is "extra", a name Shallow does not have."""

    def __init__(self):
        super().__init__()
        self.extra = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.extra(x)).mean((2, 3)))


class Shallow(nn.Module):
    """Same kind of object, other layout: its only spatial layer is "conv"."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_state_leaves_with_its_model():
    x = torch.rand(1, 3, 8, 8)
    gc.collect()  # models dropped by earlier tests leave first
    before = known_owners()
    model = deep_cnn()
    alive = weakref.ref(model)
    exp = sc.explain(model, x, "gradcam")
    sc.attribute(model, x, "guided_backprop")
    sc.attribute(model, x, "gradient", batch_size=None)
    assert exp.metadata["layer"] == "1"
    state = model_state(model)
    assert {"default_cam_layer", "saved_bytes_per_point", "guided_paths", "lock"} <= set(state)
    del model, exp, state
    gc.collect()
    assert alive() is None  # the store did not keep the model alive
    assert known_owners() == before


def test_a_reused_id_inherits_nothing():
    """CPython often hands a freed object's address to the next object of the same size;
    retire models until a new one gets a dead one's id (usually at once) and check that it
    gets its own default layer, not the dead model's."""
    x = torch.rand(1, 3, 8, 8)
    for _attempt in range(50):
        dead = Other()
        assert sc.explain(dead, x, "gradcam").metadata["layer"] == "extra"
        dead_id = id(dead)
        del dead  # freed here, by reference count: no collection in between
        candidate = Shallow()
        if id(candidate) == dead_id:
            break
    else:
        raise AssertionError("no new model got a freed id; the check could not run")
    # Under id() keys this model would be told its default layer is "extra", which it lacks.
    assert sc.explain(candidate, x, "gradcam").metadata["layer"] == "conv"
