"""XGradCAM (Fu et al. 2020): Grad-CAM with channel weights chosen for two axioms.

Each channel weighs sum(dscore/dA * A) / sum(A) over its map, the weighting under which the
map satisfies Fu et al.'s sensitivity and conservation axioms for layers followed by ReLU
and global pooling; plain Grad-CAM's spatial mean of the gradient does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saliency_core.methods.cam import cam_method, cam_spec

XGRADCAM = cam_spec("xgradcam", "XGradCAM",
                    "Grad-CAM with each channel weighted by its gradient averaged with the "
                    "activations as weights; satisfies sensitivity and conservation axioms.",
                    "Fu et al. 2020")
# Keeps an all-zero channel's weight finite (pytorch-grad-cam uses the same).
EPS = 1e-7


def xgradcam_formula(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    weights = (g * a).sum(dim=(2, 3), keepdim=True) / (a.sum(dim=(2, 3), keepdim=True) + EPS)
    return F.relu((weights * a).sum(1))


xgradcam = cam_method(xgradcam_formula)
