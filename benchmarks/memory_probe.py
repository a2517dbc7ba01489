"""Peak memory of one Integrated Gradients call, in a process of its own.

    python -m benchmarks.memory_probe resnet50 224 256 [cpu|cuda]

prints one JSON line. On the CPU the figure is getrusage's ru_maxrss (the process's peak
resident memory, everything included: Python, torch, the model, the chunks), so it must run
in a fresh process where nothing else has raised the mark.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch


def run_probe(model_name: str, size: int, steps: int, device: torch.device) -> dict:
    import saliency_core as sc

    from .setups import build_subject

    subject = build_subject(model_name, device, size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    e = sc.explain(subject.model, subject.x, "integrated_gradients", target=subject.target,
                   steps=steps, baseline="zeros")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    out = {
        "model": model_name, "size": size, "steps": steps, "device": device.type,
        "seconds": seconds, "chunk_size": e.metadata["chunk_size"], "passes": e.metadata["passes"],
    }
    if device.type == "cuda":
        out["method"] = "torch.cuda.max_memory_allocated"
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device)
        out["before_bytes"] = before
    else:
        out["method"] = "getrusage ru_maxrss of a fresh process"
        out["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["before_bytes"] = before_rss
    return out


def main(argv: list[str]) -> None:
    model, size, steps = argv[0], int(argv[1]), int(argv[2])
    device = torch.device(argv[3] if len(argv) > 3 else "cpu")
    print(json.dumps(run_probe(model, size, steps, device)))


if __name__ == "__main__":
    main(sys.argv[1:])
