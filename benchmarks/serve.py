"""``python -m benchmarks.serve``: the engine service under a fixed concurrent load.

For each setting (1 or 2 engine replicas, cross-request batching on or off) a fixed number of
client threads each send the same number of requests through ``saliency_core.serve.client.Client``;
we report requests per second over the whole run and the median and 95th percentile latency.
Then one client alone: the same request in-process and through the service, to measure what
the service hop costs. ``--write`` puts the table into BENCHMARKS.md between its markers.
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Engine service (Ray Serve)"


def markers(label: str) -> tuple[str, str]:
    """Each workload has its own block, so re-running one replaces only its table."""
    return f"<!-- serve-benchmark:{label}:begin -->", f"<!-- serve-benchmark:{label}:end -->"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def images(count: int, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, size, size, generator=g) for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load(client, args, inputs) -> dict:
    """``clients`` threads, ``requests`` each, all at once; latencies per request."""
    latencies: list[float] = []
    errors: list[str] = []
    batched: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(args.clients)

    def user(u: int) -> None:
        barrier.wait()
        for r in range(args.requests):
            x = inputs[(u * args.requests + r) % len(inputs)]
            start = time.perf_counter()
            try:
                ex = client.explain(args.model, x, args.method, **args.params)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                batched.append(int(ex.metadata.get("batched_requests", 1)))

    threads = [threading.Thread(target=user, args=(u,)) for u in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"rps": len(latencies) / wall, "p50": statistics.median(latencies),
            "p95": percentile(latencies, 95), "errors": errors, "done": len(latencies),
            "mean_batch": statistics.fmean(batched) if batched else 0.0}


def hop_overhead(client, args, x) -> dict:
    import saliency_core as sc

    model = sc.load_model(args.model)
    torch.set_num_threads(args.torch_threads)
    sc.explain(model, x, args.method, **args.params)
    client.explain(args.model, x, args.method, **args.params)
    local, remote = [], []
    for _ in range(args.hop_reps):  # interleaved, so both see the same machine load
        t = time.perf_counter()
        sc.explain(model, x, args.method, **args.params)
        local.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.explain(args.model, x, args.method, **args.params)
        remote.append(time.perf_counter() - t)
    return {"local": statistics.median(local), "remote": statistics.median(remote)}


def machine() -> dict:
    """What the figures were measured on, read now (the table says it, not a hand-written note)."""
    import os

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count() or 1,
            "load": load, "gpu": gpu}


def machine_note(args, m: dict) -> str:
    device = (f"GPU {m['gpu']} (each replica takes one)" if m["gpu"] else
              f"CPU only, {args.torch_threads} torch thread per replica; no GPU on this machine")
    note = (f"Measured {time.strftime('%Y-%m-%d')} with `python -m benchmarks.serve` on "
            f"{m['cpu']} with {m['cores']} cores, {device}.")
    if m["load"] is not None:
        note += f" Load average when it started: {m['load']:.1f}."
        if m["load"] > 0.5 * m["cores"]:
            note += (" **The machine was busy with other work**, so absolute figures are "
                     "noisy: read the table for the shape of the effect, and re-run it on a "
                     "quiet machine before sizing a deployment.")
    return note


def run(args) -> str:
    from saliency_core.cli import serve as serve_cli
    from saliency_core.serve.client import Client
    from saliency_core.serve.config import EngineConfig

    measured_on = machine()
    settings = [(r, b) for r in args.replicas for b in args.batch]
    inputs = images(16, args.size)
    rows = []
    url = None
    try:
        for replicas, batch in settings:
            config = EngineConfig(num_replicas=replicas, num_cpus=1, torch_threads=args.torch_threads,
                                  max_batch_size=batch, batch_wait_timeout_s=args.wait,
                                  max_ongoing_requests=max(16, 2 * batch))
            log(f"deploying {replicas} replica(s), max_batch_size={batch} ...")
            if url is None:
                url = serve_cli.start(config, port=args.port or free_port(),
                                      ray_cpus=max(args.replicas) + 1)
            else:
                serve_cli.deploy(config)
            client = Client(url, read_timeout_s=120)
            for x in inputs[:4]:  # warm: model loaded, first passes done, on every replica
                client.explain(args.model, x, args.method, **args.params)
            result = load(client, args, inputs)
            log(f"  {result['rps']:.1f} req/s, p95 {result['p95'] * 1000:.0f} ms, "
                f"mean batch {result['mean_batch']:.1f}, errors {len(result['errors'])}")
            rows.append((replicas, batch, result))
        serve_cli.deploy(EngineConfig(num_replicas=1, num_cpus=1, torch_threads=args.torch_threads,
                                      max_batch_size=1))
        hop = hop_overhead(Client(url), args, inputs[0])
    finally:
        if url is not None:
            serve_cli.stop()
    return report(args, rows, hop, measured_on)


def report(args, rows, hop, measured_on: dict | None = None) -> str:
    params = ", ".join(f"{k}={v}" for k, v in args.params.items())
    begin, end = markers(args.label)
    lines = [
        begin,
        f"### {args.model}, {args.method}" + (f" ({params})" if params else ""),
        "",
        machine_note(args, measured_on or machine()),
        "",
        f"Load: {args.clients} concurrent clients × {args.requests} requests each, "
        f"`{args.model}` {args.size}×{args.size}, `{args.method}`"
        + (f" ({params})" if params else "") + f", batch window {args.wait * 1000:.0f} ms.",
        "",
        ("| engine replicas | cross-request batching | requests/s | p50 latency | p95 latency "
        "| mean requests per pass | errors |"),
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for replicas, batch, r in rows:
        lines.append(f"| {replicas} | {'on (up to ' + str(batch) + ')' if batch > 1 else 'off'} "
                     f"| {r['rps']:.1f} | {r['p50'] * 1000:.0f} ms | {r['p95'] * 1000:.0f} ms "
                     f"| {r['mean_batch']:.1f} | {len(r['errors'])} |")
    lines += [
        "",
        (f"Service hop, one request alone (median of {args.hop_reps}, interleaved): in-process "
        f"{hop['local'] * 1000:.1f} ms, through the service {hop['remote'] * 1000:.1f} ms, "
        f"overhead {(hop['remote'] - hop['local']) * 1000:.1f} ms (HTTP, safetensors both ways, "
        "Serve's proxy and router, the batch window of the deployment)."),
        end,
    ]
    return "\n".join(lines)


def write(markdown: str, label: str, path: Path = REPO / "BENCHMARKS.md") -> None:
    begin, end = markers(label)
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + markdown + rest.split(end, 1)[1]
    else:
        if HEADING not in text:
            text = text.rstrip() + f"\n\n{HEADING}\n"
        text = text.rstrip() + "\n\n" + markdown + "\n"
    path.write_text(text)


def parse_params(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    p.add_argument("--model", default="shapes-cnn")
    p.add_argument("--method", default="gradcam")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter, e.g. --param steps=16")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=12, help="per client")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8],
                   help="max_batch_size values; 1 = no cross-request batching")
    p.add_argument("--wait", type=float, default=0.01, help="batch window in seconds")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--hop-reps", type=int, default=20)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    p.add_argument("--label", help="the table's name in BENCHMARKS.md (default: model-method)")
    args = p.parse_args(argv)
    args.params = parse_params(args.param)
    args.label = args.label or f"{args.model}-{args.method}"
    markdown = run(args)
    print(markdown)
    if args.write:
        write(markdown, args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
