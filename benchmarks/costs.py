"""How honest the server's cost estimates are: ``python -m benchmarks.costs [--quick] [--write]``.

For shapes-cnn, efficientnet-lite0 and minilm-sentiment, a series of requests goes through the
app's own request path (workbench.jobs.compute: admission, the device's queue, the real
engine), each one's estimate read just before it runs (what the page would show, and what the
budget would judge) and set against the time it then takes. Each model's series runs in two
orders, cheap requests first and expensive ones first, each time with nothing learned
(the cost model and the result cache are emptied): the first request of a series is estimated
from the calibration alone (goal: within 3x), every later one after at least one request on
that model (goal: within 2x).

Requests: gradient, Grad-CAM, Integrated Gradients at 32, 256 and 1024 steps, SmoothGrad over
IG, a 12-megapixel camera JPEG (decoded and scaled down on upload, as the Image page does, timed
on its own: the request then costs the preprocessed size); on the text model gradient and IG on
texts of about 5, 50 and 500 tokens. Each row says whether a person sees its estimate: the pages
show one only over the budget (the question) or the limit (the refusal).

``--models`` measures some models only; ``--write`` merges their rows into the table in
BENCHMARKS.md after each model (the other models' rows stay), so a partial run loses nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
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
            Ask("IG 256 steps", "integrated_gradients", {"steps": 256}),
            Ask("IG 1024 steps", "integrated_gradients", {"steps": 1024})]
    samples, steps = (4, 32) if heavy else ((16, 128) if quick else (64, 128))
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
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(pixels)


def uploaded(size: str, seed: int) -> tuple[object, float]:
    """(the image as the page has it after the upload, the seconds the upload's decoding and
    scaling took): a camera JPEG goes through the Image page's own loader."""
    if size != "12mp":
        return photo(size, seed), 0.0
    import io

    from saliency_core.io.images import load_image

    buffer = io.BytesIO()
    photo(size, seed).save(buffer, "JPEG", quality=90)
    began = time.perf_counter()
    image, _notices = load_image(buffer.getvalue())
    return image, time.perf_counter() - began


def shown(estimate) -> str:
    """Whether the page shows this estimate with the server's default budget and limit: only
    the question (over the budget) and the refusal (over the limit) carry one."""
    from workbench.jobs.costs import DEFAULT_BUDGET_S, DEFAULT_LIMIT_FACTOR, Budget

    verdict = Budget(DEFAULT_BUDGET_S, DEFAULT_BUDGET_S * DEFAULT_LIMIT_FACTOR).verdict(estimate)
    return {"ok": "no", "confirm": "question", "refused": "refusal"}[verdict]


def text_of(tokens: int, loaded) -> str:
    words = (SENTENCE * 80).split()
    text = " ".join(words[:tokens])
    while len(loaded.tokenizer(text)["input_ids"]) > tokens and " " in text:
        text = text.rsplit(" ", 1)[0]
    return text


def run_series(model: str, asks: list[Ask], order: str, device: str) -> list[dict]:
    from saliency_core.methods import get as method_entry
    from workbench.jobs import admission, compute, progressive
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
        decode_s = 0.0
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
            image, decode_s = uploaded(ask.size, i)
            began = time.perf_counter()
            x = loaded.preprocess(image)
            decode_s += time.perf_counter() - began if ask.size == "12mp" else 0.0
            computation = compute.image_computation(loaded, device, f"{order}-{i}", ask.method,
                                                    params, "predicted")
            request = compute.image_request(runner, loaded, computation, x)
            run = lambda c=computation, x=x: compute.explain_image(visitor, loaded, c, x)
        # The page's own estimate: a progressive method's levels each run the engine once.
        own = {k: v for k, v in params.items() if k != "max_length"}
        request = dataclasses.replace(request, runs=max(1, len(progressive.ladder(
            ask.method, own, task))))
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
                     "ok": 1 / goal <= ratio <= goal, "calibration_s": calibration_s,
                     "shown": shown(estimate), "decode_s": decode_s})
        log(f"{model:18s} {order:15s} {ask.label:28s} est {estimate.seconds:8.2f} s  "
            f"took {took:8.2f} s  ratio {ratio:5.2f}" + ("" if rows[-1]["ok"] else "  MISSED"))
    return rows


COLUMNS = ("| model | order | request | passes | estimate (s) | likely range (s) | measured (s) "
           "| measured / estimate | within goal | estimate shown |")
MODELS = ("shapes-cnn", "efficientnet-lite0", "minilm-sentiment")


def row_line(r: dict) -> str:
    decode = f" (+{r['decode_s']:.2f} s decoding on upload)" if r.get("decode_s") else ""
    return (f"| {r['model']} | {r['order']} | {r['request']} | {r['passes']:,} "
            f"| {r['estimate']:.2f} | {r['low']:.2f} to {r['high']:.2f} "
            f"| {r['measured']:.2f}{decode} | {r['ratio']:.2f} "
            f"| {'yes' if r['ok'] else 'no'} ({r['goal']:.0f}x) | {r['shown']} |")


def run_note(model: str, rows: list[dict], device: str, load: float, when: str) -> str:
    calibration = next((r["calibration_s"] for r in rows if r["calibration_s"]), 0.0)
    from benchmarks.webapp import cpu_model

    return (f"- {model}: measured {when} on {device} ({cpu_model()}, {os.cpu_count()} cores), "
            f"load average {load:.1f} when it began; calibration {calibration:.1f} s.")


def kept_rows(markdown: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The table lines and run notes of each model in a block this benchmark wrote (older
    blocks, of another shape, give nothing: their estimates came from another model)."""
    lines, notes = {}, {}
    if COLUMNS not in markdown:
        return lines, notes
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| model |"):
            lines.setdefault(line.split(" | ")[0][2:], []).append(line)
        elif (m := re.match(r"- (\S+): measured ", line)):
            notes[m.group(1)] = line
    return lines, notes


def table(lines: dict[str, list[str]], notes: dict[str, str]) -> str:
    models = [m for m in MODELS if m in lines] + [m for m in lines if m not in MODELS]
    body = [line for m in models for line in lines[m]]
    cells = [line.split(" | ") for line in body]
    ok = sum(c[8].startswith("yes") for c in cells)
    seen = [c for c in cells if not c[9].startswith("no")]
    seen_ok = sum(c[8].startswith("yes") for c in seen)
    return "\n".join([
        (f"{ok} of {len(cells)} estimates within their goal; of the {len(seen)} a person sees "
         f"(over the default 30 s budget: the question or the refusal), {seen_ok} within it. "
         "The goal is 3x for a model's first request (estimated from the calibration alone) "
         "and 2x after. The pages show no estimate for a request under the budget: it just "
         "runs, with its progress bar (the estimate then only orders the queue)."),
        "",
        COLUMNS,
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
        *body,
        "",
        "Runs (`python -m benchmarks.costs`; each model's two orders start with nothing learned):",
        *[notes[m] for m in models if m in notes],
    ])


def write(markdown: str) -> None:
    path = REPO / "BENCHMARKS.md"
    replace_block(path, BEGIN, END, HEADING, markdown)


def current_block() -> str:
    text = (REPO / "BENCHMARKS.md").read_text()
    return text.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in text else ""


def merged(old: str, rows: list[dict], device: str, load: float, when: str) -> str:
    """The table of block ``old`` with this run's models' rows in place of their earlier
    ones."""
    lines, notes = kept_rows(old)
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        lines[model] = [row_line(r) for r in mine]
        notes[model] = run_note(model, mine, device, load, when)
    return table(lines, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and cheaper requests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--write", action="store_true",
                        help="merge the rows into the table in BENCHMARKS.md after each model")
    args = parser.parse_args(argv)
    # Estimates are what is measured here: nothing is held back for confirmation.
    os.environ["SALIENCY_REQUEST_BUDGET_S"] = "1000000"
    os.environ["SALIENCY_REQUEST_LIMIT_S"] = "10000000"
    os.environ.setdefault("SALIENCY_SHARE_DIR", str(Path("/tmp/benchmark-costs-share")))
    rows: list[dict] = []
    for model in args.models:
        load = os.getloadavg()[0]
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        asks = text_asks(args.quick) if model == "minilm-sentiment" else image_asks(
            model, args.quick)
        mine: list[dict] = []
        for order, series in (("cheap first", asks), ("expensive first", asks[::-1])):
            mine += run_series(model, series, order, args.device)
        rows += mine
        if args.write:
            write(merged(current_block(), mine, args.device, load, when))
    print(table({m: [row_line(r) for r in rows if r["model"] == m]
                 for m in dict.fromkeys(r["model"] for r in rows)}, {}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
