"""Methods ranked on the same input by faithfulness and, given a mask, localisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from saliency_core.errors import SaliencyError
from saliency_core.evaluation.faithfulness import DIRECTIONS, perturbation_curve
from saliency_core.evaluation.localization import mass_in_mask, pointing_game
from saliency_core.evaluation.model_calls import model_parts, targets_of


def scoreboard(model, inputs: torch.Tensor, attributions: dict, target="predicted", mask=None,
               steps: int = 32, substrate: str = "blur", order_by: str = "abs",
               batch_size: int = 64, tolerance: int = 0,
               progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Rank methods on the same input(s) by faithfulness and, given a mask, localisation.

    ``attributions`` maps a method name to its attribution (input-shaped or [N, H, W] CAM).
    Each row: method, deletion_auc (lower is better), insertion_auc (higher is better),
    pointing and mass_in_mask when a mask is given (higher is better), each criterion's rank
    (1 = best), and ``rank``, the order of the mean of those ranks (ties share a rank).
    Rows come best first.
    """
    if not attributions:
        raise SaliencyError("no attributions to compare; pick at least one method")
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
        inputs = inputs.unsqueeze(0)
    fn, device, _ = model_parts(model)
    x = inputs.detach().to(device or inputs.device)
    targets = targets_of(target, x, fn)
    rows = []
    total = len(attributions) * 2
    for j, (name, attr) in enumerate(attributions.items()):
        row = {"method": name}
        for k, direction in enumerate(DIRECTIONS):
            curve = perturbation_curve(model, x, attr, targets, direction=direction, steps=steps,
                                       substrate=substrate, order_by=order_by,
                                       batch_size=batch_size)
            row[f"{direction}_auc"] = curve.mean_auc
            row[f"{direction}_curve"] = curve.scores.mean(0).tolist()
            if progress is not None:
                progress(2 * j + k + 1, total)
        row["fractions"] = curve.fractions.tolist()
        if mask is not None:
            row["pointing"] = float(pointing_game(attr, mask, tolerance).mean())
            row["mass_in_mask"] = float(mass_in_mask(attr, mask).mean())
        rows.append(row)
    criteria = {"deletion_auc": False, "insertion_auc": True}
    if mask is not None:
        criteria.update(pointing=True, mass_in_mask=True)
    for key, higher in criteria.items():
        ranks = _competition_ranks([r[key] for r in rows], higher)
        for r, rk in zip(rows, ranks):
            r[f"{key}_rank"] = rk
    mean_ranks = [float(np.mean([r[f"{k}_rank"] for k in criteria])) for r in rows]
    for r, rk, mr in zip(rows, _competition_ranks(mean_ranks, False), mean_ranks):
        r["mean_rank"] = mr
        r["rank"] = rk
    return sorted(rows, key=lambda r: (r["rank"], r["method"]))


def _competition_ranks(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1 = best; equal values share the better rank ("1, 2, 2, 4")."""
    keyed = [-v if higher_is_better else v for v in values]
    return [1 + sum(1 for o in keyed if o < v - 1e-12) for v in keyed]
