"""What a user waits for: browser latency of the workbench, ``python -m benchmarks.ui``.

Starts the app the way ``make run`` does (``python -m workbench.serve``, default models warmed
as the server starts) on a free port, drives it with Playwright in Debian's chromium, and times
each action from the moment the browser is told to do it until the new picture is on screen
(the overlay's <img> has a new source and is decoded):

- first page view: the Home page's title, in a fresh browser context (a new visitor);
- first overlay after opening the Image page (coarse and final);
- after an upload (a new photo each time, so never from the cache);
- after a display-only change: the overlay opacity widget and the colormap menu (each a rerun
  of the result fragment, no model call; the page has one set of display controls, so the
  heatmap figure has no menu of its own any more);
- after a method change (a method not yet computed for that input);
- after raising Integrated Gradients' steps by 50 % (50 -> 75);
- Compare with its five default methods: the first map and all five.

Each figure is the median and p95 of ``--reps`` repetitions; ``--json`` writes them all.
``--smoke`` is the quick pass ``make test`` runs: the bundled shapes model, one repetition of
the first view, the Image page's first map and a display change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .webapp import (
    BUDGET_ENV,
    CHROMIUM,
    CHROMIUM_ARGS,
    GRID_JS,
    OVERLAY_JS,
    QUICK_METHODS,
    ROOT,
    SCRIPT_IDLE,
    SIDEBAR,
    STATUS_WIDGET,
    TIMEOUT_MS,
    Running,
    Server,
    machine,
    photo_png,
    summary,
)


def overlay_src(page, prefix: str = "Overlay") -> str | None:
    value = page.evaluate(OVERLAY_JS, [prefix, ""])
    return value or None


def wait_overlay(page, old: str | None, prefix: str = "Overlay") -> None:
    page.wait_for_function(OVERLAY_JS, arg=[prefix, old or ""], polling="raf", timeout=TIMEOUT_MS)


def timed(action: Callable[[], None], *waits: Callable[[], None]) -> list[float]:
    """Seconds from the action to each wait's condition, in order."""
    start = time.perf_counter()
    action()
    out = []
    for wait in waits:
        wait()
        out.append(time.perf_counter() - start)
    return out


def settle(page) -> None:
    """Until the script run (and any rerun it asked for) is over."""
    page.wait_for_timeout(150)
    page.wait_for_selector(SCRIPT_IDLE, timeout=TIMEOUT_MS)
    page.wait_for_selector(STATUS_WIDGET, state="hidden", timeout=TIMEOUT_MS)


class Bench:
    def __init__(self, browser, base: str, model: str, input_: str):
        self.browser = browser
        self.base = base
        self.model = model
        self.input = input_
        self.samples: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)
        # Each figure as it comes, so a long run on a busy machine shows where it is.
        print(f"{name}: {1000 * seconds:.0f} ms", file=sys.stderr, flush=True)

    def new_page(self):
        context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        return context, context.new_page()

    def url(self, page_path: str, **query) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"model": self.model, **query}.items())
        return f"{self.base}/{page_path}?{q}"

    def first_view(self) -> None:
        context, page = self.new_page()
        try:
            start = time.perf_counter()
            page.goto(self.base + "/", wait_until="commit")
            page.get_by_role("heading", name="Saliency workbench").wait_for(timeout=TIMEOUT_MS)
            self.add("first page view (Home)", time.perf_counter() - start)
        finally:
            context.close()

    def image_page(self, rep: int, full: bool = True) -> None:
        """Open the Image page, then a display change and (full) an upload, a method change
        and IG +50 %."""
        context, page = self.new_page()
        try:
            coarse, final = timed(
                lambda: page.goto(self.url("image", input=self.input), wait_until="commit"),
                lambda: wait_overlay(page, None),
                # The interactive heatmap is drawn with the final level only.
                lambda: page.wait_for_selector(
                    '[data-testid="stMain"] [data-testid="stPlotlyChart"]', timeout=TIMEOUT_MS))
            self.add("Image page opened: first overlay", coarse)
            self.add("Image page opened: final map", final)
            settle(page)

            for _ in range(2):
                old = overlay_src(page)
                slider = page.get_by_role("slider", name="Overlay opacity")
                slider.focus()
                (seconds,) = timed(lambda: page.keyboard.press("ArrowRight"),
                                   lambda before=old: wait_overlay(page, before))
                self.add("display-only change (opacity widget)", seconds)
                settle(page)

            main = page.locator('[data-testid="stMain"]')
            for choice in ("Viridis", "Magma"):
                old = overlay_src(page)
                main.get_by_role("combobox", name="Colormap", exact=True).click()
                option = page.get_by_role("option").filter(has_text=choice).first
                (seconds,) = timed(option.click, lambda before=old: wait_overlay(page, before))
                self.add("display-only change (colormap menu)", seconds)
                settle(page)

            if not full:
                return
            sidebar = page.locator(SIDEBAR)
            sidebar.get_by_text("Upload", exact=True).click()
            settle(page)
            old = overlay_src(page)
            data = photo_png(rep)
            dropzone = sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]')
            first, final = timed(
                lambda: dropzone.set_input_files({"name": f"photo{rep}.png", "mimeType": "image/png",
                                                  "buffer": data}),
                lambda: wait_overlay(page, old),
                lambda: (settle(page), wait_overlay(page, old)))
            self.add("after an upload: first overlay", first)
            self.add("after an upload: final map", final)
            settle(page)

            methods = QUICK_METHODS
            old = overlay_src(page)
            sidebar.get_by_role("combobox", name="Method", exact=True).click()
            option = page.get_by_role("option", name=methods[rep % len(methods)], exact=True)
            (seconds,) = timed(option.click, lambda: wait_overlay(page, old))
            self.add("method change (new method)", seconds)
            settle(page)

            sidebar.get_by_role("combobox", name="Method", exact=True).click()
            page.get_by_role("option", name="Integrated Gradients", exact=True).click()
            settle(page)
            steps = sidebar.get_by_role("slider", name="Steps")
            steps.focus()
            old = overlay_src(page)

            def raise_steps():
                for _ in range(25):  # 50 -> 75
                    page.keyboard.press("ArrowRight")

            (seconds,) = timed(raise_steps, lambda: (settle(page), wait_overlay(page, old)))
            self.add("IG steps +50 % (50 -> 75)", seconds)
        finally:
            context.close()

    def compare(self, rep: int) -> None:
        context, page = self.new_page()
        try:
            inputs = ["photo:coffee", "photo:rocket", "photo:astronaut", "photo:camera",
                      "photo:chelsea"] if self.input.startswith("photo:") else \
                [f"shapes:{i}" for i in range(1, 12)]
            first, final = timed(
                lambda: page.goto(self.url("compare", input=inputs[rep % len(inputs)]),
                                  wait_until="commit"),
                lambda: wait_overlay(page, None, ""),  # any map, coarse or final
                lambda: page.wait_for_function(GRID_JS, arg=[5], polling="raf",
                                               timeout=TIMEOUT_MS))
            self.add("Compare, 5 methods: first map", first)
            self.add("Compare, 5 methods: all five", final)
        finally:
            context.close()


def run(reps: int, model: str, input_: str, smoke: bool = False, url: str | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    log = ROOT / "benchmarks" / "output" / "ui_server.log"
    env = {**BUDGET_ENV, **({"SALIENCY_WARM_MODELS": model} if smoke else {})}
    server_cm = Running(url) if url else Server(log, env=env)
    with server_cm as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            bench = Bench(browser, server.base, model, input_)
            for rep in range(reps):
                bench.first_view()
                bench.image_page(rep, full=not smoke)
                if not smoke:
                    bench.compare(rep)
        except Exception as exc:  # keep what was measured; say where it stopped
            if smoke or not bench.samples:
                raise
            print(f"stopped early: {exc!r}"[:500], file=sys.stderr, flush=True)
        finally:
            browser.close()
    return {"machine": machine(), "model": model, "input": input_, "reps": reps,
            "warm_start_s": server.warm_s, "rows": summary(bench.samples),
            "samples_s": bench.samples}


def table(result: dict) -> str:
    warm = result["warm_start_s"]
    heading = (f"Model {result['model']} on {result['input']}, {result['reps']} repetitions, "
               f"{result['machine']}"
               + (f"; server warm-up {warm:.1f} s." if warm is not None else "; a running server."))
    lines = [heading, "",
             "| action | median | p95 | n |", "|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['action']} | {row['median_ms']:.0f} ms | {row['p95_ms']:.0f} ms "
                     f"| {row['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--model", default=None,
                        help="image model (default: the workbench's default photo model)")
    parser.add_argument("--input", default=None, help="sample to open (default: photo:chelsea)")
    parser.add_argument("--smoke", action="store_true",
                        help="one quick repetition on the bundled shapes model (for make test)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--url", default=None,
                        help="time a server that is already running instead of starting one")
    args = parser.parse_args(argv)
    if args.smoke:
        model, input_, reps = args.model or "shapes-cnn", args.input or "shapes:0", 1
    else:
        from workbench.jobs.models import default_model, usable_models

        model = args.model or default_model("image", usable_models("image"))
        input_, reps = args.input or "photo:chelsea", args.reps
    result = run(reps, model, input_, smoke=args.smoke, url=args.url)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
