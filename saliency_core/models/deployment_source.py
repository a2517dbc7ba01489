"""Where the model cache is filled from in a deployment: a read-only *model source*
(``SALIENCY_MODEL_SOURCE``; not to be confused with a family of models, models/source.py).

``SALIENCY_MODEL_SOURCE`` names a location laid out exactly like the cache root
(``torch/hub/checkpoints/...``, ``hf/hub/models--org--name/...``, ``timm/...``), filled once by
whoever has write access (``python -m saliency_core fetch ...`` and a copy of the cache folder,
e.g. ``aws s3 sync models_cache s3://bucket/prefix``):

- ``s3://bucket/prefix``: S3-compatible object storage through fsspec/s3fs;
  ``SALIENCY_S3_ENDPOINT_URL`` picks the server (MinIO, Ceph; AWS when unset), credentials come
  the usual way for boto (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, an instance role).
- a folder (``/mnt/models``, ``file:///mnt/models``): a shared read-only volume.

The source is only read. When ``load_model`` needs a zoo model whose weights are not in the
local cache (``SALIENCY_CACHE``, which stays writable and local to the machine), its files are
copied from the source into the local cache first, each file written under a temporary name
and renamed, so a copy cut short is never taken for a model. After that the model loads from
the local copy like any fetched one, and later loads do not touch the source. (A shared volume
can also be mounted as ``SALIENCY_CACHE`` itself, read in place without a copy.)
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from saliency_core.errors import ModelUnavailableError
from saliency_core.models.cache import cache_root

SOURCE_ENV = "SALIENCY_MODEL_SOURCE"
S3_ENDPOINT_ENV = "SALIENCY_S3_ENDPOINT_URL"
# A listing of the source is reused this long: the model list is drawn on every page run.
LISTING_TTL_S = 30.0
# Hugging Face caches keep each file twice in a synced copy (blobs/ and snapshots/, links
# become files in object storage); the snapshot alone is what the loaders read.
_SKIPPED_PARTS = ("blobs", ".locks", ".no_exist")

_listing_lock = threading.Lock()
# (source, time, path -> size, or the error the source gave)
_listing: tuple[str, float, dict[str, int] | ModelUnavailableError] | None = None
_copy_lock = threading.Lock()


def configured() -> str | None:
    value = os.environ.get(SOURCE_ENV, "").strip()
    return value or None


class SourceTree:
    """A read-only tree of cache files: ``files()`` lists them (relative path -> size),
    ``copy(relative, destination)`` writes one to a local path."""

    def __init__(self, location: str):
        self.location = location
        if location.startswith("s3://"):
            import s3fs

            self.fs = s3fs.S3FileSystem(
                endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None,
                use_listings_cache=False, skip_instance_cache=True,
                config_kwargs={"connect_timeout": 5, "read_timeout": 60,
                               "retries": {"max_attempts": 2, "mode": "standard"}})
            self.root = location.removeprefix("s3://").strip("/")
        else:
            from fsspec.implementations.local import LocalFileSystem

            self.fs = LocalFileSystem()
            self.root = str(Path(location.removeprefix("file://")).expanduser().resolve())

    def files(self) -> dict[str, int]:
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # botocore/aiohttp errors share no useful base class
            raise ModelUnavailableError(
                f"The model source {self.location} ({SOURCE_ENV}) cannot be read: "
                f"{str(exc)[:300]}") from exc
        out = {}
        prefix = self.root.rstrip("/") + "/"
        for path, info in found.items():
            if info.get("type", "file") != "file" or not path.startswith(prefix):
                continue
            relative = safe_relative(path[len(prefix):])
            if relative is not None:
                out[relative] = int(info.get("size") or 0)
        return out

    def copy(self, relative: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=destination.parent, suffix=".part")
        os.close(fd)
        try:
            self.fs.get_file(f"{self.root}/{relative}", tmp)
            os.replace(tmp, destination)
        except Exception as exc:
            raise ModelUnavailableError(
                f"Copying {relative} from the model source {self.location} failed: "
                f"{str(exc)[:300]}") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def safe_relative(path: str) -> str | None:
    """A listed path as a relative POSIX path that stays inside the cache, or None."""
    normal = posixpath.normpath(path)
    if normal.startswith(("/", "../")) or normal in (".", "..") or "\\" in normal:
        return None
    parts = normal.split("/")
    if any(part in _SKIPPED_PARTS for part in parts) or parts[-1].endswith((".part", ".lock")):
        return None
    return normal


def listing() -> dict[str, int]:
    """The configured source's files (relative path -> size), at most LISTING_TTL_S old;
    empty when no source is configured."""
    global _listing
    location = configured()
    if location is None:
        return {}
    with _listing_lock:
        if _listing is not None and _listing[0] == location and \
                time.monotonic() - _listing[1] < LISTING_TTL_S:
            found = _listing[2]
            if isinstance(found, ModelUnavailableError):
                raise found
            return found
    try:
        files: dict[str, int] | ModelUnavailableError = SourceTree(location).files()
    except ModelUnavailableError as exc:
        # A source that is down is asked again only after the TTL: the model list is drawn
        # for every model on every page run and must not wait for it each time.
        files = exc
    with _listing_lock:
        _listing = (location, time.monotonic(), files)
    if isinstance(files, ModelUnavailableError):
        raise files
    return files


def forget_listing() -> None:
    global _listing
    with _listing_lock:
        _listing = None


def _relative(paths: list[Path]) -> list[str]:
    root = cache_root()
    return [p.relative_to(root).as_posix() for p in paths]


def _matching(files: dict[str, int], prefix: str) -> list[str]:
    return [f for f in files if f == prefix or f.startswith(prefix + "/")]


def in_source(paths: Callable[[], list[Path]]) -> bool:
    """Whether the configured source holds weights at ``paths()`` (the files or folders, under
    the cache root, a model's weights occupy). False without a source, or when the source
    cannot be read: the model list must draw even then."""
    if configured() is None:
        return False
    try:
        files = listing()
        return any(_matching(files, prefix) for prefix in _relative(paths()))
    except ModelUnavailableError:
        return False


def ensure_local(paths: Callable[[], list[Path]], present: Callable[[], bool]) -> bool:
    """Copy the files at ``paths()`` from the configured source into the local cache unless
    ``present()`` says the model is there already. Returns True when something was copied.

    The model's family passes both (models/source.py): this module knows the cache's layout,
    never which family a name belongs to."""
    if configured() is None or present():
        return False
    with _copy_lock:  # one copy at a time: two sessions asking for one model copy it once
        if present():
            return False
        forget_listing()  # the source may have been filled since the last listing
        files = listing()
        wanted = [f for prefix in _relative(paths()) for f in _matching(files, prefix)]
        if not wanted:
            return False
        root = cache_root()
        # Config files last: a Hugging Face snapshot counts as present once config.json is
        # there, so it must be the final file of the copy.
        for relative in sorted(wanted, key=lambda f: (f.endswith("config.json"), f)):
            target = root / relative
            if not target.is_file() or target.stat().st_size != files[relative]:
                SourceTree(configured() or "").copy(relative, target)
        return True
