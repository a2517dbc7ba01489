"""Model parameter and data randomization on small untrained models: the shared model stays
bit-identical, re-initialisation is seeded and layer-ordered, results are shaped as documented."""

import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from saliency_core import evaluation
from saliency_core.errors import CancelledError, SaliencyError
from saliency_core.models.base import LoadedModel
from saliency_core.training.shapes_cnn import MEAN, STD, ShapesCNN

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


def _loaded(seed=0, widths=(4, 8, 8, 16)):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapesCNN(num_classes=6, widths=widths)
        # Trained-looking batch-norm statistics, so resetting them is a visible change.
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
    return LoadedModel(name=f"tiny-shapes-{seed}", task="image", model=net.eval(),
                       labels=[str(i) for i in range(6)], normalization=(MEAN, STD),
                       input_size=(32, 32), default_layer="features.block5")


def _inputs(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_untouched(module, snapshot, flags):
    state = module.state_dict()
    assert state.keys() == snapshot.keys()
    for k, v in snapshot.items():
        assert torch.equal(state[k], v), k
        assert state[k].dtype == v.dtype
    for m in module.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        assert not m.training
    assert [p.requires_grad for p in module.parameters()] == flags


def test_every_test_leaves_the_shared_model_bit_identical():
    loaded = _loaded()
    snap = _snapshot(loaded.model)
    flags = [p.requires_grad for p in loaded.model.parameters()]
    x = _inputs()
    methods = ["gradient", "guided_backprop", "gradcam"]
    evaluation.cascading_randomization(loaded, x, methods, seed=1)
    evaluation.independent_randomization(loaded, x, methods, seed=1)
    evaluation.data_randomization(loaded, _loaded(seed=1), x, methods)
    copy = evaluation.randomized_copy(loaded, evaluation.randomization_units(loaded, x[:1]), seed=1)
    _assert_untouched(loaded.model, snap, flags)
    assert copy.model is not loaded.model and copy.normalization == loaded.normalization


def test_layers_run_from_the_logits_down_with_norms_joined_to_their_conv():
    layers = evaluation.randomization_units(_loaded(), _inputs(1))
    assert [layer.name for layer in layers] == [
        "classifier", "features.block5", "features.block4", "features.block3",
        "features.block2", "features.block1"]
    assert layers[1].modules == ("features.block5.conv", "features.block5.bn")


def test_deep_models_are_grouped_into_at_most_max_steps():
    def stage():
        return nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)))

    net = nn.Sequential(OrderedDict(stage1=stage(), stage2=stage(), head=nn.Linear(4, 2)))
    example = torch.zeros(1, 4)
    assert len(evaluation.randomization_units(net, example, max_steps=16)) == 7
    grouped = evaluation.randomization_units(net, example, max_steps=3)
    assert [layer.name for layer in grouped] == ["head", "stage2", "stage1"]
    assert grouped[1].modules == ("stage2.0", "stage2.1", "stage2.2")


def test_reinitialisation_is_seeded_cascading_and_private():
    loaded = _loaded()
    layers = evaluation.randomization_units(loaded, _inputs(1))
    rng_before = torch.get_rng_state()
    a = evaluation.randomized_copy(loaded, layers, seed=3, upto=2).model.state_dict()
    b = evaluation.randomized_copy(loaded, layers, seed=3, upto=2).model.state_dict()
    c = evaluation.randomized_copy(loaded, layers, seed=4, upto=2).model.state_dict()
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    orig = loaded.model.state_dict()
    for k in orig:
        assert torch.equal(a[k], b[k]), k
    changed = {k for k in orig if not torch.equal(a[k], orig[k])}
    assert "classifier.weight" in changed and "features.block5.conv.weight" in changed
    assert not any(k.startswith(("features.block1", "features.block4")) for k in changed)
    # Batch norm becomes the identity of an untrained network.
    assert torch.equal(a["features.block5.bn.running_var"], torch.ones(16))
    assert torch.equal(a["features.block5.bn.weight"], torch.ones(16))
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    # Independent mode gives a layer the very weights it gets in the cascade.
    only = evaluation.randomized_copy(loaded, layers, seed=3, only=1).model.state_dict()
    assert torch.equal(only["features.block5.conv.weight"], a["features.block5.conv.weight"])
    assert torch.equal(only["classifier.weight"], orig["classifier.weight"])


def test_parameters_without_reset_parameters_get_a_normal_of_the_same_std():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.linspace(-3, 3, 1000))

        def forward(self, x):
            return x * self.scale[: x.shape[-1]]

    m = Scaled()
    before = m.scale.detach().clone()
    evaluation.reinitialize(m, seed=0)
    assert not torch.equal(m.scale, before)
    assert float(m.scale.detach().std()) == pytest.approx(float(before.std()), rel=0.1)


def test_cascade_result_shapes_and_first_row():
    loaded, x = _loaded(), _inputs(3)
    seen = []
    res = evaluation.cascading_randomization(loaded, x, ["gradient", "gradcam"], seed=0,
                                         progress=lambda d, t: seen.append((d, t)))
    assert res.steps == ["original", "classifier", "+ features.block5", "+ features.block4",
                         "+ features.block3", "+ features.block2", "+ features.block1"]
    assert seen[-1] == (14, 14)
    for m in ("gradient", "gradcam"):
        for metric in ("spearman_abs", "spearman_signed", "ssim", "hog"):
            sim = res.similarity[m][metric]
            assert sim.shape == (7, 3)
            np.testing.assert_allclose(sim[0], 1.0, atol=1e-9)
            assert np.all(np.isfinite(sim))
        assert len(res.maps[m]) == 7 and res.maps[m][0].abs.shape == (3, 32, 32)
    v = res.verdicts()["gradient"]
    assert v.threshold == 0.5 and v.statistic == pytest.approx(res.cascade_mean("gradient"))
    assert res.verdicts(threshold=1.01)["gradient"].passes
    ind = evaluation.independent_randomization(loaded, x, ["gradient"], seed=0, keep_maps=False)
    assert ind.steps[1:] == [unit.name for unit in ind.units] and ind.maps == {}
    with pytest.raises(SaliencyError, match="cascading"):
        ind.verdicts()


def test_verdict_threshold_is_stated_and_applied():
    assert evaluation.verdict("m", np.array([0.2, 0.4])).passes
    judged = evaluation.verdict("m", np.array([0.6, 0.7]), threshold=0.5)
    assert not judged.passes and judged.text == "fails" and judged.threshold == 0.5
    assert evaluation.verdict("m", np.array([0.52]), threshold=0.5).text == "fails (borderline)"
    assert judged.statistic == pytest.approx(0.65)


def test_data_randomization_against_itself_finds_no_change():
    loaded, x = _loaded(), _inputs()
    same = evaluation.data_randomization(loaded, _loaded(), x, ["gradient", "gradcam"])
    for m in same.methods:
        np.testing.assert_allclose(same.similarity[m]["spearman_abs"], 1.0)
        assert not same.verdicts()[m].passes
    other = evaluation.data_randomization(loaded, _loaded(seed=7), x, ["gradient"])
    assert other.mean("gradient") < 0.99


def test_clear_errors_and_cancellation():
    loaded, x = _loaded(), _inputs()
    with pytest.raises(SaliencyError, match="unknown method"):
        evaluation.cascading_randomization(loaded, x, ["gradient", "lime"])
    with pytest.raises(SaliencyError, match="at least one"):
        evaluation.cascading_randomization(loaded, x, [])
    with pytest.raises(SaliencyError, match="mode"):
        evaluation.parameter_randomization(loaded, x, ["gradient"], mode="sideways")
    with pytest.raises(SaliencyError, match="image batch"):
        evaluation.cascading_randomization(loaded, x[0], ["gradient"])
    with pytest.raises(SaliencyError, match="same architecture"):
        evaluation.data_randomization(loaded, _loaded(widths=(4, 8, 8, 8)), x, ["gradient"])
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        evaluation.cascading_randomization(loaded, x, ["integrated_gradients"], cancel=stop)
