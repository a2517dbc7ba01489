"""How far one Image-page request travels: the project's files and calls between the page
script and the method's own math, measured on a real page run (Streamlit's AppTest).

The page is opened once with another method (models load, caches fill), then the method is
switched (to a quick one by default) so the measured rerun computes a new map. Two figures come out:
- the request path: the project frames on the call stack when the method's compute function
  starts (page -> ... -> method) and when the engine takes its first input gradient (page ->
  ... -> model pass), as calls and distinct files;
- the whole rerun: every project file and function the rerun entered (drawing included).

    python -m benchmarks.request_path [--method gradient]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = tuple(str(REPO / d) for d in ("pages", "workbench", "saliency_core", "app.py"))


def _ours(filename: str) -> bool:
    return filename.startswith(OURS)


def measure(method: str) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "pages" / "image.py"), default_timeout=300)
    # Open with another method (as a link would), so the measured method is not in the cache.
    at.query_params["method"] = "gradcam" if method == "gradient" else "gradient"
    at.run()
    entered: set[tuple[str, str]] = set()
    stacks: dict[str, list[tuple[str, str]]] = {}

    def profile(frame, event, _arg):
        if event != "call" or not _ours(frame.f_code.co_filename):
            return
        code = frame.f_code
        entered.add((code.co_filename, code.co_qualname))
        if "/saliency_core/methods/" in code.co_filename and code.co_name == method:
            stop = "method"
        elif "/saliency_core/engine" in code.co_filename and code.co_name == "_input_gradient":
            stop = "model pass"
        else:
            return
        if stop not in stacks:
            chain, f = [], frame
            while f is not None:
                if _ours(f.f_code.co_filename):
                    chain.append((f.f_code.co_filename, f.f_code.co_qualname))
                f = f.f_back
            stacks[stop] = chain[::-1]

    picker = next(s for s in at.selectbox if s.label == "Method")
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        picker.set_value(method).run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert not at.exception, [e.value for e in at.exception]
    rel = lambda f: str(Path(f).relative_to(REPO))
    return {
        "paths": {stop: [f"{rel(f)}:{q}" for f, q in chain] for stop, chain in stacks.items()},
        "path_files": {stop: sorted({rel(f) for f, _ in chain}) for stop, chain in stacks.items()},
        "rerun_files": sorted({rel(f) for f, _ in entered}),
        "rerun_functions": len(entered),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="gradient")
    args = parser.parse_args(argv)
    out = measure(args.method)
    for stop, calls in out["paths"].items():
        print(f"page -> {stop}: {len(calls)} calls in {len(out['path_files'][stop])} files")
        for call in calls:
            print("   ", call)
    print(f"whole rerun: {out['rerun_functions']} functions in {len(out['rerun_files'])} files")
    for f in out["rerun_files"]:
        print("   ", f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
