"""Image inputs with the wrong channels say what was expected; ``layer=`` takes a module as
well as a path; and the default CAM layer is never a module that runs twice per forward."""

import pytest
import torch
from torch import nn

import saliency_core as sc
from saliency_core.errors import InputShapeError, LayerError

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


def rgb_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "gradcam",
                                    "guided_backprop"])
def test_channels_last_inputs_are_named_with_the_fix(method):
    with pytest.raises(InputShapeError, match=r"channels-last.*\[N, 3, H, W\].*permute"):
        sc.attribute(rgb_net(), torch.rand(1, 12, 12, 3), method, target=0)


def test_one_channel_for_an_rgb_model_says_to_convert_it():
    with pytest.raises(InputShapeError, match=r"one channel.*RGB.*expand"):
        sc.explain(rgb_net(), torch.rand(2, 1, 12, 12), "smoothgrad", target=0, samples=2)
    loaded = sc.load_model("efficientnet-lite0", "cpu")
    with pytest.raises(InputShapeError, match="one channel"):
        sc.attribute(loaded, torch.rand(1, 1, 64, 64), "integrated_gradients", steps=2)


def test_layer_may_be_the_module_itself():
    net, x = rgb_net(), torch.rand(2, 3, 12, 12)
    by_path = sc.explain(net, x, "gradcam", target=1, layer="2")
    by_module = sc.explain(net, x, "gradcam", target=1, layer=net[2])
    assert torch.equal(by_path.attribution, by_module.attribution)
    assert by_module.metadata["layer"] == "2" and by_module.metadata["params"]["layer"] == "2"
    guided = sc.attribute(net, x, "guided_gradcam", target=1, layer=net[2])
    assert torch.equal(guided, sc.attribute(net, x, "guided_gradcam", target=1, layer="2"))
    with pytest.raises(LayerError, match="not a module of this model"):
        sc.attribute(net, x, "gradcam", target=1, layer=nn.Conv2d(4, 5, 3))


class SharedActivation(nn.Module):
    """One activation module called after every convolution, as some EfficientNet builds do."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.SiLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.head(h.mean((2, 3)))


def test_a_module_that_runs_twice_is_never_the_default_cam_layer():
    net, x = SharedActivation().eval(), torch.rand(1, 3, 10, 10)
    paths = [path for path, _shape in sc.candidate_layers(net, x)]
    assert "act" not in paths and paths[0] == "conv2"
    explained = sc.explain(net, x, "gradcam", target=0)
    assert explained.metadata["layer"] == "conv2"


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_normalization_makes_black_white_and_uniform_baselines_mean_pixels():
    net = rgb_net()
    torch.manual_seed(4)
    pixels = torch.rand(1, 3, 12, 12)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = (pixels - mean) / std
    for name, pixel in (("black", 0.0), ("white", 1.0)):
        got = sc.explain(net, x, "integrated_gradients", target=0, steps=8, baseline=name,
                         normalization=(MEAN, STD))
        reference = torch.full_like(pixels, pixel).sub(mean).div(std)
        expected = sc.attribute(net, x, "integrated_gradients", target=0, steps=8,
                                baseline=reference)
        torch.testing.assert_close(got.attribution, expected)
        with torch.no_grad():
            f_reference = net(reference)[0, 0].item()
        assert got.metadata["f_baseline"][0] == pytest.approx(f_reference, abs=1e-5)
    # Without it, inputs are taken as [0, 1] pixels: "black" is all zeros.
    plain = sc.attribute(net, x, "integrated_gradients", target=0, steps=8, baseline="black")
    torch.testing.assert_close(plain, sc.attribute(net, x, "integrated_gradients", target=0,
                                                   steps=8, baseline="zeros"))


@pytest.mark.parametrize("bad", [(MEAN,), ([0.5, 0.5], STD), (MEAN, [0.2, 0.0, 0.2]), "imagenet"])
def test_a_malformed_normalization_is_a_parameter_error(bad):
    with pytest.raises(sc.SaliencyError, match=r"normalization must be \(mean, std\)"):
        sc.attribute(rgb_net(), torch.rand(1, 3, 8, 8), "integrated_gradients", target=0,
                     steps=2, normalization=bad)
