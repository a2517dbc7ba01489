"""LayerCAM (Jiang et al. 2021): each activation weighted by its own positive gradient.

Grad-CAM gives a channel one weight for the whole map; LayerCAM keeps the weight per location,
ReLU(dscore/dA) * A, so earlier, finer layers still give usable maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saliency_core.methods.cam import cam_method, cam_spec

LAYERCAM = cam_spec("layercam", "LayerCAM",
                    "Activations weighted element-wise by their positive gradients, summed over "
                    "channels; fine-grained enough for earlier layers.", "Jiang et al. 2021")


def layercam_formula(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return F.relu((F.relu(g) * a).sum(1))


layercam = cam_method(layercam_formula)
