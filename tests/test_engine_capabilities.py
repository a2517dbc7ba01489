"""Methods say what they are: SmoothGrad wraps any input-space method, several targets and
refinement are offered by capability, and no module outside methods/ tests a method's name."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch
from support.engine_models import images, max_rel_diff, small_cnn

import saliency_core as sc
from saliency_core.methods import REGISTRY, with_capability
from saliency_core.methods.smoothgrad import noisy_copies

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

ROOT = pathlib.Path(__file__).resolve().parents[1] / "saliency_core"


def test_smoothgrad_wraps_a_method_with_a_layer():
    """NoiseTunnel-style: the base is any input-space method, here Guided Grad-CAM."""
    model = small_cnn()
    x = images(1)
    assert "guided_gradcam" in sc.get_method("smoothgrad").param("base").choices
    ours = sc.attribute(model, x, "smoothgrad", target=1, samples=3, sigma=0.1, seed=2,
                        base="guided_gradcam", layer="features.5")
    noisy = noisy_copies(x, 3, 0.1, 2)
    ref = sc.attribute(model, noisy, "guided_gradcam", target=1, layer="features.5").mean(0)
    assert max_rel_diff(ours[0], ref) < 1e-5


def test_capabilities_decide_what_applies():
    assert set(with_capability("refine")) == {"integrated_gradients", "smoothgrad"}
    assert {"gradcam", "gradient"} <= set(with_capability("from_gradients"))
    assert "guided_backprop" not in with_capability("from_gradients")
    assert REGISTRY["smoothgrad"].includes_input({"base": "integrated_gradients"})
    assert not REGISTRY["smoothgrad"].includes_input({"base": "gradient"})


def test_several_targets_report_their_real_passes():
    model = small_cnn()
    out = sc.attribute_targets(model, images(1), [0, 2, 4], method="gradcam", layer="features.5")
    assert out.metadata["forwards"] == 1 and out.metadata["passes"] == 3
    chunked = sc.attribute_targets(model, images(1), [0, 2, 4], method="gradcam",
                                   layer="features.5", batch_size=2)
    assert torch.allclose(chunked.attribution, out.attribution, atol=1e-6)


def test_no_method_name_is_tested_outside_the_methods_package():
    names = "|".join(map(re.escape, REGISTRY))
    test = re.compile(rf"""(==|!=)\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    # The library outside methods/, the app's helpers and the pages: they pick methods, cost
    # them and refine them by spec and capability.
    paths = [*ROOT.rglob("*.py"), *(ROOT.parent / "workbench").rglob("*.py"),
             *(ROOT.parent / "pages").rglob("*.py")]
    found = [f"{path.relative_to(ROOT.parent)}:{n}" for path in paths
             if "methods" not in path.relative_to(ROOT.parent).parts
             for n, line in enumerate(path.read_text().splitlines(), 1) if test.search(line)]
    assert found == []
