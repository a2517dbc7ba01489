"""Guided Backprop's rule on a recorded autograd graph, with no Python in the backward pass.

After a forward pass, ``rectify_graph(logits, since)`` walks the graph behind the logits once,
in C++, and puts a native pre-hook on every ReLU and Hardtanh (ReLU6) node of that pass; the
hook clamps the gradient arriving there and the node's own backward then applies the forward
gate. That is the guided rule of relu_rules.py, computed with the same operators, but the
backward pass runs wholly in the autograd engine: no GIL, no Python frame per activation
(what Python hooks cost on a GPU, where a pass at batch size 1 is bound by launches and
Python, and on a server whose other threads hold the GIL). The model is not touched: the
hooks live on this pass's graph and go with it, so no lock is needed for them.

The C++ part (csrc/graph_rule.cpp) is compiled by torch's extension builder on first use, in
the background, into torch's extension cache (``TORCH_EXTENSIONS_DIR``, by default
~/.cache/torch_extensions): about 10 s once per torch version; later processes load it in a
fraction of a second (the builder checks it with ninja each time, so the compiler and ninja
are needed then too). Where it cannot be built or loaded (no C++ compiler or ninja, a
read-only cache, ``SALIENCY_NATIVE_RULES=0``) ``ready()`` stays False and the guided methods
use their Python paths, which give the same maps.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("csrc") / "graph_rule.cpp"
_log = logging.getLogger(__name__)
_guard = threading.Lock()
_done = threading.Event()
_state = {"status": "new", "reason": ""}  # new -> building -> ready | failed


class GraphRuleFailed(RuntimeError):
    """The native rule failed on a pass; callers redo the pass on a Python path."""


def prepare(wait: float = 0.0, settle: bool = False) -> bool:
    """Starts building/loading the native rule (once per process, in a background thread)
    and waits up to ``wait`` seconds for it. True once it is usable. ``settle``: a build
    still running after the wait is given up for this process (a stale lock left by a
    crashed build would keep it waiting), so the path in use no longer changes."""
    with _guard:
        if _state["status"] == "new":
            if os.environ.get("SALIENCY_NATIVE_RULES", "1") == "0":
                _fail("turned off by SALIENCY_NATIVE_RULES=0")
            else:
                _state["status"] = "building"
                threading.Thread(target=_build, name="saliency-graph-rule", daemon=True).start()
    if wait > 0:
        _done.wait(wait)
    if settle:
        with _guard:
            if _state["status"] == "building":
                _fail(f"still being built after {wait:.0f} s")
    return ready()


def ready() -> bool:
    return _state["status"] == "ready"


def unavailable_reason() -> str:
    """Why the native rule is not in use ('' while it is, or is still being built)."""
    return _state["reason"]


def pass_start() -> int:
    """Called before a forward pass: marks where its autograd nodes begin (on this thread)."""
    return _call("pass_start")


def rectify_graph(root: torch.Tensor, since: int) -> int:
    """Puts the guided rule on every ReLU/Hardtanh node behind ``root`` made since
    ``pass_start()`` returned ``since``; returns their number. A failure turns the native
    rule off for the process and raises GraphRuleFailed."""
    return _call("rectify_graph", root, since)


def rectifiers_above(root: torch.Tensor, stop: torch.Tensor, since: int) -> int:
    """How many such nodes lie between ``root`` and the node that made ``stop`` (not counting
    it); -1 where ``stop`` has no node. None: a guided pass carries the plain gradient to
    ``stop``, since the engine takes the gradient it hands back for ``stop`` before that
    node's own hooks run."""
    return _call("rectifiers_above", root, stop, since)


def _call(name: str, *args) -> int:
    try:
        return int(getattr(torch.ops.saliency_graph_rule, name)(*args))
    except Exception as exc:  # a torch the library was not built for, a broken build
        with _guard:
            _fail(f"failed on a pass: {exc}")
        raise GraphRuleFailed(str(exc)) from exc


def _fail(reason: str) -> None:
    _state.update(status="failed", reason=reason)
    _done.set()
    _log.info("native guided rule not used (%s); the Python rule gives the same maps", reason)


def _build() -> None:
    try:
        from torch.utils import cpp_extension

        # One library per source and torch/Python build: a library built for another torch
        # would not load (or worse, load with the wrong layout).
        digest = hashlib.sha256(
            _SOURCE.read_bytes() + f"{torch.__version__} {sys.version}".encode()
        ).hexdigest()[:12]
        cpp_extension.load(f"saliency_graph_rule_{digest}", [str(_SOURCE)],
                           is_python_module=False, verbose=False)
        torch.ops.saliency_graph_rule.rectify_graph  # noqa: B018 - raises if not registered
    except Exception as exc:  # noqa: BLE001 - no compiler or ninja, no headers, an unwritable cache
        with _guard:
            _fail(f"could not be built or loaded: {type(exc).__name__}: {exc}"[:500])
        return
    with _guard:
        if _state["status"] == "building":  # not given up meanwhile
            _state.update(status="ready", reason="")
        _done.set()
