"""How a layer's output lies over the image: which tokens are patches, the patch grid's height
and width, channels first or last.

For the families the workbench knows (Hugging Face image classifiers, timm, torchvision) the
answer comes from the model itself: the class, distillation and register tokens it declares
(``cls_token``, ``distillation_token``, ``register_tokens``, timm's ``num_prefix_tokens``,
torchvision's ``class_token``), the layout timm and torchvision document for their Swin
(``output_fmt == "NHWC"``, torchvision's permuted stages) and the size of the input actually
given, so a non-square input or a grid of another size than the one trained on maps right.
For any other model the number of leading tokens is searched (0 to 8, as before), but the grid
must still match the input's shape; without an input size the square grid is the last resort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from saliency_core.errors import LayerError

# Parameters that are one extra token each (or, for registers, one per row) placed before the
# patch tokens. A mask token replaces patches and adds none.
_PREFIX_PARAMETERS = (
    "cls_token",
    "class_token",
    "distillation_token",
    "dist_token",
    "register_tokens",
    "reg_token",
)
_MAX_GUESSED_PREFIX = 8
# How far a grid's cell may be from square (the ratio of its height and width in pixels)
# and still be taken for the patch grid of the input: ceil() on odd sizes stretches it a bit.
_CELL_RATIO_LIMIT = 1.35


@dataclass(frozen=True)
class Geometry:
    """What the model's own definition says about its layers' outputs.

    ``prefix_tokens`` is None when it is not known (then it is searched for each output);
    ``channels_last`` True when the model's 4-D stages are [N, h, w, C] (timm and torchvision
    Swin): it settles the outputs whose shape alone cannot say."""

    family: str = "unknown"  # "hugging face", "timm", "torchvision", "unknown"
    prefix_tokens: int | None = None
    channels_last: bool | None = None

    @property
    def known(self) -> bool:
        return self.family != "unknown"


def family_of(model: nn.Module) -> str:
    if getattr(model, "config", None) is not None and hasattr(
        model.config, "model_type"
    ):
        return "hugging face"
    module = type(model).__module__
    if module.startswith("timm."):
        return "timm"
    if module.startswith("torchvision."):
        return "torchvision"
    return "unknown"


def _declared_prefix(model: nn.Module) -> int:
    """Tokens the model's own parameters add in front of the patches."""
    count = 0
    for name, parameter in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _PREFIX_PARAMETERS:
            count += int(parameter.shape[1]) if parameter.dim() == 3 else 1
    return count


def geometry_of(model: nn.Module) -> Geometry:
    """The model's layout facts (see the module's text); ``Geometry()`` when unknown.

    Example:
        >>> import timm
        >>> geometry_of(timm.create_model("vit_tiny_patch16_224", num_classes=3)).prefix_tokens
        1
    """
    family = family_of(model)
    if family == "unknown":
        return Geometry()
    declared = getattr(model, "num_prefix_tokens", None)
    prefix = declared if isinstance(declared, int) else _declared_prefix(model)
    fmt = str(getattr(model, "output_fmt", "") or "").upper()
    channels_last = True if fmt == "NHWC" or _is_torchvision_swin(model) else None
    return Geometry(family, prefix, channels_last)


def _is_torchvision_swin(model: nn.Module) -> bool:
    return (
        type(model).__module__.startswith("torchvision.")
        and type(model).__name__ == "SwinTransformer"
    )


def _cell_ratio(rows: int, cols: int, input_hw) -> float:
    """How far from square one grid cell is (1.0 = square) on an input of ``input_hw``."""
    h, w = input_hw
    return math.exp(abs(math.log((h / rows) / (w / cols))))


def grid_shape(tokens: int, input_hw) -> tuple[int, int] | None:
    """The (rows, columns) of ``tokens`` patches laid over an input of ``input_hw`` (H, W):
    the factorisation whose cells are closest to square, if close enough, else None.

    Example:
        >>> grid_shape(280, (224, 320))
        (14, 20)
    """
    if tokens < 1:
        return None
    best = None
    for rows in range(1, tokens + 1):
        if tokens % rows:
            continue
        cols = tokens // rows
        ratio = _cell_ratio(rows, cols, input_hw)
        if best is None or ratio < best[0]:
            best = (ratio, rows, cols)
    if best is None or best[0] > _CELL_RATIO_LIMIT:
        return None
    return best[1], best[2]


def token_grid(num_tokens: int) -> tuple[int, int] | None:
    """(leading non-patch tokens, grid side) for a square patch grid, e.g. 197 -> (1, 14): the
    guess for a model nothing is known about, given no input size."""
    for extra in range(_MAX_GUESSED_PREFIX + 1):
        side = math.isqrt(num_tokens - extra) if num_tokens > extra else 0
        if side > 1 and side * side == num_tokens - extra:
            return extra, side
    return None


def token_layout(
    num_tokens: int, input_hw=None, geometry: Geometry | None = None
) -> tuple[int, int, int] | None:
    """(prefix tokens, rows, columns) for a [N, num_tokens, D] output, or None."""
    geometry = geometry or Geometry()
    # Layers before the class token is joined (the patch embedding) have the patches alone.
    known = (
        [geometry.prefix_tokens, 0]
        if geometry.prefix_tokens
        else [0]
        if geometry.prefix_tokens == 0
        else None
    )
    if input_hw is None:
        if known is not None:
            for prefix in known:
                side = math.isqrt(max(num_tokens - prefix, 0))
                if side > 0 and side * side == num_tokens - prefix:
                    return prefix, side, side
            return None
        found = token_grid(num_tokens)
        return None if found is None else (found[0], found[1], found[1])
    prefixes = (
        known
        if known is not None
        else range(min(_MAX_GUESSED_PREFIX, num_tokens - 1) + 1)
    )
    for prefix in prefixes:
        if prefix >= num_tokens:
            continue
        grid = grid_shape(num_tokens - prefix, input_hw)
        if grid is not None and grid[0] * grid[1] > 1:
            return prefix, grid[0], grid[1]
    return None


def _fits(rows: int, cols: int, input_hw) -> bool:
    return _cell_ratio(rows, cols, input_hw) <= _CELL_RATIO_LIMIT


def is_channels_last(
    t: torch.Tensor, input_hw=None, geometry: Geometry | None = None
) -> bool:
    """Whether a 4-D output is [N, h, w, C]: the pair of axes that lies over the input like a
    grid says; where both or neither do, what the model declares (timm's and torchvision's
    Swin keep their stages channels-last, but torchvision permutes the last one back)."""
    geometry = geometry or Geometry()
    if input_hw is not None:
        first = _fits(t.shape[2], t.shape[3], input_hw)
        last = _fits(t.shape[1], t.shape[2], input_hw)
        if first != last:
            return last
    if geometry.channels_last is not None:
        return geometry.channels_last
    # The shape alone: h == w != C, as Swin emits on square inputs.
    return t.shape[1] == t.shape[2] and t.shape[3] != t.shape[1]


def to_spatial(
    t: torch.Tensor, input_hw=None, geometry: Geometry | None = None
) -> torch.Tensor:
    """A layer output as [N, C, h, w].

    4-D outputs are channels-first unless the model declares them channels-last or their
    middle axes are the ones that lie over the input (``input_hw``); 3-D outputs are tokens
    [N, T, D] whose leading class/distillation/register tokens (``geometry``, else searched)
    are dropped and whose patches are laid out rows x columns as the input's shape says.

    Example:
        >>> to_spatial(torch.zeros(1, 1 + 14 * 20, 8), (224, 320), Geometry("timm", 1)).shape
        torch.Size([1, 8, 14, 20])
    """
    if input_hw is not None:
        input_hw = (int(input_hw[0]), int(input_hw[1]))
    if t.dim() == 4:
        return t.permute(0, 3, 1, 2) if is_channels_last(t, input_hw, geometry) else t
    if t.dim() == 3:
        # [N, C, 1] is a pooled vector (Swin's pooler), not one feature per token.
        layout = (
            token_layout(t.shape[1], input_hw, geometry) if t.shape[2] > 1 else None
        )
        if layout is None:
            where = f" over a {input_hw[0]}x{input_hw[1]} input" if input_hw else ""
            raise LayerError(
                f"cannot lay the {t.shape[1]} tokens of this layer out as a patch grid{where}"
            )
        prefix, rows, cols = layout
        return (
            t[:, prefix:, :].transpose(1, 2).reshape(t.shape[0], t.shape[2], rows, cols)
        )
    raise LayerError(
        f"layer output of shape {tuple(t.shape)} has no spatial grid; pick a convolutional "
        "or transformer block"
    )


def class_token_layer(model: nn.Module, geometry: Geometry) -> str | None:
    """The default CAM layer of a transformer with leading tokens: the first norm of its last
    block (the block's input, normalised). Later outputs reach the classifier through the
    class token alone, so their patch tokens get no gradient and Grad-CAM would be blank."""
    if not geometry.known or not geometry.prefix_tokens:
        return None
    modules = dict(model.named_modules())
    containers = (nn.ModuleList, nn.Sequential)
    blocks: list[str] = []
    norms: dict[str, str] = {}
    for name, module in modules.items():
        if not isinstance(module, nn.LayerNorm):
            continue
        block = _enclosing_block(name, modules, containers)
        if block is not None:
            blocks.append(block)
            norms.setdefault(block, name)
    return norms[blocks[-1]] if blocks else None


def _enclosing_block(name: str, modules: dict, containers) -> str | None:
    """The innermost ancestor of ``name`` that is an item of a list of blocks."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[: end - 1])
        if end - 1 > 0 and isinstance(modules.get(parent), containers):
            return ".".join(parts[:end])
    return None
