"""How honest the server's cost estimates are: ``python -m benchmarks.costs [--quick] [--write]``.

For shapes-cnn, efficientnet-lite0 and minilm-sentiment, a series of requests goes through the
app's own request path (workbench.jobs.compute: admission, the device's queue, the real
engine), each one's estimate read just before it runs (what the page would show, and what the
budget would judge) and set against the time it then takes. Each model's series runs in two
orders, cheap requests first and expensive ones first, each time with nothing learned
(the cost model and the result cache are emptied): the first request of a series is estimated
from the calibration alone (goal: within 3x), every later one after at least one request on
that model (goal: within 2x).

Requests: gradient, Grad-CAM, Integrated Gradients at 32, 256 and 1024 steps (``--quick``
leaves out 1024 on EfficientNet), SmoothGrad over IG, a 12-megapixel photo (it costs its
preprocessed size); on the text model gradient and IG on texts of about 5, 50 and 500 tokens.
``--write`` puts the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Cost estimates against measured time (`python -m benchmarks.costs`)"
BEGIN, END = "<!-- costs-benchmark:begin -->", "<!-- costs-benchmark:end -->"
SENTENCE = ("The film was long, but the actors were wonderful and the music was even better; "
            "I would gladly see it again. ")

from benchmarks.report import replace_block


@dataclass(frozen=True)
class Ask:
    label: str
    method: str
    params: dict
    size: str = "photo"  # images: photo, 12mp; text: tokens as words


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def image_asks(model: str, quick: bool) -> list[Ask]:
    heavy = model != "shapes-cnn"
    asks = [Ask("gradient", "gradient", {}), Ask("Grad-CAM", "gradcam", {}),
            Ask("gradient, 12-MP photo", "gradient", {}, "12mp"),
            Ask("IG 32 steps", "integrated_gradients", {"steps": 32}),
            Ask("IG 256 steps", "integrated_gradients", {"steps": 256})]
    if not (quick and heavy):
        asks.append(Ask("IG 1024 steps", "integrated_gradients", {"steps": 1024}))
    samples, steps = (4, 32) if heavy else (64, 128)
    asks.append(Ask(f"SmoothGrad {samples} over IG {steps}", "smoothgrad",
                    {"samples": samples, "base": "integrated_gradients", "steps": steps}))
    return asks


def text_asks(quick: bool) -> list[Ask]:
    asks = []
    for tokens in (5, 50, 500):
        asks.append(Ask(f"gradient, {tokens} tokens", "gradient", {}, str(tokens)))
        steps = 16 if (quick and tokens == 500) else 32
        asks.append(Ask(f"IG {steps} steps, {tokens} tokens", "integrated_gradients",
                        {"steps": steps}, str(tokens)))
    if not quick:
        asks.append(Ask("IG 256 steps, 500 tokens", "integrated_gradients", {"steps": 256},
                        "500"))
    return asks


def photo(size: str, seed: int):
    from PIL import Image

    shape = (3000, 4000, 3) if size == "12mp" else (480, 640, 3)
    pixels = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    return Image.fromarray(pixels)


def text_of(tokens: int, loaded) -> str:
    words = (SENTENCE * 80).split()
    text = " ".join(words[:tokens])
    while len(loaded.tokenizer(text)["input_ids"]) > tokens and " " in text:
        text = text.rsplit(" ", 1)[0]
    return text


def run_series(model: str, asks: list[Ask], order: str, device: str) -> list[dict]:
    from saliency_core.methods import get as method_entry
    from workbench.jobs import admission, compute
    from workbench.jobs.models import get_model
    from workbench.jobs.visitor import Visitor

    admission.cost_model.clear()
    compute.result_cache.clear()
    loaded = get_model(model, device)
    visitor = Visitor.anonymous()
    runner = compute.engine.for_models(loaded)
    rows = []
    for i, ask in enumerate(asks):
        task = "text" if loaded.task == "text" else "image"
        params = {**method_entry(ask.method).spec.defaults(task), **ask.params}
        if task == "text":
            text = text_of(int(ask.size), loaded)
            params["max_length"] = 512
            computation = compute.text_computation(loaded, device, text, ask.method, params,
                                                   "predicted")
            request = compute.text_request(runner, loaded, computation, text)
            run = lambda c=computation, t=text: compute.explain_text(visitor, loaded, c, t)
        else:
            if "layer" in {p.name for p in method_entry(ask.method).spec.params}:
                params["layer"] = None
            x = loaded.preprocess(photo(ask.size, i))
            computation = compute.image_computation(loaded, device, f"{order}-{i}", ask.method,
                                                    params, "predicted")
            request = compute.image_request(runner, loaded, computation, x)
            run = lambda c=computation, x=x: compute.explain_image(visitor, loaded, c, x)
        calibrating = not admission.cost_model().known(model, device)
        began = time.perf_counter()
        estimate = admission.estimate(request)
        calibration_s = time.perf_counter() - began if calibrating else 0.0
        began = time.perf_counter()
        run()
        took = time.perf_counter() - began
        ratio = took / estimate.seconds
        goal = 3.0 if i == 0 else 2.0
        rows.append({"model": model, "order": order, "request": ask.label,
                     "passes": request.passes, "units": request.units,
                     "estimate": estimate.seconds, "low": estimate.low, "high": estimate.high,
                     "measured": took, "ratio": ratio, "goal": goal,
                     "ok": 1 / goal <= ratio <= goal, "calibration_s": calibration_s})
        log(f"{model:18s} {order:15s} {ask.label:28s} est {estimate.seconds:8.2f} s  "
            f"took {took:8.2f} s  ratio {ratio:5.2f}" + ("" if rows[-1]["ok"] else "  MISSED"))
    return rows


def table(rows: list[dict], device: str, quick: bool, load: float) -> str:
    ok = sum(r["ok"] for r in rows)
    lines = [
        (f"Measured on {device} ({os.cpu_count()} cores, load average {load:.1f} when it "
         f"began){', --quick' if quick else ''}: {ok} of {len(rows)} estimates within their "
         "goal (3x for a model's first request, estimated from the calibration alone; 2x "
         "after)."),
        "",
        ("| model | order | request | passes | estimate (s) | likely range (s) | measured (s) "
         "| measured / estimate | within goal |"),
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['order']} | {r['request']} | {r['passes']:,} "
            f"| {r['estimate']:.2f} | {r['low']:.2f} to {r['high']:.2f} | {r['measured']:.2f} "
            f"| {r['ratio']:.2f} | {'yes' if r['ok'] else 'no'} ({r['goal']:.0f}x) |")
    calibrations = {r["model"]: r["calibration_s"] for r in rows if r["calibration_s"]}
    lines += ["", "Calibration (once per model and device, before its first request): "
              + ", ".join(f"{m} {s:.1f} s" for m, s in calibrations.items()) + "."]
    return "\n".join(lines)


def write(markdown: str) -> None:
    path = REPO / "BENCHMARKS.md"
    replace_block(path, BEGIN, END, HEADING, markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and cheaper requests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*",
                        default=["shapes-cnn", "efficientnet-lite0", "minilm-sentiment"])
    parser.add_argument("--write", action="store_true", help="put the table into BENCHMARKS.md")
    args = parser.parse_args(argv)
    # Estimates are what is measured here: nothing is held back for confirmation.
    os.environ["SALIENCY_REQUEST_BUDGET_S"] = "1000000"
    os.environ["SALIENCY_REQUEST_LIMIT_S"] = "10000000"
    os.environ.setdefault("SALIENCY_SHARE_DIR", str(Path("/tmp/benchmark-costs-share")))
    load = os.getloadavg()[0]
    rows: list[dict] = []
    for model in args.models:
        asks = text_asks(args.quick) if model == "minilm-sentiment" else image_asks(
            model, args.quick)
        for order, series in (("cheap first", asks), ("expensive first", asks[::-1])):
            rows += run_series(model, series, order, args.device)
    markdown = table(rows, args.device, args.quick, load)
    print(markdown)
    if args.write:
        write(markdown)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
