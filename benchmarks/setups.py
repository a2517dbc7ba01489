"""What is measured: the models, their inputs and the method configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

SIGMA = 0.15  # SmoothGrad noise, as a fraction of the input's value range (our default)


@dataclass(frozen=True)
class Config:
    """One row of the table: a method with its hyperparameters."""

    key: str  # row name, also what --methods selects
    method: str  # saliency_core method name
    params: dict = field(default_factory=dict)
    points: int = 1  # gradient evaluations the method needs: what the floor runs


CONFIGS = [
    Config("gradient", "gradient"),
    Config("gradient_x_input", "gradient_x_input"),
    Config("ig_32", "integrated_gradients", {"steps": 32, "baseline": "zeros"}, 32),
    Config("ig_128", "integrated_gradients", {"steps": 128, "baseline": "zeros"}, 128),
    Config("smoothgrad_32", "smoothgrad", {"samples": 32, "sigma": SIGMA}, 32),
    Config("smoothgrad_ig_8x16", "smoothgrad",
           {"samples": 8, "sigma": SIGMA, "base": "integrated_gradients", "steps": 16,
            "baseline": "zeros"}, 128),
    Config("guided_backprop", "guided_backprop"),
    Config("gradcam", "gradcam"),
    Config("guided_gradcam", "guided_gradcam"),
]


def select_configs(names: list[str] | None) -> list[Config]:
    """Rows by key, or by method name (integrated_gradients selects both IG rows)."""
    if not names:
        return list(CONFIGS)
    chosen = [c for c in CONFIGS if c.key in names or c.method in names]
    unknown = set(names) - {c.key for c in CONFIGS} - {c.method for c in CONFIGS}
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {[c.key for c in CONFIGS]}")
    return chosen


@dataclass
class Subject:
    """A model with its input and the facts every contender needs."""

    name: str
    model: nn.Module
    layer_path: str  # the CAM layer, the same for every contender
    x: torch.Tensor  # [1, C, H, W] on the device
    target: int = 0

    @property
    def layer(self) -> nn.Module:
        return dict(self.model.named_modules())[self.layer_path]

    @property
    def size(self) -> str:
        return "x".join(str(s) for s in self.x.shape[-2:])


MODELS = ("resnet18", "resnet50", "shapes-cnn")


def build_subject(name: str, device: torch.device, size: int, loader=None) -> Subject:
    """Random-weight torchvision ResNets (timing does not depend on the weights) at
    ``size`` x ``size``, or a model from saliency_core.load_model at its own input size."""
    torch.manual_seed(0)
    if name in ("resnet18", "resnet50"):
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        layer, hw = "layer4", (size, size)
    elif name == "tiny-cnn":  # for the smoke tests: seconds, not minutes
        model = _tiny_cnn()
        layer, hw = "2", (size, size)
    else:
        import saliency_core as sc

        loaded = (loader or sc.load_model)(name)
        model, layer = loaded.model, loaded.default_layer
        hw = tuple(loaded.input_size or (size, size))
    model = model.to(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, *hw, generator=g).to(device)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    return Subject(name, model, layer, x, target)


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
