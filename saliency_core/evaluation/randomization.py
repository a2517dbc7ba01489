"""Model parameter randomization: which parameterised modules form a randomization unit, in
which order (logits first), and seeded re-initialisation of a copy (the shared model is never
touched)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from saliency_core.errors import SaliencyError

# Enough units for a clear cascade; deeper models are randomized block by block.
DEFAULT_MAX_STEPS = 16
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class RandomizationUnit:
    """One randomization unit: module paths re-initialised together, and its display name."""

    name: str
    modules: tuple[str, ...]


def module_and_wrapper(model):
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
    from saliency_core.engine.stream import model_lock

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


def randomization_units(model, example: torch.Tensor, max_steps: int = DEFAULT_MAX_STEPS) -> list[RandomizationUnit]:
    """The cascade's units, logits first.

    A normalisation layer joins the weighted layer before it (a conv and its batch norm are one
    step). When there are more than ``max_steps`` units, consecutive units sharing a path prefix
    are merged, at the deepest prefix depth that gives at most ``max_steps`` steps
    (a ResNet is randomized stage by stage).
    """
    module, _ = module_and_wrapper(model)
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
    named = [RandomizationUnit(_unit_name(u, modules), tuple(u)) for u in grouped]
    return named[::-1]


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


def _unit_name(paths: list[str], modules: dict[str, nn.Module] | None = None) -> str:
    """The unit's display name: the modules' common path. A norm that joined from another
    module (a transformer block's MLP is followed by the next block's first norm) does not
    count, or two blocks' MLPs would both be called ``vit.layers``."""
    weighted = [p for p in paths if modules is None or not isinstance(modules[p], NORM_TYPES)]
    own = _common_path(weighted or paths)
    if len(weighted) == 1 and own == weighted[0]:
        own = weighted[0].rpartition(".")[0]  # a conv and its batch norm: their block
    if own and all(p == own or p.startswith(own + ".") for p in paths):
        return _common_path(paths)
    return _common_path(weighted) if weighted else _common_path(paths)


def _common_path(paths: list[str]) -> str:
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


def unit_seed(seed: int, index: int) -> int:
    """The seed of the index-th unit (logits = 0); the same in cascading and independent mode,
    so a unit gets the same random weights in both."""
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


def randomize_unit(module: nn.Module, unit: RandomizationUnit, seed: int) -> None:
    modules = dict(module.named_modules())
    for j, path in enumerate(unit.modules):
        reinitialize(modules[path], seed + j)


def model_copy(model):
    """A deep copy shaped like ``model`` (a LoadedModel stays a LoadedModel).

    Copied under the model's lock: another session's attribution may have hooks installed
    on the shared model at this moment, and those must not be copied along.
    """
    from saliency_core.engine.stream import model_lock

    module, rewrap = module_and_wrapper(model)
    with model_lock(module):
        clone = copy.deepcopy(module)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return rewrap(clone), clone


def randomized_copy(model, units: Sequence[RandomizationUnit], seed: int = 0, upto: int | None = None,
                    only: int | None = None):
    """A copy of ``model`` with units[:upto] (cascading) or units[only] (independent)
    re-initialised; ``units`` as from randomization_units (logits first)."""
    wrapped, clone = model_copy(model)
    chosen = [only] if only is not None else range(len(units) if upto is None else upto)
    for i in chosen:
        randomize_unit(clone, units[i], unit_seed(seed, i))
    return wrapped
