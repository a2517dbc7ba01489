"""Reference inputs for path methods, in the model's (normalised) input space."""

from __future__ import annotations

import math

import torch
import torchvision.transforms.functional as TF

from saliency_core.errors import ParameterError

IMAGE_BASELINES = ("zeros", "black", "white", "blur", "uniform", "gaussian")
RANDOM_BASELINES = ("uniform", "gaussian")


def checked_normalization(value, channels: int) -> tuple[list[float], list[float]]:
    """``(mean, std)`` given by a caller for a plain nn.Module, as two lists of floats with one
    value per channel (or one for all); a ParameterError saying what is wrong otherwise."""
    usage = "normalization must be (mean, std), e.g. ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])"
    try:
        mean, std = value
        mean = [float(v) for v in (mean if hasattr(mean, "__len__") else [mean])]
        std = [float(v) for v in (std if hasattr(std, "__len__") else [std])]
    except (TypeError, ValueError):
        raise ParameterError(f"{usage}; got {value!r}") from None
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise ParameterError(f"{usage}: {name} has {len(values)} values for inputs with "
                                 f"{channels} channels")
    if not all(v > 0 for v in std) or not all(math.isfinite(v) for v in mean + std):
        raise ParameterError(f"{usage}: std must be positive and every value finite")
    return mean, std


def pixel_bounds(x: torch.Tensor, normalization) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space values of black and white pixels, shaped [1, C or 1, 1, 1]."""
    if normalization is None:
        zero = torch.zeros((1, 1, 1, 1), dtype=x.dtype, device=x.device)
        return zero, zero + 1
    mean = torch.as_tensor(normalization[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(normalization[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def _generator(seed: int, index: int) -> torch.Generator:
    # Noise is drawn on the CPU from a per-input stream so results do not depend on the device
    # or on how many other inputs share the batch.
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + index)
    return g


def image_baseline(name, x: torch.Tensor, normalization=None, seed: int = 0, sample: int = 0) -> torch.Tensor:
    """Baseline for inputs x [N, C, H, W]; ``sample`` picks one of several random baselines."""
    if isinstance(name, torch.Tensor):
        b = name.to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(b, x.shape).clone()
        except RuntimeError:
            raise ParameterError(
                f"baseline tensor of shape {tuple(b.shape)} does not broadcast to the input "
                f"shape {tuple(x.shape)}"
            ) from None
    if name == "zeros":
        return torch.zeros_like(x)
    if name not in IMAGE_BASELINES:
        raise ParameterError(f"baseline must be one of {', '.join(IMAGE_BASELINES)} or a tensor; got {name!r}")
    if x.dim() != 4:
        raise ParameterError(f"the {name} baseline needs image inputs [N, C, H, W]")
    lo, hi = pixel_bounds(x, normalization)
    if name == "black":
        return torch.broadcast_to(lo, x.shape).clone()
    if name == "white":
        return torch.broadcast_to(hi, x.shape).clone()
    if name == "blur":
        h, w = x.shape[-2:]
        sigma = max(h, w) / 10
        k = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(h, w) // 2) - 1)
        k = max(3, k - (1 - k % 2))
        return TF.gaussian_blur(x, [k, k], [sigma, sigma])
    out = torch.empty_like(x)
    lo0, hi0 = lo[0], hi[0]
    for i in range(x.shape[0]):
        g = _generator(seed, i * 7919 + sample)
        noise_fn = torch.rand if name == "uniform" else torch.randn
        n = noise_fn(x.shape[1:], generator=g, dtype=torch.float32).to(x.device, x.dtype)
        if name == "uniform":
            out[i] = lo0 + n * (hi0 - lo0)
        else:
            # Gaussian noise around the input, 10% of the pixel range as std, kept valid.
            out[i] = torch.clamp(x[i] + 0.1 * (hi0 - lo0) * n, lo0, hi0)
    return out
