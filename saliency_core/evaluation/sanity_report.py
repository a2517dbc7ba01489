"""The measured sanity report (docs/SANITY.md): both tests on a bundled model, and its prose."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saliency_core.errors import SaliencyError
from saliency_core.evaluation.sanity import (
    BORDERLINE,
    DEFAULT_THRESHOLD,
    DataRandomizationResult,
    RandomizationResult,
    cascading_randomization,
    check_methods,
    data_randomization,
)
from saliency_core.evaluation.sanity_inputs import (
    IMAGE_SEED_BASE,
    image_methods,
    random_labels_partner,
    shapes_inputs,
)
from saliency_core.evaluation.similarity import SIMILARITY_METRICS


@dataclass
class Report:
    model: str
    random_model: str | None
    samples: int
    seed: int
    threshold: float
    device: str
    cascade: RandomizationResult
    data: DataRandomizationResult | None
    seconds: float
    command: str
    accuracy_note: str = ""

    def markdown(self) -> str:
        c, d = self.cascade, self.data
        verdicts = c.verdicts()
        dverdicts = d.verdicts() if d else {}
        lines = [
            "# Sanity checks for saliency maps: measured",
            "",
            ("The two tests of Adebayo et al., *Sanity Checks for Saliency Maps* (NeurIPS 2018), "
            f"run by this project on the `{self.model}` model. A method **passes** a test "
            "when its maps change substantially, and **fails** when they stay alike: then the map "
            "does not depend on what the model learned, only on the input. Similarity is the "
            "Spearman rank correlation of the absolute maps (channels summed) with the original "
            f"model's maps, averaged over the inputs; the threshold is **{self.threshold}**. "
            "The cascading verdict uses the mean over every step of the cascade (randomizing the "
            "logits layer alone already makes a different model, so a map that survives the top "
            "layers has failed even if it changes once the first convolutions are random too); "
            "the data verdict uses the similarity to the shuffled-label model's maps."),
            "",
            f"Reproduce with: `{self.command}`",
            "",
            (f"- Inputs: {self.samples} generated shapes images, "
            f"`saliency_core.training.shapes.generate({self.samples}, seed={IMAGE_SEED_BASE + self.seed})`; "
            "targets: the trained model's predicted classes, the same for every compared map."),
            (f"- Randomization seed: {self.seed} (layer k, counted from the logits, is "
            "re-initialised with `torch.manual_seed(saliency_core.evaluation.randomization.unit_seed(seed, k) + j)` "
            "for its j-th module: "
            "conv/linear layers get PyTorch's default initialisation, batch norm layers become "
            "the identity with reset statistics)."),
            "- Cascading randomization re-initialises the layers from the logits down: "
            + " → ".join(f"`{unit.name}`" for unit in c.units) + ".",
            f"- Data randomization compares with `{self.random_model}` (same architecture, trained "
            "on shuffled labels)." if d else "- Data randomization: no shuffled-label model for "
            "this model; not run.",
            (f"- Method hyperparameters: the defaults of each method's spec. Measured on "
             f"{self.device} with torch {torch.__version__}."),
            "",
            "## Verdicts",
            "",
            ("Similarity to the original map (1 = unchanged, 0 = unrelated). *Cascade mean* is "
            "Spearman(abs) averaged over all cascade steps and decides the cascading verdict; "
            "the four measures after full randomization (every layer random) and under data "
            "randomization are shown beside it."),
            "",
            ("| method | cascade mean | full: Spearman(abs) | Spearman(signed) | SSIM | HOG | verdict "
            "| data: Spearman(abs) | Spearman(signed) | SSIM | HOG | verdict |"),
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in c.methods:
            row = [f"`{m}`", f"{c.cascade_mean(m):.3f}"]
            row += [f"{c.final(m, k):.3f}" for k in SIMILARITY_METRICS]
            row.append(f"**{verdicts[m].text}**")
            if d:
                row += [f"{d.mean(m, k):.3f}" for k in SIMILARITY_METRICS]
                row.append(f"**{dverdicts[m].text}**")
            else:
                row += ["—"] * 5
            lines.append("| " + " | ".join(row) + " |")
        changed = [m for m in c.methods if verdicts[m].passes]
        kept = [m for m in c.methods if not verdicts[m].passes]
        unsure = [m for m in c.methods if verdicts[m].borderline]
        lines += [
            "",
            f"Maps that change when the weights are randomized: {_names(changed)}. "
            f"Maps that stay alike on a random network: {_names(kept)}."
            + (f" Close to the threshold: {_names(unsure)}." if unsure else ""),
        ]
        twins = _coinciding(c)
        if twins:
            lines.append("Methods whose maps coincide on this model at every step (so their rows "
                         "match): " + "; ".join(" = ".join(f"`{m}`" for m in g) for g in twins) + ".")
        if d:
            dchanged = [m for m in d.methods if dverdicts[m].passes]
            dkept = [m for m in d.methods if not dverdicts[m].passes]
            lines.append(
                f"Maps that change when the labels were random: {_names(dchanged)}. "
                f"Maps that stay alike: {_names(dkept)}."
            )
        lines += [
            "",
            "## Cascading randomization, step by step",
            "",
            ("Mean Spearman(abs) with the original map after each step (each column adds one "
            "more re-initialised layer, from the logits down)."),
            "",
            "| method | " + " | ".join(f"`{s}`" for s in c.steps[1:]) + " |",
            "|---|" + "---|" * (len(c.steps) - 1),
        ]
        for m in c.methods:
            lines.append(f"| `{m}` | " + " | ".join(f"{v:.3f}" for v in c.mean_curve(m)[1:]) + " |")
        lines += [
            "",
            (f"A verdict marked *borderline* has its statistic within {BORDERLINE} of the "
            "threshold: other images or seeds may flip it. Regenerate this file with the command "
            "above; the numbers move slightly with the torch version and device."),
            "",
        ]
        return "\n".join(lines)



def _coinciding(result: RandomizationResult) -> list[list[str]]:
    """Groups of methods with the same similarity curves for every input and step (e.g.
    Grad-CAM and HiResCAM on a network ending in global average pooling)."""
    groups: list[list[str]] = []
    for m in result.methods:
        for g in groups:
            if all(np.allclose(result.similarity[m][k], result.similarity[g[0]][k], atol=5e-3)
                   for k in SIMILARITY_METRICS):
                g.append(m)
                break
        else:
            groups.append([m])
    return [g for g in groups if len(g) > 1]


def _names(methods: list[str]) -> str:
    return ", ".join(f"`{m}`" for m in methods) if methods else "none"


def run_report(model_name: str = "shapes-cnn", methods: Sequence[str] | None = None,
               samples: int = 8, seed: int = 0, random_model_name: str | None = None,
               threshold: float = DEFAULT_THRESHOLD, device=None, command: str = "",
               log: Callable[[str], None] | None = None, keep_maps: bool = False) -> Report:
    from saliency_core.models import load_model

    start = time.perf_counter()
    if not isinstance(samples, int) or samples < 1:
        raise SaliencyError("samples must be a positive integer")
    loaded = load_model(model_name, device=device)
    methods = check_methods(methods or image_methods())
    x, _labels = shapes_inputs(loaded, samples, seed)
    say = log or (lambda _s: None)
    say(f"cascading randomization of {model_name}: {len(methods)} methods, {samples} images")
    cascade = cascading_randomization(loaded, x, methods, seed=seed, threshold=threshold,
                                      keep_maps=keep_maps)
    random_name = random_model_name or random_labels_partner(model_name)
    data = None
    if random_name:
        say(f"data randomization: {model_name} vs {random_name}")
        other = load_model(random_name, device=device)
        data = data_randomization(loaded, other, x, methods, threshold=threshold,
                                  keep_maps=keep_maps)
    from saliency_core.engine.stream import module_device

    return Report(model_name, random_name, samples, seed, float(threshold),
                  str(module_device(loaded.model)), cascade, data,
                  time.perf_counter() - start, command)
