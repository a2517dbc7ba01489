"""The machine description, the tables and BENCHMARKS.md."""

from __future__ import annotations

import importlib
import os
import platform
import re
from importlib import metadata
from pathlib import Path

import torch

from .webapp import cpu_model

FLOOR_TARGET = 1.05
CONTENDER_LABELS = (("floor", "×floor"), ("captum", "×Captum"), ("grad-cam", "×grad-cam"),
                    ("reference", "×reference"))
PEAK_LABELS = (("ours", "ours"), ("floor", "floor"), ("captum", "Captum"), ("grad-cam", "grad-cam"),
               ("reference", "ref"))


def _version(name: str, module: str | None = None) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    try:  # a package put on the path without its metadata (copied, not installed)
        found = importlib.import_module(module or name)
    except ImportError:
        return "not installed"
    return getattr(found, "__version__", "present")


def _guided_rule() -> str:
    """Which path the guided rows measure; the native rule's build (once, about 10 s) is
    waited for here, before anything is timed."""
    from saliency_core.methods.guided import graph_rule

    if graph_rule.prepare(wait=900, settle=True):
        return "native graph rule"
    return f"Python hooks ({graph_rule.unavailable_reason()[:80]})"


def describe(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "captum": _version("captum"),
        "grad-cam": _version("grad-cam", "pytorch_grad_cam"),
        "device": str(device),
        "guided_rule": _guided_rule(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def _fmt_ratio(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def _fmt_ms(v) -> str:
    if v is None:
        return "—"
    return f"{v * 1000:.1f}" if v < 10 else f"{v * 1000:.0f}"


def _fmt_mb(v) -> str:
    return "—" if v is None else f"{v / 2**20:.0f}"


def _fmt_diff(v) -> str:
    return "—" if v is None else f"{v:.0e}"


def main_table(rows: list[dict]) -> str:
    head = ["model", "input", "method", "points", "chunk/batch", "ours ms",
            *[label for _k, label in CONTENDER_LABELS],
            "peak MB " + " / ".join(label for _k, label in PEAK_LABELS), "max diff"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratios = [_fmt_ratio(r["ratios"].get(k)) if k not in r["skipped"] else "n/a"
                  for k, _label in CONTENDER_LABELS]
        peaks = " / ".join(_fmt_mb(r["peaks"].get(k)) for k, _label in PEAK_LABELS)
        lines.append("| " + " | ".join([
            r["model"], r["size"], r["config"], str(r["points"]), f"{r['chunk']}/{r['batch']}",
            _fmt_ms(r["times"].get("ours")), *ratios, peaks, _fmt_diff(r["agreement"]),
        ]) + " |")
    return "\n".join(lines)


def times_table(rows: list[dict]) -> str:
    names = ["ours", "floor", "captum", "grad-cam", "reference"]
    lines = ["| model | method | " + " | ".join(f"{n} ms" for n in names) + " |",
             "|" + "---|" * (len(names) + 2)]
    for r in rows:
        cells = []
        for n in names:
            if n in r["skipped"]:
                cells.append("n/a")
            elif n in r["errors"]:
                cells.append("error")
            else:
                cells.append(_fmt_ms(r["times"].get(n)))
        lines.append(f"| {r['model']} | {r['config']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> list[str]:
    """Plain statements of which targets hold on this run and which do not."""
    out = []
    floor_rows = [r for r in rows if r["ratios"].get("floor") is not None]
    over = [r for r in floor_rows if r["ratios"]["floor"] > FLOOR_TARGET]
    out.append(f"- Within {FLOOR_TARGET}× of the floor: {len(floor_rows) - len(over)} of {len(floor_rows)} rows"
               + ("." if not over else "; not: " + ", ".join(
                   f"{r['model']} {r['config']} ({r['ratios']['floor']:.2f}×)" for r in over) + "."))
    for key, name in (("captum", "Captum"), ("grad-cam", "pytorch-grad-cam"), ("reference", "the reference loops")):
        have = [r for r in rows if r["ratios"].get(key) is not None]
        slower = [r for r in have if r["ratios"][key] > 1.0]
        if not have:
            continue
        out.append(f"- Never slower than {name}: {len(have) - len(slower)} of {len(have)} rows"
                   + ("." if not slower else "; slower on: " + ", ".join(
                       f"{r['model']} {r['config']} ({r['ratios'][key]:.2f}×)" for r in slower) + "."))
    errors = [(r["model"], r["config"], n, e) for r in rows for n, e in r["errors"].items()]
    for model, config, name, err in errors:
        out.append(f"- {name} failed on {model} {config}: {err}")
    return out


def extras_tables(extras: dict) -> str:
    parts = []
    if extras.get("refinement"):
        parts.append("### Incremental refinement (n -> 2n reuses the n earlier evaluations)\n")
        parts.append("| model | refinement | increment ms | 2n from scratch ms | increment / scratch | new passes | reused passes | max diff vs scratch |")
        parts.append("|---|---|---|---|---|---|---|---|")
        for r in extras["refinement"]:
            parts.append(f"| {r['model']} | {r['what']} | {_fmt_ms(r['increment_s'])} | {_fmt_ms(r['scratch_s'])} | "
                         f"{_fmt_ratio(r['ratio'])} | {r['new_passes']} | {r['reused_passes']} | {_fmt_diff(r['max_rel_diff'])} |")
        parts.append("")
    if extras.get("multi_target"):
        parts.append("### Several targets: one forward pass and one batched backward\n")
        parts.append("| model | what | one pass ms | separate calls ms | speed-up | batched backward | max diff |")
        parts.append("|---|---|---|---|---|---|---|")
        for r in extras["multi_target"]:
            parts.append(f"| {r['model']} | {r['what']} | {_fmt_ms(r['one_pass_s'])} | {_fmt_ms(r['separate_s'])} | "
                         f"{_fmt_ratio(r['speedup'])}× | {r['batched_backward']} | {_fmt_diff(r['max_rel_diff'])} |")
        parts.append("")
    probe = extras.get("memory")
    if probe:
        parts.append("### Memory: Integrated Gradients with many steps\n")
        if "error" in probe:
            parts.append(f"The probe failed: {probe['error']}\n")
        else:
            peak = probe["peak_bytes"] / 2**30
            parts.append(
                f"{probe['model']} at {probe['size']}×{probe['size']}, IG with {probe['steps']} steps on "
                f"{probe['device']}: peak {peak:.2f} GiB ({probe['method']}; "
                f"{probe['before_bytes'] / 2**30:.2f} GiB before the call), chunks of "
                f"{probe['chunk_size']} points, {probe['passes']} passes, {probe['seconds']:.1f} s."
                + (f" Within 4 GiB: {'yes' if peak <= 4 else 'no'}." if probe["device"] == "cpu" else "")
                + "\n")
    if extras.get("precision"):
        parts.append("### Reduced precision (ours; error relative to strict float32, Frobenius norm)\n")
        parts.append("| model | method | precision | ms | speed-up | relative error | within 1% |")
        parts.append("|---|---|---|---|---|---|---|")
        for r in extras["precision"]:
            if "error" in r:
                parts.append(f"| {r['model']} | {r['method']} | {r['precision']} | error: {r['error']} | | | |")
                continue
            parts.append(f"| {r['model']} | {r['method']} | {r['precision']} | {_fmt_ms(r['time_s'])} | "
                         f"{_fmt_ratio(r['speedup'])}× | {r['rel_error']:.1e} | {'yes' if r['within_1pct'] else 'no'} |")
        parts.append("")
    return "\n".join(parts)


def section(device: torch.device, info: dict, settings: dict, rows: list[dict], extras: dict) -> str:
    title = f"GPU: {info.get('gpu', 'CUDA')}" if device.type == "cuda" else f"CPU: {info['cpu']}"
    machine = ", ".join(f"{k} {v}" for k, v in info.items() if k != "load_average")
    load = info.get("load_average")
    lines = [
        f"## {title}",
        "",
        f"Machine: {machine}.",
        f"Load average at the start: {', '.join(f'{v:.1f}' for v in load)}." if load else "",
        f"Settings: {', '.join(f'{k} {v}' for k, v in settings.items())}.",
        "",
        ("Ratios are ours / theirs of median wall times (below 1: ours is faster). "
         "chunk/batch: ours' automatic chunk, and the floor's best batch size. "
         "Peak MB: memory above what was in use before the call (CPU: in the warm-up call). "
         "max diff: largest difference between ours and every contender that computes the same "
         "map, each map scaled to max |value| = 1 (Grad-CAM maps min-max scaled, as "
         "pytorch-grad-cam and the reference scale theirs); — where noise or rule differ."),
        *([("On CUDA the main table runs with PyTorch's defaults, which include TF32 "
            "convolutions (torch.backends.cudnn.allow_tf32=True): maps then agree to about 1e-3 "
            "between contenders. The refinement and several-target rows run in strict float32.")]
          if device.type == "cuda" else []),
        "",
        main_table(rows),
        "",
        "Targets on this run:",
        *verdict(rows),
        "",
        "Median wall times:",
        "",
        times_table(rows),
        "",
        extras_tables(extras),
    ]
    return "\n".join(lines).rstrip() + "\n"


HEADER = """# Benchmarks

Produced by `python -m benchmarks` (`make bench`, `make bench DEVICE=cuda`); each device's
section below is rewritten by a run on that device and the others are kept. See
`python -m benchmarks --help` and the docstrings of benchmarks/ for the method.

What is compared, on the same inputs in the same process, each figure the median of several
repetitions after a warm-up, the contenders taking turns (in a new random order each round)
so that a busy spell on a shared machine hits them alike; a call shorter than 0.25 s is run
once untimed right before each timed call, so that it starts on its own warm caches and not
on those another library just filled:

- **ours**: `saliency_core.attribute(...)` with automatic chunking.
- **floor**: one forward and one input-only backward over exactly the points the method
  needs (built beforehand, untimed), in evenly sized batches of the best batch size measured
  for the model within the engine's memory budget. For Grad-CAM the floor is a forward and a
  backward that stops at the target layer. Guided Backprop and Guided Grad-CAM are held to
  the plain-gradient floor, which leaves out what their ReLU rule itself costs (a
  rectification per ReLU in the backward pass; Captum and pytorch-grad-cam also call
  Python at every ReLU).
- **Captum** and **pytorch-grad-cam**: their own classes, given the floor's batch size
  where they take one (`internal_batch_size`, `nt_samples_batch_size`).
- **reference**: the naive loops of the user's reference document, re-implemented in
  benchmarks/reference_loops.py (`.backward()` with parameter gradients, IG with all
  steps + 1 points in one batch, SmoothGrad one copy at a time, Guided Backprop by swapping
  ReLU modules, Grad-CAM by hooks).

Peak memory: CPU — the kernel's high-water mark of resident memory (VmHWM) reset before each
call (`/proc/self/clear_refs`, after `malloc_trim`), minus the resident memory then
(tracemalloc does not see torch's allocations); the long-IG probe uses `getrusage` ru_maxrss
in a fresh subprocess. CUDA — `torch.cuda.max_memory_allocated` over the call.
Models: torchvision ResNet-18/50 with random weights (timing does not depend on them) and the
bundled shapes-cnn at its own 64×64 input.

Where ours stays above 1.05× the floor, and why:

- Guided Backprop and Guided Grad-CAM are held to the plain-gradient floor, so the ReLU rule
  itself shows: a rectification (one clamp) per ReLU in the backward pass. Ours calls no
  Python there: after the forward pass one C++ call hooks every ReLU/ReLU6 node of that
  pass's graph (saliency_core/methods/guided/graph_rule.py, built on first use and checked on a model's
  first guided call to give the operator-level rule's map); where it cannot be built or does
  not match, hooks on ReLU modules (a Python call per ReLU, as Captum and pytorch-grad-cam
  pay) or the operator-level rule. Guided Grad-CAM takes both maps from one backward pass
  where no ReLU lies between the layer and the score (ResNet's layer4, MobileNet's last
  block), else it also needs a second, short backward to the layer.
- On the bundled shapes-cnn a call takes 1-3 ms on the CPU, and the API's fixed cost (about
  0.1 ms of Python: validation, the call's context, hooks) shows in the ratio.
- On a GPU at batch size 1 and for the 32-point rows, a call takes a few milliseconds and is
  bound by kernel launches and Python, not by arithmetic: ours builds its path points and
  noisy copies on the device within the call, while the floor's points are made beforehand
  and untimed; each extra small kernel or Python call counts.
- The floor picks its batch size from a sweep; ours picks it from the memory budget (on the
  CPU 1 GiB of autograd state per chunk, beyond which chunks were measured to be slower).

Incremental refinement and several targets: `saliency_core.harness.refine.Refiner` and
`saliency_core.harness.multi_target.attribute_targets` (see their docstrings).
"""


def write_markdown(path: Path, device: torch.device, body: str) -> None:
    """Replaces this device's section of BENCHMARKS.md in place, keeping everything else: the
    other device's section and the sections other benchmarks write or people keep there (the
    engine service, browser latency, the load test). A new section goes after the CPU one (a
    GPU section) or right after the header (a CPU section); the header is refreshed."""
    tag = "cuda" if device.type == "cuda" else "cpu"
    block = f"<!-- BEGIN {tag} -->\n{body}<!-- END {tag} -->\n"
    text = path.read_text() if path.exists() else ""
    first = text.find("<!-- BEGIN ")
    if first >= 0:
        rest = text[first:]
    else:  # no device section yet: what is there stays, after the new one
        rest = text[len(HEADER):].lstrip("\n") if text.startswith(HEADER) else text
    mine = re.search(rf"<!-- BEGIN {tag} -->\n.*?<!-- END {tag} -->\n?", rest, re.DOTALL)
    if mine:
        rest = rest[:mine.start()] + block + rest[mine.end():]
    else:
        cpu_end = re.search(r"<!-- END cpu -->\n?", rest)
        at = cpu_end.end() if tag == "cuda" and cpu_end else 0
        rest = rest[:at] + ("\n" if at else "") + block + ("\n" if rest[at:] else "") + rest[at:]
    path.write_text(HEADER + "\n" + rest)


def replace_block(path: Path, begin: str, end: str, heading: str, markdown: str) -> None:
    """Put ``markdown`` between the ``begin`` and ``end`` markers of ``path`` (a benchmark's
    own block of BENCHMARKS.md), or add the block under ``heading`` at the end."""
    text = path.read_text()
    block = f"{begin}\n{markdown}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: block, text,
                      flags=re.DOTALL)
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    path.write_text(text)
