"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Model parameter randomization: re-initialise the model's layers, from the logits down one
layer at a time (cascading) or one layer alone (independent), and measure how much each
method's map changes. Data randomization: compare the maps of a model with those of the same
architecture trained on shuffled labels. A method whose maps barely change explains the input
(edges, textures), not the model.

Everything runs on a deep copy: the shared model is never touched.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import SaliencyError
from .metrics import SIMILARITY_METRICS, similarities, to_maps

DEFAULT_THRESHOLD = 0.5
VERDICT_METRIC = "spearman_abs"
BORDERLINE = 0.05
# Images for the checks come from seeds far from the bundled models' training and test seeds.
IMAGE_SEED_BASE = 7000
# Enough units for a clear cascade; deeper models are randomized block by block.
DEFAULT_MAX_STEPS = 16
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------
# Which layers, in which order


@dataclass(frozen=True)
class RandomizationUnit:
    """One randomization unit: module paths re-initialised together, and its display name."""

    name: str
    modules: tuple[str, ...]


def _module_and_wrapper(model):
    """(nn.Module, rewrap) where rewrap(module) gives back an object shaped like ``model``."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return inner, lambda m: dataclasses.replace(model, model=m)
    if isinstance(model, nn.Module):
        return model, lambda m: m
    raise SaliencyError(
        f"randomization needs a torch model (nn.Module or loaded model), got {type(model).__name__}"
    )


def _own_params(module: nn.Module) -> list[torch.nn.Parameter]:
    return list(module.parameters(recurse=False))


def execution_order(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Paths of the modules owning parameters, in the order their forward starts.

    Found with pre-forward hooks on a throwaway copy, so nothing is registered on ``module``.
    Modules never called (unused heads) are left out: they cannot change any map.
    """
    from .engine import model_lock

    with model_lock(module):  # no other session's hooks may be copied along
        probe = copy.deepcopy(module)
    order: list[str] = []
    handles = []
    for name, m in probe.named_modules():
        if _own_params(m):
            handles.append(m.register_forward_pre_hook(
                lambda _m, _i, name=name: order.append(name) if name not in order else None))
    try:
        with torch.no_grad():
            probe(example)
    finally:
        for h in handles:
            h.remove()
    return order


def randomization_layers(model, example: torch.Tensor, max_steps: int = DEFAULT_MAX_STEPS) -> list[RandomizationUnit]:
    """The cascade's units, logits first.

    A normalisation layer joins the weighted layer before it (a conv and its batch norm are one
    step). When there are more than ``max_steps`` units, consecutive units sharing a path prefix
    are merged, at the deepest prefix depth that gives at most ``max_steps`` steps
    (a ResNet is randomized stage by stage).
    """
    module, _ = _module_and_wrapper(model)
    modules = dict(module.named_modules())
    order = execution_order(module, example)
    if not order:
        raise SaliencyError("the model has no parameters to randomize")
    units: list[list[str]] = []
    for path in order:
        if units and isinstance(modules[path], NORM_TYPES):
            units[-1].append(path)
        else:
            units.append([path])
    grouped = units
    if len(units) > max_steps:
        depth = max(len(p.split(".")) for u in units for p in u)
        for d in range(depth, 0, -1):
            grouped = _group_by_prefix(units, d)
            if len(grouped) <= max_steps:
                break
    layers = [RandomizationUnit(_unit_name(u), tuple(u)) for u in grouped]
    return layers[::-1]


def _group_by_prefix(units: list[list[str]], depth: int) -> list[list[str]]:
    out: list[list[str]] = []
    keys: list[str] = []
    for u in units:
        key = ".".join(u[0].split(".")[:depth]) or u[0]
        if keys and keys[-1] == key:
            out[-1].extend(u)
        else:
            out.append(list(u))
            keys.append(key)
    return out


def _unit_name(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0] or "(root)"
    split = [p.split(".") for p in paths]
    common = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common) if common else f"{paths[0]}…{paths[-1]}"


# ---------------------------------------------------------------------------------------------
# Re-initialisation


def layer_seed(seed: int, index: int) -> int:
    """The seed of the index-th unit (logits = 0); the same in cascading and independent mode,
    so a layer gets the same random weights in both."""
    return int(seed) * 1_000_003 + 7919 * (index + 1)


@torch.no_grad()
def reinitialize(module: nn.Module, seed: int) -> None:
    """Fresh, seeded weights for ``module``'s own parameters (and buffers).

    Modules with ``reset_parameters`` and no parameterised children get their framework
    initialisation (Kaiming for conv/linear; batch norm becomes the identity with reset
    statistics: the state of an untrained network). Other parameters are drawn from a normal
    with the trained tensor's standard deviation. Drawing happens on the CPU under a private RNG
    state, so the weights are the same on every device and the global RNG is left alone.
    """
    has_child_params = any(True for c in module.children() for _ in c.parameters())
    if hasattr(module, "reset_parameters") and not has_child_params:
        fresh = copy.deepcopy(module).to("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh.reset_parameters()  # type: ignore[operator]
        for name, p in module.named_parameters(recurse=False):
            p.copy_(getattr(fresh, name).to(p.device, p.dtype))
        for name, b in module.named_buffers(recurse=False):
            b.copy_(getattr(fresh, name).to(b.device, b.dtype))
        return
    g = torch.Generator().manual_seed(seed)
    for _name, p in module.named_parameters(recurse=False):
        std = float(p.detach().float().std()) if p.numel() > 1 else 0.0
        std = std if math.isfinite(std) and std > 0 else 0.02
        p.copy_((torch.randn(p.shape, generator=g) * std).to(p.device, p.dtype))


def randomize_layer(module: nn.Module, layer: RandomizationUnit, seed: int) -> None:
    modules = dict(module.named_modules())
    for j, path in enumerate(layer.modules):
        reinitialize(modules[path], seed + j)


def model_copy(model):
    """A deep copy shaped like ``model`` (a LoadedModel stays a LoadedModel).

    Copied under the model's lock: another session's attribution may have hooks installed
    on the shared model at this moment, and those must not be copied along.
    """
    from .engine import model_lock

    module, rewrap = _module_and_wrapper(model)
    with model_lock(module):
        clone = copy.deepcopy(module)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return rewrap(clone), clone


def randomized_copy(model, layers: Sequence[RandomizationUnit], seed: int = 0, upto: int | None = None,
                    only: int | None = None):
    """A copy of ``model`` with layers[:upto] (cascading) or layers[only] (independent)
    re-initialised; ``layers`` as from randomization_layers (logits first)."""
    wrapped, clone = model_copy(model)
    chosen = [only] if only is not None else range(len(layers) if upto is None else upto)
    for i in chosen:
        randomize_layer(clone, layers[i], layer_seed(seed, i))
    return wrapped


# ---------------------------------------------------------------------------------------------
# Maps and their similarities


@dataclass
class MapSet:
    """2-D views of one method's attributions for N inputs, float32 [N, H, W]."""

    abs: np.ndarray
    signed: np.ndarray


def compute_maps(model, inputs: torch.Tensor, methods: Sequence[str], targets: torch.Tensor,
                 method_params: dict | None = None, cancel=None) -> dict[str, MapSet]:
    from .api import attribute

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
    layers[0..k-1] together, in independent mode only layers[k-1].
    similarity[method][metric] is float [len(steps), N] (row 0 compares the original with
    itself). maps[method][k] is the MapSet at step k (kept when keep_maps=True).
    """

    mode: str
    layers: list[RandomizationUnit]
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


def _resolve_targets(model, x: torch.Tensor, target) -> torch.Tensor:
    from .engine import Stats, forward_no_grad, locked_forward
    from .harness import resolve_targets, unwrap_model

    fn, module, _facts = unwrap_model(model)
    logits = forward_no_grad(locked_forward(fn, module), x, Stats())
    return resolve_targets(target, x.shape[0], x.device, logits).cpu()


def _check_methods(methods: Sequence[str]) -> list[str]:
    from .methods import REGISTRY

    methods = list(methods)
    if not methods:
        raise SaliencyError("pick at least one method")
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise SaliencyError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return methods


def _inputs_on(model, inputs: torch.Tensor) -> torch.Tensor:
    from .engine import module_device

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        raise SaliencyError("sanity checks need a float image batch [N, C, H, W]")
    module, _ = _module_and_wrapper(model)
    return inputs.detach().to(module_device(module))


def parameter_randomization(model, inputs: torch.Tensor, methods: Sequence[str],
                            target="predicted", mode: str = "cascading", seed: int = 0,
                            layers: Sequence[RandomizationUnit] | None = None,
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
    methods = _check_methods(methods)
    x = _inputs_on(model, inputs)
    layers = list(layers) if layers is not None else randomization_layers(model, x[:1], max_steps)
    targets = _resolve_targets(model, x, target)
    total = (len(layers) + 1) * len(methods)
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
    for i, layer in enumerate(layers):
        if mode == "independent":
            saved = {p: {k: v.clone() for k, v in modules[p].state_dict().items()} for p in layer.modules}
        randomize_layer(clone, layer, layer_seed(seed, i))
        record(step_maps(wrapped))
        if mode == "independent":
            for p, state in saved.items():
                modules[p].load_state_dict(state)
    names = ["original"] + [
        (l.name if mode == "independent" or i == 0 else f"+ {l.name}") for i, l in enumerate(layers)
    ]
    similarity = {m: {k: np.stack(v) for k, v in d.items()} for m, d in sims.items()}
    return RandomizationResult(mode, layers, names, targets.numpy(), int(seed), float(threshold),
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
    methods = _check_methods(methods)
    x = _inputs_on(model, inputs)
    check_same_architecture(model, random_model)
    targets = _resolve_targets(model, x, target)
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


def check_same_architecture(model, other) -> None:
    """The data test compares like with like: the same parameter names and shapes."""
    a, _ = _module_and_wrapper(model)
    b, _ = _module_and_wrapper(other)
    shapes_a = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    if shapes_a != shapes_b:
        differ = sorted(set(shapes_a) ^ set(shapes_b)) or sorted(
            k for k in shapes_a if shapes_a[k] != shapes_b[k])
        raise SaliencyError(
            "the data randomization test needs the same architecture trained on shuffled labels; "
            f"these two models differ (e.g. in {', '.join(differ[:3])})"
        )


# ---------------------------------------------------------------------------------------------
# Inputs and the report


# Models and their twin trained on shuffled labels, for the data randomization test.
RANDOM_LABEL_PAIRS = {"shapes-cnn": "shapes-cnn-random-labels"}


def random_labels_partner(model_name: str) -> str | None:
    return RANDOM_LABEL_PAIRS.get(model_name)


def shapes_inputs(loaded, samples: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``samples`` generated shapes images in ``loaded``'s input space, and their labels."""
    from PIL import Image

    from .training.shapes import generate

    if loaded.preprocess is None or loaded.kind != "image":
        raise SaliencyError(f"{loaded.name} is not an image model; sanity checks here need images")
    data = generate(samples, IMAGE_SEED_BASE + seed)
    x = torch.cat([loaded.preprocess(Image.fromarray(img)) for img in data.images])
    return x, data.labels


def image_methods() -> list[str]:
    from .methods import REGISTRY

    return [name for name, entry in REGISTRY.items() if entry.spec.family in ("input", "cam")]


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
            "re-initialised with `torch.manual_seed(saliency_core.sanity.layer_seed(seed, k) + j)` "
            "for its j-th module: "
            "conv/linear layers get PyTorch's default initialisation, batch norm layers become "
            "the identity with reset statistics)."),
            "- Cascading randomization re-initialises the layers from the logits down: "
            + " → ".join(f"`{layer.name}`" for layer in c.layers) + ".",
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


def write_figure(report: Report, path, sample: int = 0) -> Path:
    """A PNG grid of one input's maps: a row per method, the original map, each cascade step
    and (when run) the shuffled-label model's map; each map scaled to its own 99th percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import render

    c, d = report.cascade, report.data
    if not c.maps:
        raise SaliencyError("the report was computed without keeping maps")
    cols = len(c.steps) + (1 if d is not None and d.maps else 0)
    fig, axes = plt.subplots(len(c.methods), cols, figsize=(1.3 * cols, 1.45 * len(c.methods)),
                             squeeze=False)
    for r, m in enumerate(c.methods):
        panels = [ms.abs[sample] for ms in c.maps[m]]
        titles = ["original"] + [s.lstrip("+ ").split(".")[-1] for s in c.steps[1:]]
        if cols > len(c.steps) and d is not None:
            panels.append(d.maps[m][1].abs[sample])
            titles.append("shuffled labels")
        for k, (panel, title) in enumerate(zip(panels, titles)):
            ax = axes[r, k]
            ax.imshow(render.colorize(render.normalize(panel, "absolute", 99.0)))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(m, fontsize=7)
    fig.suptitle(f"{report.model}: maps as the layers are randomized from the logits down "
                 f"(seed {report.seed})", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


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
    from .models import load_model

    start = time.perf_counter()
    if not isinstance(samples, int) or samples < 1:
        raise SaliencyError("samples must be a positive integer")
    loaded = load_model(model_name, device=device)
    methods = _check_methods(methods or image_methods())
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
    from .engine import module_device

    return Report(model_name, random_name, samples, seed, float(threshold),
                  str(module_device(loaded.model)), cascade, data,
                  time.perf_counter() - start, command)


def register(subparsers) -> None:
    from .models.cache import REPO_ROOT, in_checkout

    # The measured table belongs in the repository's docs; an installed package writes beside you.
    default_out = REPO_ROOT / "docs" / "SANITY.md" if in_checkout() else Path("SANITY.md")

    p = subparsers.add_parser(
        "sanity", help="run the model and data randomization sanity checks and write the table",
        description="Adebayo et al.'s two sanity checks for every method: cascading model "
        "parameter randomization and data randomization (a model trained on shuffled labels). "
        "Prints a markdown table and writes it to --out.")
    p.add_argument("--model", default="shapes-cnn", help="image model name (see `models`)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="methods to test (default: every image method)")
    p.add_argument("--samples", type=int, default=8, help="number of generated images (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed for the images and the re-initialisation")
    p.add_argument("--random-labels-model", default=None,
                   help="model trained on shuffled labels for the data test (default: the "
                   "bundled pair, e.g. shapes-cnn-random-labels for shapes-cnn)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"Spearman(abs) below which a map counts as changed (default {DEFAULT_THRESHOLD})")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU when present)")
    p.add_argument("--out", default=str(default_out),
                   help=f"markdown file to write ('-' to only print); default {default_out}")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw the first image's maps, step by step, into this PNG file")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    parts = ["python -m saliency_core sanity", f"--model {args.model}"]
    if args.methods:
        parts.append("--methods " + " ".join(args.methods))
    parts += [f"--samples {args.samples}", f"--seed {args.seed}"]
    if args.random_labels_model:
        parts.append(f"--random-labels-model {args.random_labels_model}")
    if args.threshold != DEFAULT_THRESHOLD:
        parts.append(f"--threshold {args.threshold}")
    started = time.perf_counter()
    report = run_report(args.model, args.methods, args.samples, args.seed,
                        args.random_labels_model, args.threshold, args.device,
                        command=" ".join(parts), log=lambda s: print(s, file=sys.stderr),
                        keep_maps=args.figure is not None)
    text = report.markdown()
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.figure:
        print(f"figure written to {write_figure(report, args.figure)}", file=sys.stderr)
    return 0
