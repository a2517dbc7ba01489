"""What the browser benchmarks share: the workbench started on a free port and warmed, the
browser it is driven with, what the page shows once a new picture is on screen, the photos
uploaded, and how figures are summarised.

``benchmarks.ui`` (one visitor at a time) and ``benchmarks.load`` (many at once) both use it,
so the two time the same thing in the same way.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 300_000
# The page asks for a click before a request it estimates above the budget; a busy machine's
# estimates would stop the run there. What is timed is the wait, not the confirmation.
BUDGET_ENV = {"SALIENCY_REQUEST_BUDGET_S": "3600"}
# The overlay panel once final ("Overlay"), or any overlay, coarse levels included.
OVERLAY_JS = """([prefix, old]) => {
  for (const box of document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]')) {
    const img = box.querySelector('img');
    const caption = (box.innerText || '').trim();
    if (img && caption.startsWith(prefix) && img.complete && img.naturalWidth > 0
        && img.src !== old) return img.src;
  }
  return false;
}"""
# Compare: at least n maps drawn, each with its "... 1 pass" / "... 50 passes" caption.
GRID_JS = """([n]) => {
  const imgs = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')];
  const done = imgs.filter(i => i.complete && i.naturalWidth > 0);
  const captions = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
    .filter(c => /\\d+ pass(es)?\\b/.test(c.innerText));
  return captions.length >= n && done.length >= n;
}"""
# The script run (and any rerun it asked for) is over when both hold.
SCRIPT_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
SIDEBAR = '[data-testid="stSidebar"]'
# Methods not yet computed for a fresh input, each a few model passes; none of them the Image
# page's default (Grad-CAM), which is already on screen and would draw nothing new.
QUICK_METHODS = ["Vanilla gradient", "Grad-CAM++", "Gradient × input", "Guided Backprop", "HiResCAM"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The workbench on localhost, started like ``make run`` (``mode="run"``) or like
    ``make serve`` (``mode="hosted"``, workbench/serve.py's hosted configuration, here on
    127.0.0.1); waits for the warm start."""

    def __init__(self, log_path: Path, warm_timeout_s: float = 600, env: dict | None = None,
                 mode: str = "run", args: Sequence[str] = ()):
        self.env = env or {}
        self.mode = mode
        self.args = list(args)  # more streamlit options
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.warm_timeout_s = warm_timeout_s

    def __enter__(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workbench.serve", self.mode, "app.py",
             "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
             *self.args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid
        start = time.monotonic()
        while "warm start" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() - start > self.warm_timeout_s:
                self.__exit__()
                raise RuntimeError(f"the server did not warm up:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        self.warm_s = time.monotonic() - start
        # The warm start can be logged before the HTTP server listens (a small model warms up
        # in less time than the server takes to bind): wait for the health check too.
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() - start > self.warm_timeout_s:
                self.__exit__()
                raise RuntimeError(f"the server never answered:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=10) as r:
                return r.status == 200
        except OSError:
            return False

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class Running:
    """A server someone else started (``--url``): nothing to start or stop."""

    warm_s = None
    pid = None

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        pass


def photo_png(index: int, seed: int | None = None) -> bytes:
    """A photo never uploaded before in this run: the skimage samples, shifted a little, and
    with ``seed`` a faint seeded noise as well (so that any number of them differ)."""
    import skimage.data
    from PIL import Image

    sources = [skimage.data.chelsea, skimage.data.coffee, skimage.data.astronaut,
               skimage.data.rocket]
    pixels = sources[index % len(sources)]()
    pixels = np.roll(pixels, 7 * (index // len(sources) + 1), axis=1)
    if seed is not None:
        noise = np.random.default_rng(seed).integers(-3, 4, pixels.shape)
        pixels = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def summary(samples: dict[str, list[float]]) -> list[dict]:
    """Per action: count, median and p95 (nearest rank) in milliseconds."""
    rows = []
    for name, values in samples.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]
        rows.append({"action": name, "n": len(values), "median_ms": 1000 * statistics.median(values),
                     "p95_ms": 1000 * p95})
    return rows


def machine() -> str:
    cores = os.cpu_count()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001  (the figures stand without the device name)
        gpu = "unknown device"
    return f"{platform.processor() or platform.machine()}, {cores} cores, {gpu}, {platform.platform()}"


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> str:
    """The GPUs as nvidia-smi lists them, without importing torch (slow to import on a busy
    client); "no GPU" without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no GPU"
    try:
        done = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "GPU unknown"
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return ", ".join(names) or "no GPU"
