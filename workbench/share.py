"""Server-side store for uploaded inputs, so a share link can name an upload by its hash.

A link carries ``input=upload:<sha256>``; whoever opens it gets the same bytes back from this
folder. Files are named by the SHA-256 of their content (which also makes a stored file
tamper-evident), only validated images are stored, and the folder is kept under a size bound by
dropping the least recently used files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from saliency_core.errors import SaliencyError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARE_DIR_ENV = "SALIENCY_SHARE_DIR"
SHARE_MAX_MB_ENV = "SALIENCY_SHARE_MAX_MB"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ShareLinkError(SaliencyError):
    """A share link names an input that is malformed or not on this server."""


def share_dir() -> Path:
    configured = os.environ.get(SHARE_DIR_ENV)
    return Path(configured).expanduser() if configured else REPO_ROOT / "share_store"


def max_bytes() -> int:
    raw = os.environ.get(SHARE_MAX_MB_ENV)
    try:
        return int(float(raw) * 1024 * 1024) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    return isinstance(text, str) and bool(_DIGEST.match(text))


class ShareStore:
    def __init__(self, root: Path | None = None, limit_bytes: int | None = None):
        self.root = Path(root) if root is not None else share_dir()
        self.limit_bytes = max_bytes() if limit_bytes is None else limit_bytes

    def path(self, digest: str) -> Path:
        # The digest is checked before it becomes part of a path: nothing like "../x" gets in.
        if not is_digest(digest):
            raise ShareLinkError(
                "The link's input reference is malformed (expected a 64-character hash)."
            )
        return self.root / f"{digest}.bin"

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        target = self.path(digest)
        self.root.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.utime(target)  # recently used: keep it longest
            return digest
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._prune(keep=target)
        return digest

    def get(self, digest: str) -> bytes:
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ShareLinkError(
                "The link refers to an uploaded image this server does not have (it may have "
                "been shared from another server or cleaned up); upload it again."
            ) from None
        if digest_of(data) != digest:
            raise ShareLinkError("The stored input for this link is damaged; upload it again.")
        os.utime(target)
        return data

    def _prune(self, keep: Path) -> None:
        files = [p for p in self.root.glob("*.bin") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        for old in sorted(files, key=lambda p: p.stat().st_mtime):
            if total <= self.limit_bytes:
                break
            if old == keep:
                continue
            total -= old.stat().st_size
            old.unlink(missing_ok=True)
