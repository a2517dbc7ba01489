"""Wall time and peak memory of one call, on the CPU or a CUDA device.

Peak memory on the CPU: Python's tracemalloc does not see torch's allocations, so the
kernel's own high-water mark of resident memory is used. Before each measured call, freed
heap memory is handed back to the system (malloc_trim) and the mark is reset to the current
resident size (writing 5 to /proc/self/clear_refs); the call's peak is then
VmHWM - VmRSS(before). Where the reset is not allowed, each measurement falls back to "n/a"
(the subprocess probe in extras.py measures with getrusage instead). On CUDA it is
torch.cuda.max_memory_allocated() over the call, minus what was allocated before.
"""

from __future__ import annotations

import ctypes
import gc
import random
import re
import statistics
import time
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _reset_cpu_peak() -> int | None:
    """Resident bytes now, with the high-water mark reset to it; None if not possible."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    rss = _status_kb("VmRSS")
    return None if rss is None else rss * 1024


def _cpu_peak_since(base: int | None) -> int | None:
    hwm = _status_kb("VmHWM")
    if base is None or hwm is None:
        return None
    return max(0, hwm * 1024 - base)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device: torch.device, memory: bool = True):
    """(seconds, peak bytes or None, result) of one call of fn()."""
    sync(device)
    base = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    elif memory:
        base = _reset_cpu_peak()
    start = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _cpu_peak_since(base) if memory else None
    return seconds, peak, out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def tidy(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def interleaved(fns: dict, device: torch.device, reps: int, warmup: int = 1,
                budget_s: float = 0.0, max_reps: int = 30, primer_s: float = 0.25):
    """Times every callable ``reps`` times after ``warmup`` calls, taking turns (in a new
    random order each round), so a busy spell on a shared machine hits every contender alike.
    Returns {name: {"times": [...], "peaks": [...], "output": first result}}; a contender
    that raises is recorded with its error instead.

    On the CPU, peak memory is taken in the warm-up call only: resetting the mark hands the
    free heap back to the system first, and the page faults that follows would slow the
    timed call.

    Rows that are cheap get more rounds, up to ``max_reps``, while a round fits
    ``budget_s`` seconds (judged by the warm-up): short calls are the noisiest. A call shorter
    than ``primer_s`` is also run once, untimed, right before each timed call: otherwise it
    would start on caches filled by whichever contender ran before it, and with five
    contenders in a fixed cycle that is always the same one (on a 2 ms model that cost one
    contender 20%). Calls that long are what a user repeating one library's calls sees."""
    results = {name: {"times": [], "peaks": [], "output": None, "error": None} for name in fns}
    names = list(fns)
    measured = {}
    for _ in range(warmup):
        for name in names:
            if results[name]["error"]:
                continue
            try:
                first_s, peak, out = measure(fns[name], device)
                measured[name] = first_s
            except Exception as exc:  # noqa: BLE001 - reported in the table
                results[name]["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                tidy(device)
                continue
            if results[name]["output"] is None:
                results[name]["output"] = out
            if device.type != "cuda":
                results[name]["peaks"].append(peak)
    round_s = sum(measured.values())
    if budget_s and round_s > 0:
        reps = max(reps, min(max_reps, int(budget_s / round_s)))
    shuffler = random.Random(0)
    for _ in range(reps):
        # A fresh order each round: a fixed cycle would always seat the same contender
        # right after the same (cache- and allocator-disturbing) neighbour.
        order = list(names)
        shuffler.shuffle(order)
        for name in order:
            if results[name]["error"]:
                continue
            try:
                if measured.get(name, 1.0) < primer_s:
                    fns[name]()
                seconds, peak, out = measure(fns[name], device, memory=device.type == "cuda")
            except Exception as exc:  # noqa: BLE001 - reported in the table
                results[name]["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                tidy(device)
                continue
            results[name]["times"].append(seconds)
            if device.type == "cuda":
                results[name]["peaks"].append(peak)
            if results[name]["output"] is None:
                results[name]["output"] = out
    return results
