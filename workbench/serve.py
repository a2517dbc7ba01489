"""``python -m workbench.serve run app.py [options]``: ``streamlit run`` with a warm start.

``streamlit run app.py`` runs nothing until the first visitor opens a page, so that visitor
waits for torch and the model libraries to import, the default models to load and the first
passes to run through cold kernels (about 15 s on a busy 2-core server). Here the imports
happen before the server opens (in the main thread: see import_page_modules) and a background
thread does the rest as the server starts, through the same cached loaders the pages use
(``st.cache_resource`` lives in the process, not in a session), so the first page view finds
everything in memory. The arguments are those of the ``streamlit`` command, unchanged:

    python -m workbench.serve run app.py --server.port 8600 --server.headless true

``python -m workbench.serve hosted app.py [options]`` is the hosted configuration, the one
definition that ``make serve``, the Docker image and the load test (benchmarks/load.py) start:
the same with all interfaces, Prometheus metrics on ``SALIENCY_METRICS_PORT`` (9464 unless
set), ``SALIENCY_HOSTED=1`` (nobody fetches weights without sign-in) and no model hub at run
time, and closed tabs' sessions kept 30 s for a reconnect instead of 120 s. Options given after
the script override the hosted ones (``--server.address 127.0.0.1``). Both modes shut departed
sessions down and trim memory when idle (workbench/hosting/reaper.py).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

# Comma-separated model names to warm instead of each task's default; empty: none.
WARM_MODELS_ENV = "SALIENCY_WARM_MODELS"
log = logging.getLogger("workbench.serve")

# Streamlit options of the hosted configuration (.streamlit/config.toml has the rest: XSRF,
# CORS, upload limit, tracebacks hidden, which apply to `make run` as well).
HOSTED_OPTIONS = {
    "server.address": "0.0.0.0",  # nosec B104 - served to a team; a proxy or firewall narrows it
    "server.headless": "true",
    "client.showErrorDetails": "none",
    # A closed tab's session (its uploads, pictures and state) is kept this long for a
    # browser that lost its connection to resume; Streamlit's default is 120 s. Every visit
    # of the load test leaves one, so at 120 s a hundred waited at once; a network blip is
    # over in seconds. workbench/hosting/reaper.py shuts them down when the time is up.
    "server.disconnectedSessionTTL": "30",
}
# Environment defaults of the hosted configuration; a value already set wins.
HOSTED_ENV = {
    "SALIENCY_METRICS_PORT": "9464",
    "SALIENCY_HOSTED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def hosted_argv(args: list[str]) -> list[str]:
    """``[script, --opt, value, ...]`` -> the ``streamlit run`` arguments of the hosted
    configuration, with any option given in ``args`` replacing the hosted default."""
    if not args or args[0].startswith("-"):
        raise SystemExit("usage: python -m workbench.serve hosted app.py [streamlit options]")
    script, rest = args[0], args[1:]
    given = {word[2:].split("=", 1)[0] for word in rest if word.startswith("--")}
    defaults = [part for key, value in HOSTED_OPTIONS.items() if key not in given
                for part in (f"--{key}", value)]
    return ["run", script, *defaults, *rest]


def warm_models(present: list, default_model) -> list[str]:
    """The models to warm: SALIENCY_WARM_MODELS when set, else each task's default."""
    raw = os.environ.get(WARM_MODELS_ENV)
    if raw is not None:
        names = {m.name for m in present}
        return [n for n in (part.strip() for part in raw.split(",")) if n in names]
    return [name for task in ("image", "text")
            if (name := default_model(task, [m.name for m in present if m.task == task]))]


def import_page_modules() -> float:
    """Import what the pages import lazily, before the server takes its first session; the
    seconds it took. Two threads importing one of these at the same moment see it half
    initialised: two sessions with pandas ("partially initialized module 'pandas'"), and the
    warm start with a session with transformers (benchmarks.load found both), so this runs in
    the main thread, not in the warm start's."""
    start = time.perf_counter()
    import pandas  # noqa: F401  (st.dataframe: the prediction table, the scoreboard)
    import plotly.graph_objects  # noqa: F401  (the heatmap's first figure imports it)
    import pyarrow  # noqa: F401  (st.dataframe sends its data as Arrow)
    import torch  # noqa: F401
    import transformers.modeling_outputs  # noqa: F401  (the text models; lazy parts too)

    import saliency_core.models  # noqa: F401
    from workbench.jobs import (
        models,  # noqa: F401
    )
    return time.perf_counter() - start


def warm_up(imports_s: float = 0.0) -> dict[str, float]:
    """Load the default models (or SALIENCY_WARM_MODELS) on the default device and run one
    small attribution each, after import_page_modules; seconds per step, for the log."""
    import torch

    import saliency_core
    import saliency_core.models as sc_models
    from saliency_core.methods.guided import graph_rule
    from workbench.jobs import engine, models
    from workbench.ui import inputs

    timings: dict[str, float] = {"imports_s": imports_s}
    # The native guided rule builds (once per torch version) or loads in the background, so
    # a first Guided Backprop does not start it.
    graph_rule.prepare()
    present = [m for m in sc_models.available_models() if m.present]
    device = models.default_device()
    tasks = {m.name: m.task for m in present}
    for name in warm_models(present, models.default_model):
        start = time.perf_counter()
        loaded = models.get_model(name, device)
        if not engine.in_process(engine.configured()):
            # The engine service does the model work: loading (for preprocessing and labels)
            # is all this process needs; the replicas warm on their first requests.
            timings[f"{name}_s"] = time.perf_counter() - start
            continue
        if tasks[name] == "image":
            models.candidate_layers(name, device)
            x = loaded.preprocess(inputs.from_sample(inputs.default_sample(name)).image)
            saliency_core.attribute(loaded, x, "gradient")
        else:
            saliency_core.attribute_text(loaded, loaded.tokenizer, "A warm start.", "gradient")
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        timings[f"{name}_s"] = time.perf_counter() - start
    return timings


def _warm_in_background(imports_s: float) -> None:
    try:
        timings = warm_up(imports_s)
        log.warning("warm start done: %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    except Exception:  # a failed warm-up only means the first visitor waits; say why
        log.exception("warm start failed; the first visitor will load the models instead")


# glibc gives each thread that allocates its own arena, up to 8 per core, and keeps what an
# arena once held. Streamlit runs every script run in a new thread, so each large upload
# decoded (a 70 MB array) could leave another arena holding about 100 MB: on 2 cores the
# server's memory rose in such steps for a dozen uploads (1,309 -> 1,574 MB) instead of
# staying where it was after the first. Two arenas keep it flat (tests/test_hostile_memory.py)
# and cost nothing measurable: the pages' Python holds the GIL, and tensors are large
# allocations that bypass the arenas' lists. MALLOC_ARENA_MAX, when set, wins.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc arenas before any thread starts; False where that is not glibc
    (or MALLOC_ARENA_MAX already chose)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no such knob
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def main(argv: list[str] | None = None) -> None:
    cap_malloc_arenas()
    from streamlit.web import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hosted"]:
        for key, value in HOSTED_ENV.items():
            os.environ.setdefault(key, value)
        args = hosted_argv(args[1:])
    imports_s = import_page_modules()
    threading.Thread(target=_warm_in_background, args=(imports_s,), name="warm-start",
                     daemon=True).start()
    from workbench.hosting import reaper

    reaper.start()
    sys.argv = ["streamlit", *args]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
