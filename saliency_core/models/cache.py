"""Where model weights live on disk.

Downloaded weights go under the cache root: ``$SALIENCY_CACHE`` when set; otherwise
``<repo>/models_cache`` when the package runs from a checkout of the repository, and the user's
cache directory (``platformdirs.user_cache_dir("saliency-workbench")``, e.g.
``~/.cache/saliency-workbench``) when it was installed with pip. The root is laid out as
TORCH_HOME=<root>/torch and HF_HOME=<root>/hf would lay it out, so files fetched by the
libraries' own tools outside this project can be dropped in. The loaders pass these folders
explicitly instead of changing the process environment. Bundled weights are package data, in
``saliency_core/weights``, whatever the cache root, so they travel inside the wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
BUNDLED_DIR = PACKAGE_DIR / "weights"
# The checkout the package runs from, when it does (after pip install this is site-packages).
REPO_ROOT = PACKAGE_DIR.parent
DISTRIBUTION = "saliency-workbench"


def in_checkout() -> bool:
    """True when saliency_core is imported from the repository (plain or editable install)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "app.py").is_file()


def cache_root() -> Path:
    configured = os.environ.get("SALIENCY_CACHE")
    if configured:
        return Path(configured).expanduser()
    if in_checkout():
        return REPO_ROOT / "models_cache"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(DISTRIBUTION, appauthor=False))


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


def relative_to_cache(path: Path) -> str:
    try:
        return str(path.relative_to(cache_root()))
    except ValueError:
        return str(path)


class NewFolders:
    """Creates a folder and its missing parents; ``discard()`` removes those it created that
    are still empty, so a failed download leaves the cache as it was."""

    def __init__(self, folder: Path):
        self.created: list[Path] = []
        missing = folder
        while not missing.exists():
            self.created.append(missing)
            missing = missing.parent
        folder.mkdir(parents=True, exist_ok=True)

    def discard(self) -> None:
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): keep it
                break


def is_network_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means the host could not be reached at all."""
    import socket
    from urllib.error import URLError

    network = (ConnectionError, TimeoutError, socket.gaierror, socket.timeout)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, network) or type(exc).__name__ in (
            "ConnectError", "ConnectTimeout", "OfflineModeIsEnabled"
        ):
            return True
        if isinstance(exc, URLError) and isinstance(exc.reason, (OSError, socket.gaierror)):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]  # None ends the loop
    return False


def unreachable_message(name: str, url: str, mirror_env: str, copy_what: str) -> str:
    """What to do when the weights' host cannot be reached from this machine."""
    from urllib.parse import urlsplit

    host = urlsplit(url).netloc or url
    return (
        f"{name}: could not reach {host}; this machine seems to have no network access to it. "
        f"Either set {mirror_env} to a mirror you can reach (your organisation's copy of the "
        f"files, laid out as on {host}), or run '{fetch_command(name)}' on a connected "
        f"machine and copy {copy_what} into the same place under this machine's cache "
        f"({cache_root()})."
    )
