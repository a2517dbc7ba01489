"""Server-side store for uploaded inputs, so a share link can name an upload by its hash.

A link carries ``input=upload:<sha256>``; whoever opens it gets the same bytes back from this
folder. Files are named by the SHA-256 of their content (which also makes a stored file
tamper-evident), only validated images are stored, and the folder is kept under a size bound by
dropping the least recently used files. The bytes live in the configured storage backend
(workbench/hosting/storage.py): this folder by default, a bucket shared by every app replica when object
storage is configured, so a link made on one replica opens on any other.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from saliency_core.errors import SaliencyError
from workbench.hosting.storage import (
    LocalStorage,
    Storage,
    StorageUnavailable,
    storage_for,
)

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
    def __init__(self, root: Path | None = None, limit_bytes: int | None = None,
                 storage: Storage | None = None):
        if storage is None:
            storage = LocalStorage(Path(root)) if root is not None else storage_for("shares", share_dir())
        self.storage = storage
        self.limit_bytes = max_bytes() if limit_bytes is None else limit_bytes

    def key(self, digest: str) -> str:
        # The digest is checked before it becomes part of a name: nothing like "../x" gets in.
        if not is_digest(digest):
            raise ShareLinkError(
                "The link's input reference is malformed (expected a 64-character hash)."
            )
        return f"{digest}.bin"

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        key = self.key(digest)
        try:
            if self.storage.exists(key):
                self.storage.touch(key)  # recently used: keep it longest
                return digest
            self.storage.write(key, data)
            self.storage.prune(self.limit_bytes, keep=key)
        except StorageUnavailable as exc:
            raise ShareLinkError(f"The upload could not be kept for share links: {exc}") from exc
        return digest

    def get(self, digest: str) -> bytes:
        key = self.key(digest)
        try:
            data = self.storage.read(key)
        except KeyError:
            raise ShareLinkError(
                "The link refers to an uploaded image this server does not have (it may have "
                "been shared from another server or cleaned up); upload it again."
            ) from None
        except StorageUnavailable as exc:
            raise ShareLinkError(f"The shared inputs cannot be read right now: {exc}") from exc
        if digest_of(data) != digest:
            raise ShareLinkError("The stored input for this link is damaged; upload it again.")
        self.storage.touch(key)
        return data
