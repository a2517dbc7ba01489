"""Target layers for CAM methods: finding them by path, ranking candidates and the default;
their outputs become [N, C, h, w] maps as engine/geometry.py lays them out."""

from __future__ import annotations

import difflib
from collections import Counter
from contextlib import contextmanager

import torch
from torch import nn

from saliency_core.engine.geometry import (  # noqa: F401  (token_grid: its documented home)
    Geometry,
    class_token_layer,
    geometry_of,
    to_spatial,
    token_grid,
)
from saliency_core.engine.model_state import remembered
from saliency_core.errors import LayerError, SaliencyError

_SKIP_TYPES = (nn.Dropout, nn.Identity)


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.4)
    hint = close or names[-8:]
    raise LayerError(f"the model has no layer {path!r}; candidates: {', '.join(hint)}")


def module_path(model: nn.Module, module: nn.Module) -> str:
    """The path of ``module`` inside ``model``; a LayerError when it is not part of it."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name or "(the whole model)"
    raise LayerError(
        f"the {type(module).__name__} given as layer is not a module of this model; pass one "
        "of model's own modules (e.g. model.layer4) or its path"
    )


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def _spatial_ok(shape, input_hw=None, geometry: Geometry | None = None) -> bool:
    try:
        s = to_spatial(torch.empty(shape, device="meta"), input_hw, geometry)
    except LayerError:
        return False
    return s.shape[2] > 1 and s.shape[3] > 1


def spatial_map(model: nn.Module | None, t: torch.Tensor, input_hw) -> torch.Tensor:
    """``t`` (a layer output of ``model`` on inputs of size ``input_hw``) as [N, C, h, w], laid
    out as the model's own definition says (engine/geometry.py)."""
    return to_spatial(t, input_hw, model_geometry(model) if model is not None else None)


def model_geometry(model: nn.Module) -> Geometry:
    """``geometry_of(model)``, worked out once per model."""
    return remembered(model, "geometry", None, lambda: geometry_of(model))


def layer_shapes(model: nn.Module, example_input) -> list[tuple[str, tuple[int, ...]]]:
    """Every named module's output shape, in the order the outputs were produced."""
    from saliency_core.engine.stream import model_lock

    with model_lock(model):  # the hooks go on a model other sessions may be running
        return _recorded_shapes(model, example_input)


def _recorded_shapes(model: nn.Module, example_input) -> list[tuple[str, tuple[int, ...]]]:
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []

    def hook_for(name):
        def hook(_module, _inp, out):
            t = _first_tensor(out)
            if t is not None:
                seen.append((name, tuple(t.shape)))

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            if isinstance(example_input, dict):
                model(**example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def candidate_layers(model: nn.Module, example_input: torch.Tensor,
                     preferred: str | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """Layers whose outputs form a spatial grid, best first: the preferred one, then the
    deepest (last produced), which carries the most class-specific features.

    Args:
        model: The network.
        example_input: One input of the model's shape, e.g. ``torch.zeros(1, 3, 224, 224)``.
        preferred: A module path to list first when it qualifies.

    Returns:
        (module path, output shape) pairs usable as ``layer=`` for the CAM methods.

    Raises:
        RuntimeError: The model cannot run on ``example_input`` (whatever the model raises).

    Example:
        >>> import saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> sc.candidate_layers(loaded.model, loaded.example_input())[0]
        ('features', (1, 128, 8, 8))

    A module that runs more than once per forward pass (one activation module reused by
    every block, as some EfficientNet builds do) is left out: its captured output would be
    whichever call came last, not one layer's activations."""
    modules = dict(model.named_modules())
    seen = layer_shapes(model, example_input)
    calls = Counter(name for name, _shape in seen)
    geometry = model_geometry(model)
    input_hw = _input_hw(example_input)
    out, names = [], set()
    for name, shape in reversed(seen):
        if (name in names or calls[name] > 1 or isinstance(modules[name], _SKIP_TYPES)
                or not _spatial_ok(shape, input_hw, geometry)):
            continue
        names.add(name)
        out.append((name, shape))
    preferred = preferred or class_token_layer(model, geometry)
    if preferred in names:
        out.sort(key=lambda item: item[0] != preferred)
    return out


def _input_hw(example_input):
    if isinstance(example_input, torch.Tensor) and example_input.dim() == 4:
        return tuple(example_input.shape[-2:])
    return None


def default_layer(model: nn.Module, example_input) -> str:
    """The CAM layer used when none is given: for a transformer whose classifier reads its
    class token, the first norm of the last block (engine/geometry.py says why); otherwise
    the deepest layer with a spatial output that is not a pooling layer."""
    by_structure = class_token_layer(model, model_geometry(model))
    if by_structure is not None:
        return by_structure
    found = candidate_layers(model, example_input)
    if not found:
        raise LayerError("the model has no layer with a spatial output for CAM methods")
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
    modules = dict(model.named_modules())
    for name, _shape in found:
        if not isinstance(modules[name], pools):
            return name
    return found[0][0]


def unmappable(model: nn.Module, example_input, problem: LayerError) -> LayerError:
    """``problem`` (a layer output that is no grid over the image) with the layers that are."""
    try:
        good = [name for name, _shape in candidate_layers(model, example_input)[:5]]
    except (SaliencyError, RuntimeError):  # a courtesy: never hide the real problem
        good = []
    hint = f"; layers that map onto the image: {', '.join(good)}" if good else ""
    return LayerError(f"{problem}{hint}")


@contextmanager
def capture_output(module: nn.Module):
    """Keeps the module's output (still in the autograd graph) for the duration of a call.
    The hook is removed in ``finally`` so a shared model leaves exactly as it came."""
    store: dict = {}

    def hook(_module, _inp, out):
        store["output"] = _first_tensor(out)

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
