"""python -m benchmarks: run the comparison, print the table, write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from saliency_core.engine.stream import (
    GradientStream,
    Options,
    Stats,
    chunk_memory_budget,
)

from . import extras as extra
from .contenders import CONTENDERS, Skip
from .measure import interleaved, median, tidy
from .report import describe, main_table, section, verdict, write_markdown
from .setups import MODELS, Config, Subject, build_subject, select_configs

REPO = Path(__file__).resolve().parent.parent
# Same noise and the same rule: worth comparing the maps. SmoothGrad libraries draw their
# own noise, the reference IG uses a trapezoid rule, and guided maps are not the floor's
# plain gradient; pytorch-grad-cam and the reference scale the Grad-CAM map before Guided
# Grad-CAM multiplies it in, which no rescaling of the product undoes.
COMPARABLE = {
    "floor": lambda c: c.method not in ("guided_backprop", "guided_gradcam"),
    "captum": lambda c: c.method != "smoothgrad",
    "grad-cam": lambda c: c.method != "guided_gradcam",
    "reference": lambda c: c.method not in ("smoothgrad", "integrated_gradients", "guided_gradcam"),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def defaults(device: torch.device, quick: bool) -> dict:
    """Sizes and repetitions that fit the time the run is meant to take: the full CPU run
    about ten minutes on 2 cores, a quick CUDA run well under four minutes."""
    if device.type == "cuda":
        return {"size": 224, "reps": 3 if quick else 5,
                "batches": (16, 32, 64, 128), "reference_limit": 0.7}
    return {"size": 64 if quick else 112, "reps": 2 if quick else 3,
            "batches": (8, 16, 32, 64), "reference_limit": 6 * 2**30}


def per_point_bytes(subject: Subject, device: torch.device) -> int:
    """The engine's own estimate of one point's autograd state for this model and input."""
    stream = GradientStream(subject.model, device, Options(), Stats(),
                            module=subject.model)
    return stream._bytes_per_point(lambda a, b: (subject.x, None))


def ours_chunk(subject: Subject, device: torch.device, points: int) -> int:
    stream = GradientStream(subject.model, device, Options(), Stats(),
                            module=subject.model)
    return stream.chunk_size(points, lambda a, b: (subject.x, None))


def best_batch(subject: Subject, device: torch.device, candidates, max_points: int,
               rounds: int = 3) -> tuple[int, dict]:
    """The batch size with the least time per point for one forward + input backward, among
    the candidates that fit the engine's memory budget. After a warm-up each size is timed
    ``rounds`` times, the sizes taking turns; the best time per point of each counts."""
    # Not the engine's CPU budget, which is itself a speed choice: the floor may try batches
    # up to 2 GiB of autograd state and keep whichever is fastest.
    budget = chunk_memory_budget(device, Options()) if device.type == "cuda" else 2 * 1024**3
    cap = max(1, budget // per_point_bytes(subject, device))
    sizes = sorted({min(b, max_points, cap) for b in candidates})
    model, t = subject.model, subject.target

    def one(b):
        p = subject.x.expand(b, *subject.x.shape[1:]).clone().requires_grad_(True)
        return torch.autograd.grad(model(p)[:, t].sum(), p)[0]

    res = interleaved({b: (lambda b=b: one(b)) for b in sizes}, device, rounds)
    per_point = {b: min(res[b]["times"]) / b for b in sizes}
    tidy(device)
    return min(per_point, key=per_point.get), per_point


def spin_up(subject: Subject, device: torch.device, seconds: float = 2.0) -> None:
    x = subject.x.expand(4, *subject.x.shape[1:]).clone()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        p = x.detach().requires_grad_(True)
        torch.autograd.grad(subject.model(p)[:, subject.target].sum(), p)


def scale_free_diff(a, b, minmax: bool = False) -> float | None:
    """Largest difference of two maps after scaling each to max |value| = 1 (or, for CAM
    maps, min-max to [0, 1]); None when they cannot be compared."""
    try:
        a = torch.as_tensor(a).detach().double().cpu().reshape(-1)
        b = torch.as_tensor(b).detach().double().cpu().reshape(-1)
    except (TypeError, RuntimeError):
        return None
    if a.shape != b.shape:
        return None

    def scaled(t):
        if minmax:
            t = t - t.min()
            return t / t.max().clamp_min(1e-30)
        return t / t.abs().max().clamp_min(1e-30)

    return float((scaled(a) - scaled(b)).abs().max())


def run_config(subject: Subject, cfg: Config, device, batch: int, reps: int, contenders,
               reference_ok, budget_s: float = 0.0) -> dict:
    fns, closers, skipped = {}, [], {}
    for name in contenders:
        builder = CONTENDERS[name]
        # Each contender gets its own copy of the input: some set requires_grad on it.
        mine = dataclasses.replace(subject, x=subject.x.detach().clone())
        try:
            if name == "reference":
                fn, close = builder(mine, cfg, batch, memory_ok=reference_ok)
            else:
                fn, close = builder(mine, cfg, batch)
        except Skip as why:
            skipped[name] = str(why)
            continue
        fns[name] = fn
        closers.append(close)
    try:
        res = interleaved(fns, device, reps, budget_s=budget_s)
    finally:
        for close in closers:
            close()
        tidy(device)
    times = {n: median(r["times"]) for n, r in res.items()}
    peaks = {n: median(r["peaks"]) for n, r in res.items()}
    errors = {n: r["error"] for n, r in res.items() if r["error"]}
    ours = times.get("ours")
    ratios = {n: (ours / t if ours and t else None) for n, t in times.items() if n != "ours"}
    diffs = []
    if "ours" in res and res["ours"]["output"] is not None:
        for n, r in res.items():
            if n != "ours" and r["output"] is not None and COMPARABLE[n](cfg):
                d = scale_free_diff(res["ours"]["output"], r["output"], minmax=cfg.method == "gradcam")
                if d is not None:
                    diffs.append(d)
    return {
        "model": subject.name, "size": subject.size, "config": cfg.key, "points": cfg.points,
        "batch": batch, "chunk": ours_chunk(subject, device, cfg.points) if cfg.method not in ("gradcam", "guided_gradcam") else 1,
        "times": times, "peaks": peaks, "ratios": ratios, "skipped": skipped, "errors": errors,
        "agreement": max(diffs) if diffs else None,
    }


def run_benchmark(device: torch.device, models, configs, reps: int, size: int, batches,
                  reference_limit, contenders=tuple(CONTENDERS), do_extras=True,
                  precision=False, memory_probe=True, loader=None, budget_s=None):
    """Everything a run measures: (rows of the main table, extras, notes)."""
    if budget_s is None:  # seconds a cheap row may spend on extra rounds
        budget_s = 3.0 if device.type == "cpu" else 1.0
    rows, notes = [], []
    extras = {"refinement": [], "multi_target": [], "precision": [], "memory": None}
    subjects = []
    for name in models:
        try:
            subject = build_subject(name, device, size, loader=loader)
        except Exception as exc:  # noqa: BLE001 - a missing bundled model is a note, not a failure
            notes.append(f"{name} skipped: {type(exc).__name__}: {exc}")
            log(notes[-1])
            continue
        subjects.append(subject)
        if not rows and device.type == "cpu":
            # A few seconds of passes first: thread pools and clocks settle, and the first
            # rows are not the only ones to pay for it.
            spin_up(subject, device)
        max_points = max(c.points for c in configs)
        batch, per_point = best_batch(subject, device, batches, max_points)
        log(f"[{name} {subject.size}] best batch {batch} "
            f"({', '.join(f'{b}: {t * 1000:.1f} ms/pt' for b, t in per_point.items())})")
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        limit = reference_limit * free if device.type == "cuda" else reference_limit
        bpp = per_point_bytes(subject, device)
        reference_ok = lambda points, bpp=bpp, limit=limit: points * bpp <= limit
        for cfg in configs:
            start = time.perf_counter()
            row = run_config(subject, cfg, device, batch, reps, contenders, reference_ok, budget_s)
            rows.append(row)
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in row["ratios"].items() if v is not None)
            log(f"  {cfg.key}: ours {row['times'].get('ours') or float('nan'):.4f} s; {ratios} "
                f"({time.perf_counter() - start:.0f} s)")
    if do_extras and subjects:
        # The largest model carries the extras: refinement and several targets.
        subject = subjects[0] if len(subjects) == 1 else max(
            (s for s in subjects if s.name.startswith("resnet")), key=lambda s: s.name, default=subjects[0])
        start = time.perf_counter()
        # In strict float32 on CUDA: with TF32 the exactness of the shortcuts would drown in
        # rounding that differs with the batch composition.
        with extra.precision("fp32 strict", device):
            extras["refinement"] = extra.refinement(subject, device, reps)
            extras["multi_target"] = extra.multi_target(subject, device, reps)
        log(f"refinement and several targets on {subject.name}: {time.perf_counter() - start:.0f} s")
        if precision:
            for s in subjects:
                extras["precision"] += extra.precision_variants(s, device, reps)
            log("precision variants done")
    if memory_probe:
        start = time.perf_counter()
        extras["memory"] = extra.memory_probe(device)
        log(f"memory probe: {extras['memory']} ({time.perf_counter() - start:.0f} s)")
    return rows, extras, notes


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions (and smaller images on the CPU); no subprocess memory probe on the CPU")
    p.add_argument("--models", nargs="+", default=list(MODELS), help=f"default: {' '.join(MODELS)}")
    p.add_argument("--methods", nargs="+", default=None,
                   help="rows by key (ig_32, smoothgrad_32, ...) or method name; default: all")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions after one warm-up")
    p.add_argument("--size", type=int, default=None, help="ResNet input size (default: 112 CPU, 224 CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--precision", action="store_true",
                   help="also measure TF32 and bf16 autocast against strict float32 (always on CUDA)")
    p.add_argument("--no-extras", action="store_true", help="skip refinement, several targets and the memory probe")
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--merge", type=Path, default=None, metavar="SECTION_MD",
                   help="measure nothing: put a section written elsewhere (e.g. $OUT/BENCHMARKS-cuda.md "
                        "from a GPU machine) into --out, replacing that device's section")
    return p.parse_args(argv)


def merge(section_file: Path, out: Path) -> int:
    body = section_file.read_text()
    device = torch.device("cuda" if body.startswith("## GPU") else "cpu")
    write_markdown(out, device, body)
    log(f"merged the {device.type} section of {section_file} into {out}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    if args.merge:
        return merge(args.merge, args.out)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("--device cuda: no CUDA device is available here")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    d = defaults(device, args.quick)
    reps = args.reps or d["reps"]
    size = args.size or d["size"]
    configs = select_configs(args.methods)
    info = describe(device)
    log(f"benchmark on {info.get('gpu', info['cpu'])}: models {args.models}, {len(configs)} methods, "
        f"{reps} reps, size {size}")
    started = time.perf_counter()
    rows, extras, notes = run_benchmark(
        device, args.models, configs, reps, size, d["batches"], d["reference_limit"],
        do_extras=not args.no_extras, precision=args.precision or device.type == "cuda",
        memory_probe=not args.no_extras and not (args.quick and device.type == "cpu"))
    elapsed = time.perf_counter() - started
    settings = {"reps": reps, "warm-up": 1, "ResNet input": f"{size}x{size}",
                "quick": args.quick, "wall time": f"{elapsed:.0f} s"}
    body = section(device, info, settings, rows, extras)
    if notes:
        body += "\nNotes: " + "; ".join(notes) + "\n"
    print(main_table(rows))
    print("\n".join(verdict(rows)))
    print(body[body.find("### "):] if "### " in body else "")
    if not args.no_write:
        write_markdown(args.out, device, body)
        log(f"wrote {args.out}")
    out_dir = os.environ.get("OUT")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tag = device.type
        (Path(out_dir) / f"BENCHMARKS-{tag}.md").write_text(body)
        (Path(out_dir) / f"bench-{tag}.json").write_text(json.dumps(
            {"machine": info, "settings": settings, "rows": rows, "extras": extras, "notes": notes},
            indent=1, default=str))
        log(f"wrote {out_dir}/BENCHMARKS-{tag}.md and bench-{tag}.json")
    log(f"done in {elapsed:.0f} s")
    return 0
