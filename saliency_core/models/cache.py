"""Where model weights live on disk.

Downloaded weights go under the cache root: ``$SALIENCY_CACHE`` or ``<repo>/models_cache``,
laid out as TORCH_HOME=<root>/torch and HF_HOME=<root>/hf would lay them out, so files fetched
by the libraries' own tools outside this project can be dropped in. The loaders pass these
folders explicitly instead of changing the process environment. Bundled weights are part of the
repository, in ``<repo>/models_cache/bundled``, whatever the cache root.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DIR = REPO_ROOT / "models_cache" / "bundled"


def cache_root() -> Path:
    configured = os.environ.get("SALIENCY_CACHE")
    return Path(configured).expanduser() if configured else REPO_ROOT / "models_cache"


def torch_checkpoint_dir() -> Path:
    """Same folder as torch.hub uses for TORCH_HOME=<root>/torch."""
    return cache_root() / "torch" / "hub" / "checkpoints"


def hf_hub_dir() -> Path:
    """Same folder as huggingface_hub uses for HF_HOME=<root>/hf."""
    return cache_root() / "hf" / "hub"


def fetch_command(name: str) -> str:
    return f"python -m saliency_core fetch {name}"


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (links followed once; HF snapshots are links)."""
    total = 0
    for item in path.rglob("*"):
        if item.is_file():
            total += item.stat().st_size
    return total
