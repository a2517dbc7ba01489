"""Seeded noise for SmoothGrad: reproducible on every device, nested, and drawn once.

Noise is drawn on the CPU from one generator per input (seeded by seed and the input's
index), so results do not depend on the device or on what else shares the batch, and copy s
is the same whatever the total count: more samples extend, rather than replace, an estimate.

Drawing it is not free (a 32-sample SmoothGrad at 224 x 224 draws 4.8 M normals on one CPU
core, then copies them to the GPU, which can cost more than the model passes themselves).
The unit noise does not depend on the image, only on (seed, index, shape), so it is kept,
on the device it is used on, in a small byte-bounded cache: moving the sigma slider,
switching images of the same size or adding samples reuses what was drawn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from saliency_core.methods.baselines import _generator

CACHE_BYTES = {"cpu": 256 * 1024**2}
DEFAULT_CACHE_BYTES = 512 * 1024**2  # accelerators

_cache: OrderedDict = OrderedDict()  # key -> (unit noise [count, ...] float32, generator)
_cache_bytes: dict = {}
_lock = threading.Lock()


def _cache_budget(device: torch.device) -> int:
    return CACHE_BYTES.get(device.type, DEFAULT_CACHE_BYTES)


def unit_noise(seed: int, index: int, shape: tuple, first: int, count: int,
               device: torch.device) -> torch.Tensor:
    """Standard normal copies ``first .. first + count - 1`` of stream (seed, index), float32
    on ``device``; identical to drawing them one copy at a time from the CPU generator."""
    key = (int(seed), int(index), tuple(shape), str(device))
    with _lock:
        entry = _cache.pop(key, None)
        if entry is None:
            entry = (torch.empty((0, *shape), dtype=torch.float32, device=device), _generator(seed, index))
        have, generator = entry
        need = first + count - have.shape[0]
        if need > 0:
            fresh = torch.empty((need, *shape), dtype=torch.float32)
            for s in range(need):
                torch.randn(shape, generator=generator, dtype=torch.float32, out=fresh[s])
            have = torch.cat([have, fresh.to(device)]) if have.shape[0] else fresh.to(device)
        nbytes = have.numel() * have.element_size()
        if nbytes <= _cache_budget(device) // 2:
            _cache[key] = (have, generator)
            _cache_bytes[key] = nbytes
            _evict(device)
        else:
            _cache_bytes.pop(key, None)
        return have[first:first + count]


def _evict(device: torch.device) -> None:
    """Oldest entries on this device go first until the device's budget holds."""
    dev = str(device)
    mine = [k for k in _cache if k[3] == dev]
    total = sum(_cache_bytes[k] for k in mine)
    for k in mine:
        if total <= _cache_budget(device):
            break
        total -= _cache_bytes.pop(k)
        del _cache[k]


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _cache_bytes.clear()


class NoiseSource:
    """Noisy copies of inputs x [N, ...] with noise std sigma times each input's value range,
    handed out in order: take(k) returns the next k copies of every input."""

    def __init__(self, x: torch.Tensor, sigma: float, seed: int):
        self.x = x
        self.seed = seed
        # One device-to-host read for every input's value range.
        ranges = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).float().cpu()
        self.scales = [sigma * float(r) for r in ranges]
        self.drawn = 0

    def take(self, count: int) -> torch.Tensor:
        """[N * count, ...], input-major: the copies of input 0 first."""
        x = self.x
        out = torch.empty((x.shape[0], count, *x.shape[1:]), dtype=x.dtype, device=x.device)
        for i in range(x.shape[0]):
            noise = unit_noise(self.seed, i, tuple(x.shape[1:]), self.drawn, count, x.device)
            # Scaled in float32 before any cast, then added, as two correctly rounded ops
            # (not one fused multiply-add), so a copy's bits never depend on the count.
            if x.dtype == torch.float32:
                torch.mul(noise, self.scales[i], out=out[i])
                out[i].add_(x[i])
            else:
                torch.add(x[i], (noise * self.scales[i]).to(x.dtype), out=out[i])
        self.drawn += count
        return out.view(-1, *x.shape[1:])
