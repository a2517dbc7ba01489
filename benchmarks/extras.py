"""Measurements beyond the main table: incremental refinement, several targets from one
pass, peak memory of a long Integrated Gradients run, and reduced precision."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import torch

import saliency_core as sc
from saliency_core.harness.multi_target import attribute_targets
from saliency_core.harness.refine import Refiner

from .measure import interleaved, measure, median, tidy
from .setups import SIGMA, Subject


def refinement(subject: Subject, device, reps: int) -> list[dict]:
    """n -> 2n: the increment with a Refiner against computing 2n from scratch. Each round
    makes the coarse explanation untimed, then times the step to 2n and a fresh 2n run
    back to back; the first round is a warm-up."""
    model, x, t = subject.model, subject.x, subject.target
    rows = []
    # A GPU is far from busy with 32 points: there the step from 128 to 256 shows the saving.
    ig_n, sg_n = (128, 64) if device.type == "cuda" else (32, 16)
    cases = [
        ("integrated_gradients", "steps", ig_n, {"quadrature": "riemann_right", "baseline": "zeros"}),
        ("smoothgrad", "samples", sg_n, {"sigma": SIGMA}),
    ]
    for method, knob, n, params in cases:
        increments, scratches = [], []
        for round_ in range(reps + 1):
            refiner = Refiner(model, x, method, target=t, **params)
            refiner.explain(**{knob: n})
            tidy(device)
            finer = {knob: 2 * n}
            s_inc, _p, fine = measure(lambda r=refiner, f=finer: r.explain(**f), device)
            s_full, _p, direct = measure(
                lambda m=method, p=params, f=finer: sc.explain(model, x, m, target=t, **p, **f), device)
            if round_:
                increments.append(s_inc)
                scratches.append(s_full)
        inc, full = median(increments), median(scratches)
        diff = float((fine.attribution - direct.attribution).abs().max()
                     / direct.attribution.abs().max().clamp_min(1e-12))
        rows.append({
            "model": subject.name, "what": f"{method} {knob} {n} -> {2 * n}",
            "increment_s": inc, "scratch_s": full, "ratio": inc / full if inc and full else None,
            "new_passes": fine.metadata["passes"], "reused_passes": fine.metadata["reused_passes"],
            "max_rel_diff": diff,
        })
    return rows


def multi_target(subject: Subject, device, reps: int, k: int = 5) -> list[dict]:
    """Top-k classes from one forward and one batched backward against k separate calls."""
    model, x = subject.model, subject.x
    rows = []
    for method, params in (("gradcam", {"layer": subject.layer_path}), ("gradient", {})):
        together = attribute_targets(model, x, method=method, top_k=k, **params)
        classes = [int(c) for c in together.targets]
        res = interleaved({
            "one pass": lambda m=method, p=params: attribute_targets(model, x, method=m, top_k=k, **p),
            "separate": lambda m=method, p=params, cs=classes: [sc.attribute(model, x, m, target=c, **p) for c in cs],
        }, device, reps)
        sep = torch.cat(res["separate"]["output"])
        diff = float((together.attribution - sep).abs().max() / sep.abs().max().clamp_min(1e-12))
        one, many = median(res["one pass"]["times"]), median(res["separate"]["times"])
        rows.append({
            "model": subject.name, "what": f"{method} for the top {k} classes",
            "one_pass_s": one, "separate_s": many, "speedup": many / one if one and many else None,
            "batched_backward": together.metadata["backward_batched"], "max_rel_diff": diff,
        })
    return rows


def memory_probe(device: torch.device, model: str = "resnet50", size: int = 224, steps: int = 256) -> dict:
    """Peak memory of Integrated Gradients with ``steps`` steps on one image.

    CPU: a fresh subprocess (python -m benchmarks.memory_probe) reports getrusage's
    ru_maxrss, the whole process's peak resident memory, and its resident memory before the
    call. CUDA: torch.cuda.max_memory_allocated over the call, in this process."""
    if device.type == "cuda":
        from .memory_probe import run_probe

        return run_probe(model, size, steps, device)
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.getcwd())
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_probe", model, str(size), str(steps)],
        capture_output=True, text=True, env=env, check=False,
    )
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


PRECISIONS = ("fp32 strict", "tf32", "bf16 autocast")


@contextlib.contextmanager
def precision(name: str, device: torch.device):
    """float32 without TF32, float32 with TF32 matmuls and convolutions, or bf16 autocast.
    PyTorch's own defaults are restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        if name == "bf16 autocast":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precision_variants(subject: Subject, device, reps: int) -> list[dict]:
    """Time and error of reduced precision against strict float32, for ours."""
    model, x, t = subject.model, subject.x, subject.target
    rows = []
    for label, method, params in (("gradient", "gradient", {}),
                                  ("ig_32", "integrated_gradients", {"steps": 32, "baseline": "zeros"}),
                                  ("gradcam", "gradcam", {"layer": subject.layer_path})):
        fns = {}
        for name in PRECISIONS:
            def call(name=name, method=method, params=params):
                with precision(name, device):
                    return sc.attribute(model, x, method, target=t, **params)
            fns[name] = call
        res = interleaved(fns, device, reps)
        exact = res["fp32 strict"]["output"].double()
        base_time = median(res["fp32 strict"]["times"])
        for name in PRECISIONS:
            if res[name]["error"]:
                rows.append({"model": subject.name, "method": label, "precision": name, "error": res[name]["error"]})
                continue
            out = res[name]["output"].double()
            rel = float((out - exact).norm() / exact.norm().clamp_min(1e-30))
            tm = median(res[name]["times"])
            rows.append({
                "model": subject.name, "method": label, "precision": name, "time_s": tm,
                "speedup": base_time / tm if tm else None, "rel_error": rel, "within_1pct": rel <= 0.01,
            })
    return rows
