"""The load test's figures, targets and Markdown table (benchmarks/load.py runs the test).

Targets (issue 11): no errors and no tracebacks; the server's resident memory after the
warm-up grows by less than 10 % over the rest of the run; with one session running a heavy
job, the other sessions' p95 is at most twice their p95 without it (all their timed actions
together; each action's ratio is shown as well).
"""

from __future__ import annotations

import os
import platform
import re

from .webapp import cpu_model, gpu_names, summary

GROWTH_LIMIT_PCT = 10.0
RATIO_LIMIT = 2.0
ALL = "all actions"
_TRACEBACK = "Traceback (most recent call last):"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def server_tracebacks(log: str) -> list[str]:
    """Each traceback in the server's log, as its last line (the exception), with the log line
    before it (the boundary's reference, when it was a page run)."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if _TRACEBACK not in line:
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
            j += 1
        last = lines[j] if j < len(lines) else "(log ends)"
        before = lines[i - 1] if i else ""
        found.append(f"{before.strip()[:200]} -> {last.strip()[:300]}")
    return found


def _p95(values: list[float]) -> float | None:
    rows = summary({ALL: values}) if values else []
    return rows[0]["p95_ms"] if rows else None


def ratios(baseline: dict[str, list[float]], heavy: dict[str, list[float]]) -> dict:
    """p95 with the heavy job over p95 without it: pooled, and per action."""
    def ratio(a, b):
        pa, pb = _p95(a), _p95(b)
        return None if pa is None or pb is None or pa <= 0 else pb / pa

    pooled = ratio([v for vs in baseline.values() for v in vs], [v for vs in heavy.values() for v in vs])
    return {"overall": pooled,
            "per_action": {a: ratio(baseline[a], heavy.get(a, [])) for a in baseline}}


def memory(series: list[tuple[float, float]], warm_at: float | None,
           levels: dict[str, dict] | None = None) -> dict:
    """Growth is read from the server's idle levels (load.settle; per phase, how each was
    reached and its RSS): after the first phase (the warm-up long over) against after the
    second. Without them (a server elsewhere), None; a level the server never reached idle
    still counts (its RSS then is what the server kept), the note says so."""
    if not series:
        return {"warm_mb": None, "end_mb": None, "max_mb": None, "growth_pct": None,
                "warm_at_s": None, "idle_mb": {}, "idle": {}, "samples": []}
    if warm_at is None:  # not every session finished a visit: the first fifth is the warm-up
        warm_at = series[-1][0] / 5
    levels = dict(levels or {})
    idle = {phase: level["mb"] for phase, level in levels.items() if level["mb"] is not None}
    warm, end = idle.get("baseline"), idle.get("heavy")
    growth = 100 * (end - warm) / warm if warm and end else None
    return {"warm_mb": warm, "end_mb": end, "max_mb": max(mb for _, mb in series),
            "growth_pct": growth, "warm_at_s": warm_at, "idle_mb": idle,
            "idle": levels,
            "samples": [[round(t, 1), round(mb, 1)] for t, mb in series]}


def targets(errors: int, tracebacks: int, mem: dict, ratio: float | None) -> list[dict]:
    growth = mem["growth_pct"]
    return [
        {"target": "0 errors", "value": str(errors), "pass": errors == 0},
        {"target": "0 tracebacks (page and server log)", "value": str(tracebacks),
         "pass": tracebacks == 0},
        {"target": f"idle memory growth after warm-up < {GROWTH_LIMIT_PCT:.0f} %",
         "value": "not measured" if growth is None else f"{growth:+.1f} %",
         "pass": growth is not None and growth < GROWTH_LIMIT_PCT},
        {"target": f"p95 with a heavy job <= {RATIO_LIMIT:.0f}x p95 without",
         "value": "not measured" if ratio is None else f"{ratio:.2f}x",
         "pass": ratio is not None and ratio <= RATIO_LIMIT},
    ]


def result(record, server_log: str | None, *, sessions: int, phase_s: float, model: str,
           warm_start_s: float | None, budget_s: float | None, load_before: list[float],
           browser_nice: int = 0) -> dict:
    baseline = record.samples.get("baseline", {})
    heavy = record.samples.get("heavy", {})
    tracebacks = server_tracebacks(server_log) if server_log is not None else []
    mem = memory(record.memory, record.warm_at, record.idle)
    ratio = ratios(baseline, heavy)
    n_tracebacks = len(tracebacks) + len(record.page_exceptions)
    return {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_before,
                    "load_after": load_average(), "gpu": gpu_names(),
                    "platform": platform.platform()},
        "config": {"sessions": sessions, "phase_s": phase_s, "model": model,
                   "server": "python -m workbench.serve hosted (sign-in off)",
                   "budget_s": budget_s or "server default", "warm_start_s": warm_start_s,
                   "browser_nice": browser_nice},
        "phases": {"baseline": summary(baseline), "heavy": summary(heavy)},
        "interrupted": record.interrupted,
        "samples_s": record.samples,
        "visits": dict(record.visits),
        "ratio": ratio,
        "heavy_session": record.heavy,
        "confirmations": record.confirmations,
        "errors": record.errors,
        "page_exceptions": record.page_exceptions,
        "server_tracebacks": tracebacks,
        "tracebacks": n_tracebacks,
        "memory": mem,
        "targets": targets(len(record.errors), n_tracebacks, mem, ratio["overall"]),
    }


def _ms(row: dict | None, key: str) -> str:
    return "—" if row is None else f"{row[key]:.0f} ms"


def _heading(res: dict) -> list[str]:
    cfg, mach = res["config"], res["machine"]
    warm = cfg["warm_start_s"]
    warm_note = f", server warm start {warm:.1f} s" if warm else ""
    before, after = ("/".join(map(str, mach[k])) for k in ("load_before", "load_after"))
    nice = cfg.get("browser_nice", 0)
    where = "the browsers run on the same machine" + (
        f", at nice +{nice} below the server" if nice else "")
    return [
        (f"{cfg['sessions']} sessions, {cfg['phase_s'] / 60:.1f} min per phase (without, then "
         f"with a heavy session), model {cfg['model']}, {cfg['server']}, request budget "
         f"{cfg['budget_s']}{warm_note}."),
        (f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['gpu']}, {mach['platform']}; load average "
         f"(1/5/15 min) {before} before, {after} after; {where}."),
    ]


def _rows(res: dict) -> list[str]:
    base = {r["action"]: r for r in res["phases"]["baseline"]}
    heavy = {r["action"]: r for r in res["phases"]["heavy"]}
    for phase, rows in (("baseline", base), ("heavy", heavy)):
        pooled = [v for vs in res["samples_s"].get(phase, {}).values() for v in vs]
        if pooled:
            rows[ALL] = summary({ALL: pooled})[0]
    lines = ["| action | p50 | p95 | n | with a heavy job: p50 | p95 | n | p95 ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    names = [a for a in base if a != ALL] + [a for a in heavy if a not in base] + [ALL]
    for name in names:
        b, h = base.get(name), heavy.get(name)
        r = res["ratio"]["overall"] if name == ALL else res["ratio"]["per_action"].get(name)
        label = f"**{name}**" if name == ALL else name
        ratio = "—" if r is None else f"{r:.2f}x"
        lines.append(f"| {label} | {_ms(b, 'median_ms')} | {_ms(b, 'p95_ms')} | "
                     f"{b['n'] if b else 0} | {_ms(h, 'median_ms')} | {_ms(h, 'p95_ms')} | "
                     f"{h['n'] if h else 0} | {ratio} |")
    return lines


def _heavy_note(runs: list[dict]) -> str:
    if not runs:
        return "- Heavy session: no link opened."
    outcomes: dict[str, int] = {}
    for run in runs:
        outcomes[run["outcome"]] = outcomes.get(run["outcome"], 0) + 1
    done = [run["seconds"] for run in runs if run["outcome"] == "finished"]
    took = f"; the finished ones took {min(done):.0f}-{max(done):.0f} s" if done else ""
    said = ", ".join(f"{n} {o}" for o, n in outcomes.items())
    confirmed = sum(run["confirmed"] for run in runs)
    passes = sorted({run["passes"] for run in runs if run.get("passes")})
    ran = f" ({passes[0]}-{passes[-1]} model passes each)" if passes else ""
    return (f"- Heavy session (Integrated Gradients, {runs[0]['steps']} steps and fewer): "
            f"{len(runs)} links opened: {said}; {confirmed} confirmed with Run anyway"
            f"{took}{ran}.")


def _memory_note(mem: dict) -> str:
    if mem["growth_pct"] is None:
        why = ("the run stopped before both idle levels were read" if mem["samples"]
               else "a server started elsewhere")
        return f"- Server memory (RSS): not measured ({why})."
    return (f"- Server memory (RSS): idle, {mem['warm_mb']:.0f} MB after the first phase, "
            f"{mem['end_mb']:.0f} MB after the second (growth {mem['growth_pct']:+.1f} %); "
            f"{mem['max_mb']:.0f} MB at most while working (every session had finished a "
            f"visit at {mem['warm_at_s']:.0f} s)." + _idle_note(mem.get("idle", {})))


def _held(gauges: dict[str, float]) -> str:
    held = [f"{what} {gauges[name] / 2**20:.0f} MB"
            for name, what in (("saliency_result_cache_bytes", "result cache"),
                               ("saliency_model_pool_bytes", "models"))
            if gauges.get(name) is not None]
    return f", holding {' and '.join(held)}" if held else ""


def _idle_note(levels: dict[str, dict]) -> str:
    said = [f"{phase} after {level['waited_s']:.0f} s{_held(level.get('gauges', {}))}"
            + ("" if level["idle"] else f" (NOT idle: {level['why_not']})")
            for phase, level in levels.items()]
    return f" Idle levels read: {'; '.join(said)}." if said else ""


def table(res: dict) -> str:
    visits = ", ".join(str(v) for v in res["visits"].values()) or "none"
    stopped = ["**Stopped early (Ctrl-C): the figures are those of the part that ran.**", ""] \
        if res.get("interrupted") else []
    lines = [*stopped, *_heading(res), "", *_rows(res), "",
             (f"- Visits per session: {visits}; budget confirmations (Run anyway) by the "
              f"ordinary sessions: {res['confirmations']}."),
             _heavy_note(res["heavy_session"]),
             (f"- Errors: {len(res['errors'])}; tracebacks: {len(res['page_exceptions'])} on "
              f"pages, {len(res['server_tracebacks'])} in the server log."),
             _memory_note(res["memory"])]
    shown = res["errors"][:5] + [{"error": t["text"], **t} for t in res["page_exceptions"][:3]]
    for item in shown:
        said = re.sub(r"\s+", " ", item["error"])[:200]
        lines.append(f"  - {item.get('session', '')}, {item.get('action', '')}: {said}")
    lines += [f"  - server log: {tb[:200]}" for tb in res["server_tracebacks"][:3]]
    lines += ["", "Targets:"]
    lines += [f"- {'PASS' if t['pass'] else 'FAIL'}: {t['target']} ({t['value']})"
              for t in res["targets"]]
    return "\n".join(lines)
