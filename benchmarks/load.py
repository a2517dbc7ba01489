"""Many colleagues at once: the browser load test, ``python -m benchmarks.load`` (``make load``).

Starts the workbench in its hosted configuration (``python -m workbench.serve hosted``, as
``make serve`` and the Docker image do, here on 127.0.0.1 with sign-in off: an empty secrets
file, so no ``[auth]``; the default per-request budget unless ``--budget-s``) and drives
``--sessions`` concurrent sessions, each a context of one headless chromium driven by
Playwright's async API. Each session visits the workbench again and again for the phase, with a
seeded pause of 0.5-2 s between actions, doing what users do:

1. open the Image page (a sample; the page's default method);
2. upload a photo never seen before (seeded), first overlay and final map;
3. a display-only change (the overlay opacity slider) and a method change (a quick method);
4. open the view's shared link (the URL the share box shows) as a new visitor;
5. open Compare on the uploaded photo (five default methods): first map and all five.

Each action is timed from the browser being told to do it until the new picture is on screen
(benchmarks.webapp's conditions, the same as benchmarks.ui's). A "Run anyway" button (a request
over the budget) is clicked and counted. An action that times out, fails, or ends in an error
box is an error; exception boxes and the error boundary's message are counted on the page, and
tracebacks in the server's log.

Two phases of ``--minutes`` each: the sessions alone, then the same with one more session that
opens heavy links again and again (Integrated Gradients at 1024 steps on a photo, confirming the
budget click when asked). The ratio of the other sessions' p95 with and without it is the
fairness figure. The server's resident memory is read from /proc every few seconds (its
maximum is reported) and, for the growth target, once the server is idle after each phase (no
job running or queued, no session connected or kept for reconnection, the RSS steady:
benchmarks/load_idle.py): what it keeps between requests after the first phase, against after
the second.

With a server started here, the browsers run at a lower CPU priority than the server
(``--browser-nice``, default 10; benchmarks/browser_priority.py keeps chromium's threads
there): a team's browsers run on their own machines, and twenty of them drawn at equal
priority on the server's cores measure the browsers more than the server.

Output: a Markdown table, ``--json PATH`` with every figure; the exit status is 1 when an error
or a traceback was seen. Ctrl-C stops a long run early and still reports what it measured
(exit status 130 if nothing went wrong). ``--smoke`` is the short run ``make test`` does (2 sessions, bundled
shapes model, two 5-second phases, each visit begun finished, heavy links of 256 steps).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from pathlib import Path

from . import load_report
from .browser_priority import keep_low
from .load_idle import rss_mb, wait_idle
from .load_session import HEAVY_STEPS, THINK_S, Record, Session
from .webapp import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    TIMEOUT_MS,
    Running,
    Server,
    free_port,
)

OUTPUT = ROOT / "benchmarks" / "output"
# make test's run: each session does every action once or twice per phase.
SMOKE_PHASE_S = 5.0
SMOKE_THINK_S = (0.05, 0.15)
SMOKE_HEAVY_STEPS = 256  # still a job many times an ordinary one, over sooner
# After each phase: at least this long, then until the server is idle (load_idle), at most
# MAX_IDLE_S (Streamlit keeps a closed session for reconnection, 120 s by default).
IDLE_S = 20.0
MAX_IDLE_S = 420.0
SMOKE_IDLE_S = 2.0
SMOKE_MAX_IDLE_S = 60.0
# The browsers' priority below the server's when both share this machine (--browser-nice).
BROWSER_NICE = 10


async def sample_memory(pid: int | None, record: Record, stop: asyncio.Event,
                        every_s: float) -> None:
    start = time.monotonic()
    while pid is not None and not stop.is_set():
        try:
            record.memory.append((time.monotonic() - start, rss_mb(pid)))
        except (OSError, RuntimeError):
            return  # the server is gone; the sessions will say so
        if record.warm_at is None and record.visits and min(record.visits.values()) >= 1:
            record.warm_at = record.memory[-1][0]
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


async def settle(pid: int | None, metrics_url: str | None, record: Record, phase: str,
                 idle_s: float, max_idle_s: float) -> None:
    """The server's memory once it is idle after a phase (load_idle.wait_idle): what it keeps
    between requests."""
    print(f"phase {phase} over: waiting for the server to be idle", file=sys.stderr, flush=True)
    level = await wait_idle(pid, metrics_url, idle_s, max_idle_s)
    record.idle[phase] = level.as_dict()
    print(f"idle level after {phase}: {level.as_dict()}", file=sys.stderr, flush=True)


async def drive(record: Record, base: str, pid: int | None, sessions: int, phase_s: float,
                model: str, samples: list[str], timeout_s: float, think_s: tuple[float, float],
                heavy_steps: int, idle_s: float = IDLE_S, max_idle_s: float = MAX_IDLE_S,
                metrics_url: str | None = None, browser_nice: int = 0) -> None:
    """The two phases; the heavy session runs in the second until the others are done."""
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        users = [Session(f"session {i + 1}", browser, base, model, samples, record, seed=i,
                         timeout_s=timeout_s, think_s=think_s) for i in range(sessions)]
        heavy = Session("heavy session", browser, base, model, samples, record, seed=sessions,
                        timeout_s=timeout_s, think_s=think_s, heavy_steps=heavy_steps)
        memory = asyncio.create_task(sample_memory(pid, record, stop, min(2.0, phase_s / 20)))
        # The browser's processes (and those a new context starts) at browser_nice.
        keeping_low = asyncio.create_task(keep_low(browser_nice, pid, stop))
        try:
            for phase in ("baseline", "heavy"):
                record.phase = phase
                print(f"phase {phase}: {sessions} sessions for {phase_s:.0f} s"
                      + (" and the heavy session" if phase == "heavy" else ""),
                      file=sys.stderr, flush=True)
                heavy_run = asyncio.create_task(heavy.run(math.inf, heavy.heavy_visit)) \
                    if phase == "heavy" else None
                end = time.monotonic() + phase_s
                await asyncio.gather(*(u.run(end, u.visit) for u in users))
                if heavy_run is not None:
                    heavy_run.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heavy_run
                await settle(pid, metrics_url, record, phase, idle_s, max_idle_s)
        finally:
            stop.set()
            await memory
            await keeping_low
            await browser.close()
            record.confirmations = sum(u.confirmations for u in users)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--model", default=None,
                        help="image model (default: the workbench's default photo model)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="SALIENCY_REQUEST_BUDGET_S for the server (default: its own, 30 s)")
    parser.add_argument("--action-timeout-s", type=float, default=TIMEOUT_MS / 1000)
    parser.add_argument("--smoke", action="store_true",
                        help="2 sessions, two 5 s phases, bundled shapes model (for make test)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--url", default=None, help="a running server instead (no memory, no log)")
    parser.add_argument("--browser-nice", type=int, default=None,
                        help="how much lower the browsers' CPU priority is than the server's "
                             f"(default: {BROWSER_NICE} with a server started here, 0 with --url)")
    args = parser.parse_args(argv)
    browser_nice = args.browser_nice if args.browser_nice is not None else (
        0 if args.url else BROWSER_NICE)
    if args.smoke:
        model, sessions, phase_s = args.model or "shapes-cnn", 2, SMOKE_PHASE_S
        samples = [f"shapes:{i}" for i in range(12)]
        timeout_s, think_s = min(args.action_timeout_s, 60.0), SMOKE_THINK_S
        heavy_steps = SMOKE_HEAVY_STEPS
    else:
        import streamlit.logger

        # The app's model list, read outside a Streamlit run: its bare-mode warnings are noise.
        streamlit.logger.set_log_level("error")
        from workbench.jobs.models import default_model, usable_models

        model = args.model or default_model("image", usable_models("image"))
        sessions, phase_s, timeout_s = args.sessions, 60 * args.minutes, args.action_timeout_s
        think_s, heavy_steps = THINK_S, HEAVY_STEPS
        samples = ["photo:chelsea", "photo:coffee", "photo:astronaut", "photo:rocket"]
    log = OUTPUT / "load_server.log"
    no_auth = OUTPUT / "load_no_auth_secrets.toml"  # no [auth]: sign-in off
    no_auth.parent.mkdir(parents=True, exist_ok=True)
    no_auth.write_text("")
    metrics_port = free_port()
    env = {"SALIENCY_METRICS_PORT": str(metrics_port),
           "SALIENCY_SHARE_DIR": str(OUTPUT / "load_share_store"),
           **({"SALIENCY_WARM_MODELS": model} if args.smoke else {}),
           **({"SALIENCY_REQUEST_BUDGET_S": str(args.budget_s)} if args.budget_s else {})}
    load_before = load_report.load_average()
    # make test's short run: closed tabs kept 5 s rather than the hosted 30 (the idle wait
    # after each phase waits for them).
    ttl = ["--server.disconnectedSessionTTL", "5"] if args.smoke else []
    server_cm = Running(args.url) if args.url else Server(
        log, env=env, mode="hosted", args=["--secrets.files", str(no_auth), *ttl])
    record = Record()
    with server_cm as server:
        try:
            asyncio.run(drive(record, server.base, server.pid, sessions, phase_s, model,
                              samples, timeout_s, think_s, heavy_steps,
                              SMOKE_IDLE_S if args.smoke else IDLE_S,
                              SMOKE_MAX_IDLE_S if args.smoke else MAX_IDLE_S,
                              None if args.url else f"http://127.0.0.1:{metrics_port}/metrics",
                              browser_nice))
        except KeyboardInterrupt:  # a long run stopped early still reports what it measured
            record.interrupted = True
            # The browser closing under the actions in flight is the stop, not an error.
            record.errors = [e for e in record.errors if "has been closed" not in e["error"]]
            record.heavy = [h for h in record.heavy if "has been closed" not in h["outcome"]]
    server_log = None if args.url else log.read_text(errors="replace")
    result = load_report.result(record, server_log, sessions=sessions, phase_s=phase_s,
                                model=model, warm_start_s=server.warm_s,
                                budget_s=args.budget_s, load_before=load_before,
                                browser_nice=browser_nice)
    print(load_report.table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if result["errors"] or result["tracebacks"]:
        return 1
    return 130 if record.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
