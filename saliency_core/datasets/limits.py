"""How much of a dataset (a folder or a zip of images) is read, and where the limits come from.

Folders and archives are larger than single image uploads, so they have limits of their own;
each is an environment variable, read when a dataset is opened (not at import), so a server
can be reconfigured without code changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from saliency_core.errors import SaliencyError

#: Environment variable -> (field, default). Megabytes are 2**20 bytes.
ENV = {
    "SALIENCY_DATASET_MAX_FILES": ("max_files", 20_000),
    "SALIENCY_DATASET_MAX_MB": ("max_archive_mb", 200),
    "SALIENCY_DATASET_MAX_UNPACKED_MB": ("max_unpacked_mb", 2048),
    "SALIENCY_DATASET_MAX_FILE_MB": ("max_file_mb", 25),
    "SALIENCY_DATASET_MAX_RATIO": ("max_ratio", 200),
}


class DatasetError(SaliencyError):
    """A dataset that cannot be opened at all (too large, too many files, not an archive)."""


@dataclass(frozen=True)
class DatasetLimits:
    """Caps on what one dataset may hold.

    Attributes:
        max_files: Entries looked at (files and folders of a zip or a folder); more is refused
            as a whole, so 100,000 tiny files cost one listing, never 100,000 decodes.
        max_archive_mb: The zip or the uploaded files together, as sent (the upload limit of
            datasets, larger than the one of single images).
        max_unpacked_mb: All images together once decompressed (a zip bomb's declared size).
        max_file_mb: One file once decompressed.
        max_ratio: Decompressed / compressed size of one zip member; real images compress
            little (PNG and JPEG are compressed already), bombs by a factor of a thousand.

    Example:
        >>> DatasetLimits.from_env({"SALIENCY_DATASET_MAX_FILES": "50"}).max_files
        50
    """

    max_files: int = 20_000
    max_archive_mb: int = 200
    max_unpacked_mb: int = 2048
    max_file_mb: int = 25
    max_ratio: int = 200

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DatasetLimits:
        """The limits set by the ``SALIENCY_DATASET_*`` variables (defaults for the others)."""
        env = os.environ if environ is None else environ
        values = {}
        for name, (field_name, default) in ENV.items():
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                values[field_name] = default
                continue
            try:
                value = int(raw)
            except ValueError:
                raise DatasetError(f"{name}={raw!r} is not a whole number") from None
            if value < 1:
                raise DatasetError(f"{name} must be at least 1; got {value}")
            values[field_name] = value
        return cls(**values)

    @property
    def max_unpacked_bytes(self) -> int:
        return self.max_unpacked_mb * 2**20

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 2**20

    @property
    def max_archive_bytes(self) -> int:
        return self.max_archive_mb * 2**20
