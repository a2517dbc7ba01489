"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Model parameter randomization: re-initialise the model's layers, from the logits down one
layer at a time (cascading) or one layer alone (independent), and measure how much each
method's map changes. Data randomization: compare the maps of a model with those of the same
architecture trained on shuffled labels. A method whose maps barely change explains the input
(edges, textures), not the model.

Everything runs on a deep copy: the shared model is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from saliency_core.errors import SaliencyError
from saliency_core.evaluation.maps import to_maps
from saliency_core.evaluation.model_calls import model_targets
from saliency_core.evaluation.randomization import (
    DEFAULT_MAX_STEPS,
    RandomizationUnit,
    model_copy,
    module_and_wrapper,
    randomization_units,
    randomize_unit,
    unit_seed,
)
from saliency_core.evaluation.similarity import SIMILARITY_METRICS, similarities

DEFAULT_THRESHOLD = 0.5
VERDICT_METRIC = "spearman_abs"
BORDERLINE = 0.05

Progress = Callable[[int, int], None]


@dataclass
class MapSet:
    """2-D views of one method's attributions for N inputs, float32 [N, H, W]."""

    abs: np.ndarray
    signed: np.ndarray


def compute_maps(model, inputs: torch.Tensor, methods: Sequence[str], targets: torch.Tensor,
                 method_params: dict | None = None, cancel=None) -> dict[str, MapSet]:
    from saliency_core.api import attribute

    out = {}
    for name in methods:
        params = dict((method_params or {}).get(name, {}))
        if cancel is not None:
            params["cancel"] = cancel
        attr = attribute(model, inputs, name, targets.tolist(), **params)
        out[name] = MapSet(to_maps(attr, "abs").astype(np.float32),
                           to_maps(attr, "signed").astype(np.float32))
    return out


def _similarities(a: MapSet, b: MapSet) -> dict[str, np.ndarray]:
    """similarities() on the stored 2-D views: Spearman(signed) needs the signed sums."""
    s_abs = similarities(a.abs, b.abs)
    s_signed = similarities(a.signed, b.signed)
    return {**s_abs, "spearman_signed": s_signed["spearman_signed"]}


@dataclass
class Verdict:
    method: str
    statistic: float  # mean Spearman(abs) with the original map (see the test's verdicts())
    threshold: float
    passes: bool

    @property
    def borderline(self) -> bool:
        """Within BORDERLINE of the threshold: other inputs or seeds may flip the verdict."""
        return abs(self.statistic - self.threshold) < BORDERLINE

    @property
    def text(self) -> str:
        return ("passes" if self.passes else "fails") + (" (borderline)" if self.borderline else "")


def verdict(method: str, spearman_abs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """A method passes when its map changes substantially: mean Spearman rank correlation of
    the absolute maps with the original map below ``threshold``."""
    stat = float(np.mean(spearman_abs))
    return Verdict(method, stat, float(threshold), bool(stat < threshold))


@dataclass
class RandomizationResult:
    """Maps and similarities for every randomization step.

    steps[0] is "original"; steps[k] names what is randomized at step k: in cascading mode
    units[0..k-1] together, in independent mode only units[k-1].
    similarity[method][metric] is float [len(steps), N] (row 0 compares the original with
    itself). maps[method][k] is the MapSet at step k (kept when keep_maps=True).
    """

    mode: str
    units: list[RandomizationUnit]
    steps: list[str]
    targets: np.ndarray
    seed: int
    threshold: float
    similarity: dict[str, dict[str, np.ndarray]]
    maps: dict[str, list[MapSet]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.similarity)

    def mean_curve(self, method: str, metric: str = VERDICT_METRIC) -> np.ndarray:
        return self.similarity[method][metric].mean(1)

    def final(self, method: str, metric: str = VERDICT_METRIC) -> float:
        """Mean similarity after the last step (cascading: the fully randomized model)."""
        return float(self.similarity[method][metric][-1].mean())

    def cascade_mean(self, method: str, metric: str = VERDICT_METRIC) -> float:
        """Mean similarity over every randomized step: the normalised area under the curve."""
        return float(self.similarity[method][metric][1:].mean())

    def verdicts(self, threshold: float | None = None) -> dict[str, Verdict]:
        """Judged on the mean over the whole cascade, not only on the fully random network.

        Randomizing the logits layer alone already makes the model a different function, so a
        map that survives the top layers unchanged explains the input rather than the model,
        even if it finally changes once the first convolutions are random too (Adebayo et
        al.'s observation on Guided Backprop). The mean over the cascade weighs every step.
        """
        if self.mode != "cascading":
            raise SaliencyError("verdicts are given for the cascading test")
        t = self.threshold if threshold is None else threshold
        return {m: verdict(m, self.similarity[m][VERDICT_METRIC][1:].mean(0), t)
                for m in self.methods}


def check_methods(methods: Sequence[str]) -> list[str]:
    from saliency_core.methods import REGISTRY

    methods = list(methods)
    if not methods:
        raise SaliencyError("pick at least one method")
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise SaliencyError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return methods


def _inputs_on(model, inputs: torch.Tensor) -> torch.Tensor:
    from saliency_core.engine.stream import module_device

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        raise SaliencyError("sanity checks need a float image batch [N, C, H, W]")
    module, _ = module_and_wrapper(model)
    return inputs.detach().to(module_device(module))


def parameter_randomization(model, inputs: torch.Tensor, methods: Sequence[str],
                            target="predicted", mode: str = "cascading", seed: int = 0,
                            units: Sequence[RandomizationUnit] | None = None,
                            max_steps: int = DEFAULT_MAX_STEPS,
                            threshold: float = DEFAULT_THRESHOLD,
                            method_params: dict | None = None, keep_maps: bool = True,
                            progress: Progress | None = None, cancel=None) -> RandomizationResult:
    """Model parameter randomization test on a copy of ``model``.

    Cascading: step k re-initialises the k top layers (logits first), so the last step is a
    fully random network. Independent: step k re-initialises layer k alone. Targets are fixed
    to the original model's (predicted, unless given) classes, so every map explains the same
    class. ``method_params`` maps a method name to its hyperparameters.
    """
    if mode not in ("cascading", "independent"):
        raise SaliencyError(f"mode must be 'cascading' or 'independent'; got {mode!r}")
    methods = check_methods(methods)
    x = _inputs_on(model, inputs)
    units = list(units) if units is not None else randomization_units(model, x[:1], max_steps)
    targets = model_targets(model, x, target)
    total = (len(units) + 1) * len(methods)
    done = [0]

    def step_maps(m) -> dict[str, MapSet]:
        out = {}
        for name in methods:
            out.update(compute_maps(m, x, [name], targets, method_params, cancel))
            done[0] += 1
            if progress is not None:
                progress(done[0], total)
        return out

    original = step_maps(model)
    sims: dict[str, dict[str, list]] = {m: {k: [] for k in SIMILARITY_METRICS} for m in methods}
    maps: dict[str, list] = {m: [] for m in methods} if keep_maps else {}

    def record(current: dict[str, MapSet]) -> None:
        for m in methods:
            for k, v in _similarities(original[m], current[m]).items():
                sims[m][k].append(v)
            if keep_maps:
                maps[m].append(current[m])

    record(original)
    wrapped, clone = model_copy(model)
    modules = dict(clone.named_modules())
    for i, unit in enumerate(units):
        if mode == "independent":
            saved = {p: {k: v.clone() for k, v in modules[p].state_dict().items()} for p in unit.modules}
        randomize_unit(clone, unit, unit_seed(seed, i))
        record(step_maps(wrapped))
        if mode == "independent":
            for p, state in saved.items():
                modules[p].load_state_dict(state)
    names = ["original"] + [
        (u.name if mode == "independent" or i == 0 else f"+ {u.name}") for i, u in enumerate(units)
    ]
    similarity = {m: {k: np.stack(v) for k, v in d.items()} for m, d in sims.items()}
    return RandomizationResult(mode, units, names, targets.numpy(), int(seed), float(threshold),
                               similarity, maps)


def cascading_randomization(model, inputs, methods, target="predicted", **kw) -> RandomizationResult:
    return parameter_randomization(model, inputs, methods, target, mode="cascading", **kw)


def independent_randomization(model, inputs, methods, target="predicted", **kw) -> RandomizationResult:
    return parameter_randomization(model, inputs, methods, target, mode="independent", **kw)


@dataclass
class DataRandomizationResult:
    """Maps of a trained model against the same architecture trained on shuffled labels."""

    model_name: str
    random_model_name: str
    targets: np.ndarray
    threshold: float
    similarity: dict[str, dict[str, np.ndarray]]  # method -> metric -> [N]
    maps: dict[str, tuple[MapSet, MapSet]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.similarity)

    def mean(self, method: str, metric: str = VERDICT_METRIC) -> float:
        return float(self.similarity[method][metric].mean())

    def verdicts(self, threshold: float | None = None) -> dict[str, Verdict]:
        t = self.threshold if threshold is None else threshold
        return {m: verdict(m, self.similarity[m][VERDICT_METRIC], t) for m in self.methods}


def data_randomization(model, random_model, inputs: torch.Tensor, methods: Sequence[str],
                       target="predicted", threshold: float = DEFAULT_THRESHOLD,
                       method_params: dict | None = None, keep_maps: bool = True,
                       progress: Progress | None = None, cancel=None) -> DataRandomizationResult:
    """Data randomization test: each method's maps for ``model`` and for ``random_model`` (same
    architecture, trained on shuffled labels) on the same inputs and the same target classes
    (the trained model's predictions unless given)."""
    methods = check_methods(methods)
    x = _inputs_on(model, inputs)
    check_same_architecture(model, random_model)
    targets = model_targets(model, x, target)
    sims, maps = {}, {}
    for j, name in enumerate(methods):
        a = compute_maps(model, x, [name], targets, method_params, cancel)[name]
        b = compute_maps(random_model, _inputs_on(random_model, inputs), [name], targets,
                         method_params, cancel)[name]
        sims[name] = _similarities(a, b)
        if keep_maps:
            maps[name] = (a, b)
        if progress is not None:
            progress(j + 1, len(methods))
    return DataRandomizationResult(getattr(model, "name", type(model).__name__),
                                   getattr(random_model, "name", type(random_model).__name__),
                                   targets.numpy(), float(threshold), sims, maps)


def architecture_difference(model, other) -> list[str]:
    """Parameter names that the two models do not share or that differ in shape (sorted;
    empty for the same architecture)."""
    a, _ = module_and_wrapper(model)
    b, _ = module_and_wrapper(other)
    shapes_a = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    return sorted(set(shapes_a) ^ set(shapes_b)) or sorted(
        k for k in shapes_a if shapes_a[k] != shapes_b[k])


def check_same_architecture(model, other) -> None:
    """The data test compares like with like: the same parameter names and shapes."""
    differ = architecture_difference(model, other)
    if differ:
        raise SaliencyError(
            "the data randomization test needs the same architecture trained on shuffled labels; "
            f"these two models differ (e.g. in {', '.join(differ[:3])})"
        )
