"""One user of the load test (benchmarks/load.py): a browser context per visit, each action
timed until its new picture is on screen, and everything the page shows that went wrong."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from .webapp import (
    GRID_JS,
    OVERLAY_JS,
    QUICK_METHODS,
    ROOT,
    SCRIPT_IDLE,
    SIDEBAR,
    STATUS_WIDGET,
    photo_png,
)

CONFIRM = "Run anyway"
CONFIRM_GRACE_MS = 5000  # a loaded browser draws widgets late
MAX_CONFIRMS = 8  # per action: Compare asks once per map
BOUNDARY = "Something went wrong on the server"  # workbench/ui/boundary.py's message
THINK_S = (0.5, 2.0)  # a user's pause between actions, seconds
HEAVY_STEPS = 1024  # the steps slider's maximum; the stalling link
HEAVY_TIMEOUT_MS = 3_600_000  # the heavy session is stopped when the phase ends, not by this
VIEWPORT = {"width": 1400, "height": 1000}
SCREENSHOTS = 5  # of the first failures, in SCREENSHOT_DIR
SCREENSHOT_DIR = ROOT / "benchmarks" / "output" / "load_failures"
# What the page shows: the new picture, an exception box, the budget's button or an error.
# Elements left from the previous script run (data-stale) do not count.
PICTURE_JS = """([mode, arg, old, confirmable]) => {
  const shown = mode === 'grid' ? (GRID_JS)([arg]) : (OVERLAY_JS)([arg, old]);
  if (shown) return 'picture';
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  const live = el => !el.closest('[data-stale="true"]');
  if ([...main.querySelectorAll('[data-testid="stException"]')].some(live)) return 'exception';
  if (confirmable && [...main.querySelectorAll('button')].some(
      b => live(b) && b.getClientRects().length
      && (b.innerText || '').trim().startsWith('CONFIRM'))) return 'confirm';
  const alerts = [...main.querySelectorAll('[data-testid="stAlertContentError"]')].filter(live);
  if (confirmable && alerts.some(a => (a.innerText || '').includes('press CONFIRM')))
    return 'pending';
  if (alerts.length) return 'alert';
  return false;
}""".replace("(GRID_JS)", f"({GRID_JS})").replace("(OVERLAY_JS)", f"({OVERLAY_JS})") \
    .replace("CONFIRM", CONFIRM)
BUTTON_GONE_JS = """(label) => ![...document.querySelectorAll('[data-testid="stMain"] button')]
  .some(b => !b.closest('[data-stale="true"]') && b.getClientRects().length
        && (b.innerText || '').trim() === label)"""
# Exception boxes and the boundary's messages now on the page, and the error alerts' texts.
PROBLEMS_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return [[], []];
  const live = el => !el.closest('[data-stale="true"]');
  const text = el => (el.innerText || '').trim().slice(0, 500);
  const boxes = [...main.querySelectorAll('[data-testid="stException"]')].filter(live).map(text);
  const alerts = [...main.querySelectorAll('[data-testid="stAlertContentError"]')]
    .filter(live).map(text);
  return [boxes.concat(alerts.filter(t => t.startsWith('BOUNDARY'))), alerts];
}""".replace("BOUNDARY", BOUNDARY)


class ActionFailed(Exception):
    """The visit cannot go on (act() records why)."""


class Record:
    """What all sessions saw: seconds per phase and action, errors, page exceptions."""

    def __init__(self):
        self.phase = "baseline"
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.errors: list[dict] = []
        self.page_exceptions: list[dict] = []
        self.confirmations = 0  # of the ordinary sessions; the heavy session's are in heavy
        self.heavy: list[dict] = []
        self.visits: dict[str, int] = {}
        self.memory: list[tuple[float, float]] = []
        self.warm_at: float | None = None
        # Per phase: the server's idle level after it, its RSS and how it was reached (load_idle).
        self.idle: dict[str, dict] = {}
        self.interrupted = False  # stopped with Ctrl-C before the end

    def add(self, action: str, seconds: float) -> None:
        self.samples.setdefault(self.phase, {}).setdefault(action, []).append(seconds)

    async def screenshot(self, page, session: str, action: str) -> str:
        """The page of one of the first failures, kept for reading; its path, said briefly."""
        if len(self.errors) >= SCREENSHOTS:
            return ""
        path = SCREENSHOT_DIR / re.sub(r"[^A-Za-z0-9]+", "-", f"{session} {action} "
                                       f"{len(self.errors)}").strip("-")
        path.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=f"{path}.png", full_page=True)
        return f" (screenshot {path.name}.png)"

    def error(self, session: str, action: str, message: str) -> None:
        self.errors.append({"phase": self.phase, "session": session, "action": action,
                            "error": message[:800]})
        print(f"error in {session}, {action}: {message[:300]}", file=sys.stderr, flush=True)


async def settle(page, timeout_ms: float) -> None:
    """Until the script run (and any rerun it asked for) is over."""
    await page.wait_for_timeout(150)
    await page.wait_for_selector(SCRIPT_IDLE, timeout=timeout_ms)
    await page.wait_for_selector(STATUS_WIDGET, state="hidden", timeout=timeout_ms)


async def overlay_src(page, prefix: str = "Overlay") -> str:
    return await page.evaluate(OVERLAY_JS, [prefix, ""]) or ""


class Session:
    """One user: a new browser context per visit, a seeded pause before each action."""

    def __init__(self, name: str, browser, base: str, model: str, samples: list[str],
                 record: Record, seed: int, timeout_s: float, think_s=THINK_S,
                 heavy_steps: int = HEAVY_STEPS):
        self.name, self.browser, self.base, self.model = name, browser, base, model
        self.samples, self.record, self.seed = samples, record, seed
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.heavy_steps = heavy_steps
        self.timeout_ms = 1000 * timeout_s
        self.confirmations = 0  # "Run anyway" clicks
        self.step = ""  # what the visit is doing, for an error between timed actions

    async def new_context(self):
        context = await self.browser.new_context(viewport=VIEWPORT)
        # Clicks and settles wait as long as a timed action may: a busy browser is slow too.
        context.set_default_timeout(self.timeout_ms)
        return context

    def url(self, page_path: str, **query) -> str:
        return f"{self.base}/{page_path}?{urlencode({'model': self.model, **query})}"

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.think_s))

    async def run(self, phase_end: float,
                  visit: Callable[[object, int], Awaitable[None]]) -> None:
        """Visits until ``phase_end`` (monotonic); a visit begun is finished, so that every
        session does every action at least once per phase."""
        from playwright.async_api import Error as PlaywrightError

        while time.monotonic() < phase_end:
            n = self.record.visits.get(self.name, 0)
            context = await self.new_context()
            self.step = "open the Image page"
            try:
                await self.think()
                await visit(context, n)
            except ActionFailed:
                pass
            except PlaywrightError as exc:  # between timed actions (a settle, a click)
                self.record.error(self.name, f"{self.step} (before its timed part)", str(exc))
            finally:
                self.record.visits[self.name] = n + 1
                await context.close()

    async def picture(self, page, mode: str, arg, old: str, start: float, action: str,
                      timeout_ms: float | None = None) -> None:
        """Wait for the new picture, clicking the budget's button each time it is shown (once
        per map on Compare)."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        budget_ms = timeout_ms or self.timeout_ms
        clicks = 0
        alert_since = None
        while True:
            left = max(1.0, budget_ms - 1000 * (time.perf_counter() - start))
            confirmable = clicks < MAX_CONFIRMS
            handle = await page.wait_for_function(PICTURE_JS, arg=[mode, arg, old, confirmable],
                                                  polling="raf", timeout=left)
            what = await handle.json_value()
            if what == "pending":
                # The budget's message names its button, drawn in the same run: a starved
                # browser can draw the message seconds before the button; wait for it.
                await page.wait_for_timeout(200)
                continue
            if what == "alert" and confirmable:
                # Another error box can be one a rerun is about to replace (the budget's own
                # message is "pending" above): an error stands only once the run is over and
                # the page, looked at again, still shows it for the grace period.
                if alert_since is None:
                    with contextlib.suppress(PlaywrightTimeout):
                        await settle(page, left)
                    alert_since = time.perf_counter()
                    continue
                if time.perf_counter() - alert_since < CONFIRM_GRACE_MS / 1000:
                    await page.wait_for_timeout(100)
                    continue
            if what == "picture":
                return
            if what == "confirm":
                clicks, alert_since = clicks + 1, None
                self.confirmations += 1
                # A replaced run can leave an invisible copy of the button behind.
                button = page.locator('[data-testid="stMain"] button:visible').filter(
                    has_text=re.compile("^" + CONFIRM))
                label = (await button.first.inner_text(timeout=left)).strip()
                await button.first.click(timeout=left)
                # Until the rerun the click asked for has made that button stale (or gone).
                with contextlib.suppress(PlaywrightTimeout):
                    await page.wait_for_function(BUTTON_GONE_JS, arg=label, timeout=min(
                        left, CONFIRM_GRACE_MS * 2))
                continue
            await self.scan(page, action)
            _, alerts = await page.evaluate(PROBLEMS_JS)
            shot = await self.record.screenshot(page, self.name, action)
            raise ActionFailed(f"the page shows {what}: {' | '.join(alerts)[:500]}{shot}")

    async def scan(self, page, action: str) -> None:
        boxes, _ = await page.evaluate(PROBLEMS_JS)
        for text in boxes:
            self.record.page_exceptions.append({"phase": self.record.phase, "session": self.name,
                                                "action": action, "text": text})

    async def act(self, page, action: str, do: Callable[[], Awaitable], *, mode: str = "overlay",
                  arg="Overlay", final: tuple[str, str, object] | None = None) -> None:
        """Time ``do`` until the new picture (and ``final``: name, mode, arg, after the run is
        over); a failure is recorded and ends the visit."""
        from playwright.async_api import Error as PlaywrightError

        old = await overlay_src(page, arg) if mode == "overlay" else ""
        start = time.perf_counter()
        try:
            try:
                await do()
                await self.picture(page, mode, arg, old, start, action)
                self.record.add(action, time.perf_counter() - start)
                if final is not None:
                    action, mode, arg = final
                    if mode == "overlay":
                        await settle(page, self.timeout_ms)
                    await self.picture(page, mode, arg, old, start, action)
                    self.record.add(action, time.perf_counter() - start)
            except PlaywrightError as exc:
                raise ActionFailed(f"{type(exc).__name__}: {exc}") from exc
        except ActionFailed as exc:
            self.record.error(self.name, action, str(exc))
            raise
        await self.scan(page, action)

    async def visit(self, context, n: int) -> None:
        page = await context.new_page()
        sample = self.samples[(self.seed + n) % len(self.samples)]
        await self.act(page, "open the Image page",
                       lambda: page.goto(self.url("image", input=sample), wait_until="commit"))
        await settle(page, self.timeout_ms)
        for step in (self.upload, self.display_change, self.method_change, self.share_link,
                     self.compare):
            self.step = step.__name__.replace("_", " ")
            await self.think()
            await step(page, n)

    async def upload(self, page, n: int) -> None:
        sidebar = page.locator(SIDEBAR)
        await sidebar.get_by_text("Upload", exact=True).click()
        await settle(page, self.timeout_ms)
        data = photo_png(self.seed + n, seed=1_000 * self.seed + n)
        dropzone = sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]')
        await self.act(page, "upload a photo: first overlay",
                       lambda: dropzone.set_input_files({"name": f"photo{n}.png",
                                                         "mimeType": "image/png", "buffer": data}),
                       final=("upload a photo: final map", "overlay", "Overlay"))
        await settle(page, self.timeout_ms)

    async def display_change(self, page, n: int) -> None:
        slider = page.get_by_role("slider", name="Overlay opacity")
        await slider.focus()
        await self.act(page, "display-only change (opacity)",
                       lambda: page.keyboard.press("ArrowRight" if n % 2 == 0 else "ArrowLeft"))
        await settle(page, self.timeout_ms)

    async def method_change(self, page, n: int) -> None:
        sidebar = page.locator(SIDEBAR)
        await sidebar.get_by_role("combobox", name="Method", exact=True).click()
        option = page.get_by_role("option", name=QUICK_METHODS[(self.seed + n) % len(QUICK_METHODS)],
                                  exact=True)
        await self.act(page, "method change", option.click)
        await settle(page, self.timeout_ms)

    async def share_link(self, page, n: int) -> None:
        """The view's link (publish() writes it into the URL, the share box shows the same) in
        a new visitor's browser."""
        link = page.url
        other = await self.new_context()
        try:
            shared = await other.new_page()
            await self.act(shared, "open a shared link",
                           lambda: shared.goto(link, wait_until="commit"))
        finally:
            await other.close()

    async def compare(self, page, n: int) -> None:
        shown = parse_qs(urlsplit(page.url).query).get("input", [""])[0]
        await self.act(page, "open Compare: first map",
                       lambda: page.goto(self.url("compare", input=shown), wait_until="commit"),
                       arg="", final=("open Compare: all five maps", "grid", 5))

    async def heavy_visit(self, context, n: int) -> None:
        """The heavy link, followed until its final map; the phase's end cancels it."""
        from playwright.async_api import Error as PlaywrightError

        page = await context.new_page()
        sample = self.samples[n % len(self.samples)]
        # One step fewer each visit: never answered from the result cache.
        link = self.url("image", input=sample, method="integrated_gradients",
                        **{"p.steps": self.heavy_steps - n})
        start = time.perf_counter()
        before = self.confirmations
        outcome, passes = "finished", None
        try:
            await page.goto(link, wait_until="commit")
            await self.picture(page, "overlay", "Overlay", "", start, "heavy link",
                               timeout_ms=HEAVY_TIMEOUT_MS)
            # The interactive heatmap comes with the final level only.
            await page.wait_for_selector('[data-testid="stMain"] [data-testid="stPlotlyChart"]',
                                         timeout=HEAVY_TIMEOUT_MS)
            await self.scan(page, "heavy link")
            # What ran, as the result's caption says: the link's steps, not a default.
            said = re.search(r"(\d+) model passes",
                             await page.locator('[data-testid="stMain"]').inner_text())
            passes = int(said.group(1)) if said else None
        except asyncio.CancelledError:
            outcome = "unfinished when the other sessions were done"
            raise
        except (ActionFailed, PlaywrightError) as exc:
            refused = "Refused" in str(exc)
            outcome = "refused (over the hard limit)" if refused else f"failed: {exc}"[:300]
            if not refused:
                self.record.error(self.name, "heavy link", outcome)
        finally:
            self.record.heavy.append({"steps": self.heavy_steps - n, "outcome": outcome,
                                      "passes": passes,
                                      "seconds": time.perf_counter() - start,
                                      "confirmed": self.confirmations > before})
