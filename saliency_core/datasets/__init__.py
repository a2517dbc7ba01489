"""Many images through one model and method: reading folders and archives safely
(``sources``, ``limits``), explaining them with compact maps (``explain``), measuring the maps
(``measures``) and the bundled sample with a planted shortcut (``samples``).

Clustering the maps into strategies is ``saliency_core.evaluation.cluster_maps``.
"""

from __future__ import annotations

from saliency_core.datasets.explain import DatasetExplanation, explain_dataset, full_map
from saliency_core.datasets.limits import DatasetError, DatasetLimits
from saliency_core.datasets.sources import (
    FileError,
    ImageSet,
    open_images,
    read_labels_csv,
)

__all__ = [
    "DatasetError",
    "DatasetExplanation",
    "DatasetLimits",
    "FileError",
    "ImageSet",
    "explain_dataset",
    "full_map",
    "open_images",
    "read_labels_csv",
]
