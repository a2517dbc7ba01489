"""Guided Backprop, DeconvNet and Guided Grad-CAM on clipping activations (ReLU6, Hardtanh,
clamp), checked against the rules written out by hand; and a refusal that names the
activation when a model has one with no guided rule."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import saliency_core as sc
from saliency_core.errors import MethodNotApplicableError

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


class Clamp(nn.Module):
    """An activation written as a functional clamp, as some model code does."""

    def forward(self, x):
        return torch.clamp(x, 0.0, 3.0)


def clipping_net(seed=0):
    torch.manual_seed(seed)
    # Each activation clips to its own range: ReLU6 [0, 6], Hardtanh [-1, 2], clamp [0, 3].
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(6, 6, 3, padding=1), nn.Hardtanh(-1.0, 2.0),
        nn.Conv2d(6, 5, 3, padding=1), Clamp(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4),
    ).eval()


BOUNDS = {1: (0.0, 6.0), 3: (-1.0, 2.0), 5: (0.0, 3.0)}


def hand_rule(net, x, target, rule):
    """The backward pass written out: each layer's vector-Jacobian product by its formula, and
    at every clipping activation the rule itself."""
    pre, h = {}, x
    for i, layer in enumerate(net):
        if i in BOUNDS:
            pre[i] = h
        h = layer(h)
    conv = {i: layer for i, layer in enumerate(net) if isinstance(layer, nn.Conv2d)}
    g = net[8].weight[target].view(1, -1, 1, 1).expand(x.shape[0], -1, *pre[5].shape[2:])
    g = g / (pre[5].shape[2] * pre[5].shape[3])  # average pooling's backward
    for i in (5, 3, 1):
        lo, hi = BOUNDS[i]
        linear = (pre[i] > lo) & (pre[i] < hi)
        g = g.clamp(min=0) * linear if rule == "guided" else g.clamp(min=0)
        c = conv[i - 1]
        shape = x.shape if i == 1 else pre[i - 2].shape
        g = torch.nn.grad.conv2d_input(shape, c.weight, g, padding=1)
    return g.detach()


def inputs(n=2, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, 3, 8, 8) * 3  # wide enough that every activation clips somewhere


@pytest.mark.parametrize("method,rule", [("guided_backprop", "guided"), ("deconvnet", "deconv")])
def test_clipping_activations_follow_the_hand_written_rule(method, rule):
    net, x = clipping_net(), inputs()
    expected = hand_rule(net, x, 2, rule)
    got = sc.attribute(net, x, method, target=2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    again = sc.attribute(net, x, method, target=2)  # later calls may take the hooks' path
    torch.testing.assert_close(again, expected, rtol=1e-4, atol=1e-6)
    plain = sc.attribute(net, x, "gradient", target=2)
    assert not torch.allclose(got, plain, atol=1e-6), "the plain gradient came back"


def test_guided_gradcam_is_the_clipping_guided_map_times_gradcam():
    net, x = clipping_net(), inputs()
    guided = hand_rule(net, x, 1, "guided")
    cam = sc.attribute(net, x, "gradcam", target=1, layer="5")
    got = sc.attribute(net, x, "guided_gradcam", target=1, layer="5")
    torch.testing.assert_close(got, guided * cam[:, None], rtol=1e-4, atol=1e-6)


def test_in_place_relu6_as_efficientnet_lite_uses_it():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = inputs(1)
    z = net[1](net[0](x)).detach()
    w = net[5].weight[0].view(1, -1, 1, 1) / (z.shape[2] * z.shape[3])
    g = w.clamp(min=0) * ((z > 0) & (z < 6))  # one activation: the rule, then BN and conv
    scale = (net[1].weight / torch.sqrt(net[1].running_var + net[1].eps)).view(1, -1, 1, 1)
    expected = torch.nn.grad.conv2d_input(x.shape, net[0].weight, g * scale)
    for _ in range(2):
        torch.testing.assert_close(sc.attribute(net, x, "guided_backprop", target=0),
                                   expected.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_efficientnet_lite_gets_the_guided_rule():
    loaded = sc.load_model("efficientnet-lite0", "cpu")
    x = torch.zeros(1, 3, 64, 64)
    x[:, :, 16:48, 16:48] = 0.8
    guided = sc.attribute(loaded, x, "guided_backprop", target=281)
    plain = sc.attribute(loaded, x, "gradient", target=281)
    assert guided.abs().sum() > 0 and not torch.allclose(guided, plain)
    assert sc.attribute(loaded, x, "guided_gradcam", target=281).shape == x.shape


class Functional(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv, self.fc, self.act = nn.Conv2d(3, 4, 3), nn.Linear(4, 3), act

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
@pytest.mark.parametrize("act,name", [(F.gelu, "GELU"), (F.silu, "SiLU"), (torch.tanh, "Tanh"),
                                      (F.leaky_relu, "LeakyReLU")])
def test_an_activation_without_a_rule_is_named(method, act, name):
    params = {"layer": "conv"} if method == "guided_gradcam" else {}
    with pytest.raises(MethodNotApplicableError, match=name) as caught:
        sc.attribute(Functional(act), inputs(1), method, target=0, **params)
    assert "transformers" not in str(caught.value)


def test_a_relu_network_with_an_unruled_activation_is_refused_not_half_guided():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Hardswish(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with pytest.raises(MethodNotApplicableError, match="also uses Hardswish"):
        sc.attribute(net, inputs(1), "guided_backprop", target=0)
