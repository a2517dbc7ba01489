"""The small CNN behind the bundled shapes models.

Built from plain modules (Conv2d, BatchNorm2d, ReLU modules, some in place, MaxPool2d) so every
saliency method applies, including the ones that act on ReLU modules. The last conv block keeps
an 8 x 8 map for a 64 x 64 input, where Grad-CAM can still localise a shape.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# Inputs are [0, 1] pixels mapped by (x - mean) / std; the loader reports the same pair.
MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]
DEFAULT_WIDTHS = (16, 32, 64, 128)
DEFAULT_LAYER = "features.block5"


def _conv_block(c_in: int, c_out: int, inplace: bool) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=inplace),
        )
    )


class ShapesCNN(nn.Module):
    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = DEFAULT_WIDTHS):
        super().__init__()
        w1, w2, w3, w4 = widths
        # In-place ReLUs on purpose in two blocks: hook-based methods must cope with both kinds.
        self.features = nn.Sequential(
            OrderedDict(
                block1=_conv_block(3, w1, inplace=True),
                pool1=nn.MaxPool2d(2),
                block2=_conv_block(w1, w2, inplace=False),
                pool2=nn.MaxPool2d(2),
                block3=_conv_block(w2, w3, inplace=True),
                block4=_conv_block(w3, w3, inplace=False),
                pool3=nn.MaxPool2d(2),
                block5=_conv_block(w3, w4, inplace=False),
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> normalised float [n, 3, H, W], the model's input space."""
    x = (
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        / 255.0
    )
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict(model, images: np.ndarray, chunk: int = 500) -> np.ndarray:
    """The class each shapes model predicts for uint8 images, in chunks; a Hugging Face
    model (shapes-vit) hands its scores back in ``.logits``."""
    model.eval()
    outputs = []
    for i in range(0, len(images), chunk):
        out = model(images_to_tensor(images[i : i + chunk]))
        outputs.append(getattr(out, "logits", out).argmax(1))
    return torch.cat(outputs).numpy() if outputs else np.empty(0, dtype=np.int64)
