"""A model handed over in training mode: every method leaves it bit-identical (parameters,
BatchNorm running statistics, num_batches_tracked, each submodule's mode) and explains what
it computes in evaluation mode."""

import copy

import pytest
import torch
from support.engine_models import tiny_hf_vit
from torch import nn

import saliency_core as sc
from saliency_core import evaluation
from saliency_core.engine.stream import logits_of
from saliency_core.methods import with_capability

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


def train_mode_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    with torch.no_grad():  # running statistics that differ from any batch's own
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(7)
    net.train()
    net[4].eval()  # a mixed state (one BatchNorm frozen) must come back as it was
    return net


def train_mode_vit():
    """A vision transformer with dropout in its attention and blocks, in training mode."""
    net = tiny_hf_vit(image_size=10, patch_size=5)
    net.config.attention_probs_dropout_prob = net.config.hidden_dropout_prob = 0.5
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.5
    return net.train()


def snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            [m.training for m in net.modules()])


def assert_unchanged(net, before):
    state, modes = before
    after = net.state_dict()
    assert state.keys() == after.keys()
    for key, value in state.items():
        assert torch.equal(value, after[key]), f"{key} changed"
    assert [m.training for m in net.modules()] == modes


def images(n=3, seed=1):
    torch.manual_seed(seed)
    return torch.rand(n, 3, 10, 10)


PARAMS = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4},
          "gradcam": {"layer": "3"}, "gradcam_plus_plus": {"layer": "3"},
          "hirescam": {"layer": "3"}, "guided_gradcam": {"layer": "3"}}


@pytest.mark.parametrize("method", [m.name for m in sc.methods()])
def test_every_method_leaves_a_training_model_as_it_was_and_explains_eval_mode(method):
    net = train_mode_vit() if method in with_capability("needs_attention") else train_mode_net()
    reference = copy.deepcopy(net).eval()
    before = snapshot(net)
    x = images()
    params = PARAMS.get(method, {})
    got = sc.explain(net, x, method, target=2, **params)
    assert_unchanged(net, before)
    expected = sc.attribute(reference, x, method, target=2, **params)
    torch.testing.assert_close(got.attribution, expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(got.probabilities, logits_of(reference(x)).softmax(1))


def test_layer_listing_and_scoreboard_leave_a_training_model_as_it_was():
    net = train_mode_net()
    before = snapshot(net)
    x = images(1)
    assert sc.candidate_layers(net, x)
    evaluation.scoreboard(net, x, {"g": sc.attribute(net, x, "gradient", target=0)}, target=0,
                       steps=4)
    assert_unchanged(net, before)
