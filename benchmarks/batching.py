"""What batching in the scheduler gains: ``python -m benchmarks.batching``.

Several sessions ask for the same model, method and settings on different images at the same
moment (a class opening the same exercise, colleagues following one link with their own
photos). Each round, a gate job holds the device's only slot (``concurrency=1``, the default
on a GPU) until every session's request is queued, then lets go; from that moment we time how
long each request takes to come back and how long the round takes. The requests are the app's
own (``workbench.jobs.compute.image_request``: its ``run_batch`` and ``batch_key``) and go through
the app's ``workbench.jobs.scheduler.Scheduler``, once with batching (``max_batch`` = sessions: one
pass over all images) and once without (``max_batch=1``: one pass per request). The two modes
take turns in a new random order each repetition, so a busy spell hits both alike.

Before timing, one round of each mode checks that a batched request returns the same map as
the same request alone (the largest difference is reported). ``--write`` puts the table into
BENCHMARKS.md; ``--json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Scheduler batching (`python -m benchmarks.batching`)"
BEGIN, END = "<!-- batching-benchmark:begin -->", "<!-- batching-benchmark:end -->"
MODES = {"batched": None, "one at a time": 1}  # max_batch; None: as many as there are sessions

from benchmarks.report import replace_block


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q / 100 * len(ordered))) - 1))]


def parse_params(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


class Workload:
    """The model, one preprocessed input per session and request, and the app's requests."""

    def __init__(self, model: str, device: str, method: str, params: dict, sessions: int):
        import saliency_core

        self.loaded = saliency_core.load_model(model, device)
        self.model, self.device, self.method, self.params = model, device, method, params
        self.sessions = sessions
        from PIL import Image

        # The model's own preprocessing fixes the input shape; the pixels are seeded noise.
        probe = Image.fromarray(np.zeros((256, 256, 3), dtype=np.uint8))
        shape = tuple(self.loaded.preprocess(probe).shape)
        g = torch.Generator().manual_seed(0)
        self.inputs = [torch.rand(shape, generator=g).to(device) for _ in range(sessions)]

    def request(self, session: int, tag: str):
        from saliency_core.computation import Computation
        from workbench.jobs import compute, engine

        # A digest of its own per session: distinct results, one batch key.
        computation = Computation("image", self.loaded.name, self.device, f"{tag}:{session}",
                                  self.method, self.params, "predicted")
        return compute.image_request(engine.configured(), self.loaded, computation,
                                     self.inputs[session], page="benchmark")


def one_round(work: Workload, max_batch: int, tag: str) -> dict:
    """Every session's request queued behind a gate, then released; per-request seconds from
    the release, the round's seconds, and how many engine calls served the round."""
    from workbench.jobs.scheduler import Job, Scheduler

    scheduler = Scheduler(concurrency=1, max_batch=max_batch)
    gate_open = threading.Event()
    released: dict[str, float] = {}

    def hold(_payloads):
        gate_open.wait()
        released["at"] = time.perf_counter()
        return [None]

    gate = threading.Thread(target=scheduler.run, args=(Job("gate", f"{tag}:gate", None, hold),))
    gate.start()
    while scheduler.running() == 0:
        time.sleep(0.001)

    calls: list[int] = []
    results: dict[int, object] = {}
    latencies: dict[int, float] = {}
    errors: list[str] = []

    def session(s: int) -> None:
        request = work.request(s, tag)

        def counted(payloads, run=request.run_batch):
            calls.append(len(payloads))
            return run(payloads)

        job = Job(f"session-{s}", request.key, request.payload, counted,
                  batch_key=request.batch_key)
        try:
            results[s] = scheduler.run(job)
            latencies[s] = time.perf_counter() - released["at"]
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=session, args=(s,)) for s in range(work.sessions)]
    for thread in threads:
        thread.start()
    while scheduler.queue_length() < work.sessions:
        time.sleep(0.001)
    gate_open.set()
    for thread in threads:
        thread.join()
    gate.join()
    round_s = max(latencies.values(), default=0.0)
    return {"latencies_s": [latencies[s] for s in sorted(latencies)], "round_s": round_s,
            "calls": calls, "errors": errors, "results": results}


def agreement(work: Workload, max_batch: int) -> float:
    """Largest difference between a batched map and the same request alone, relative to the
    map's largest magnitude."""
    together = one_round(work, max_batch, "check-batched")["results"]
    alone = one_round(work, 1, "check-alone")["results"]
    worst = 0.0
    for s, result in together.items():
        a, b = result.attribution, alone[s].attribution
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)))
    return worst


def run(args) -> dict:
    params = parse_params(args.param)
    work = Workload(args.model, args.device, args.method, params, args.sessions)
    max_batch = {name: value or max(args.sessions, 1) for name, value in MODES.items()}
    log(f"{args.model} {args.method} {params} on {args.device}, {args.sessions} sessions")
    difference = agreement(work, max_batch["batched"])  # also the warm-up of both modes
    samples = {name: {"latencies_s": [], "rounds_s": [], "calls": [], "errors": []}
               for name in MODES}
    order = list(MODES)
    rng = random.Random(0)
    for rep in range(args.repeats):
        rng.shuffle(order)
        for name in order:
            outcome = one_round(work, max_batch[name], f"{name}:{rep}")
            kept = samples[name]
            kept["latencies_s"] += outcome["latencies_s"]
            kept["rounds_s"].append(outcome["round_s"])
            kept["calls"].append(len(outcome["calls"]))
            kept["errors"] += outcome["errors"]
            log(f"{name}: round {1000 * outcome['round_s']:.0f} ms in "
                f"{len(outcome['calls'])} engine calls")
    rows = []
    for name, kept in samples.items():
        served = len(kept["latencies_s"])
        total = sum(kept["rounds_s"])
        rows.append({
            "mode": name, "max_batch": max_batch[name], "requests": served,
            "engine_calls": sum(kept["calls"]),
            "requests_per_s": served / total if total else 0.0,
            "p50_ms": 1000 * percentile(kept["latencies_s"], 50) if served else None,
            "p95_ms": 1000 * percentile(kept["latencies_s"], 95) if served else None,
            "round_ms": 1000 * float(np.median(kept["rounds_s"])) if kept["rounds_s"] else None,
            "errors": kept["errors"],
        })  # fmt: skip
    from .ui import machine

    return {"machine": machine(), "model": args.model, "device": args.device,
            "method": args.method, "params": params, "sessions": args.sessions,
            "repeats": args.repeats, "max_relative_difference": difference, "rows": rows,
            "samples": samples}


def table(result: dict) -> str:
    rows = {row["mode"]: row for row in result["rows"]}
    batched, alone = rows["batched"], rows["one at a time"]
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items()) or "defaults"
    heading = (
        f"{result['sessions']} sessions queue {result['method']} ({params}) of "
        f"{result['model']} on {result['device']} for different images at the same moment, "
        f"{result['repeats']} rounds per mode; {result['machine']}. A batched map differs from "
        f"the same request alone by at most {result['max_relative_difference']:.1e} of its "
        "largest value.")
    lines = [
        heading,
        "",
        "| mode | engine calls per round | requests/s | p50 latency | p95 latency | round |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in (batched, alone):
        per_round = row["engine_calls"] / max(1, result["repeats"])
        lines.append(f"| {row['mode']} | {per_round:.0f} | {row['requests_per_s']:.2f} "
                     f"| {row['p50_ms']:.0f} ms | {row['p95_ms']:.0f} ms | {row['round_ms']:.0f} ms |")
    if alone["requests_per_s"] and batched["p95_ms"]:
        gain = batched["requests_per_s"] / alone["requests_per_s"]
        lower = alone["p95_ms"] / batched["p95_ms"]
        lines += ["", f"Batching gain: {gain:.2f}× the throughput, p95 latency {lower:.2f}× lower."]
    errors = batched["errors"] + alone["errors"]
    if errors:
        lines += ["", f"Errors ({len(errors)}): " + "; ".join(sorted(set(errors)))[:500]]
    return "\n".join(lines)


def write(markdown: str, path: Path = REPO / "BENCHMARKS.md") -> None:
    """Replace this benchmark's block in BENCHMARKS.md (or add it at the end)."""
    replace_block(path, BEGIN, END, HEADING, markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                        help="method setting (repeatable); default steps=16 for IG")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true",
                        help="the bundled shapes model, 3 sessions, 1 round (for make test)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.param is None:
        args.param = ["steps=16"] if args.method == "integrated_gradients" else []
    if args.smoke:
        args.model, args.sessions, args.repeats = "shapes-cnn", 3, 1
    if args.sessions < 2:
        parser.error("--sessions must be at least 2: batching needs company")
    result = run(args)
    markdown = table(result)
    print(markdown)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=lambda _o: None))
    if args.write:
        write(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
