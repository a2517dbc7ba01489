"""What the Dataset page draws from a finished run: thumbnails with overlays, the gallery's
sorting and filters, the strategies (clusters of maps per class, each as its average map and a
few members) and the embedding plot. Nothing here runs the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from saliency_core import render
from saliency_core.datasets import DatasetExplanation
from saliency_core.datasets import measures as map_measures
from saliency_core.evaluation import MapClusters, cluster_maps

THUMB_PX = 112
MAX_GROUPS = 12
MEMBERS_SHOWN = 4
SORTS = {
    "confidence": "Confidence",
    "concentration": "Concentration of the map",
    "corners": "Mass in the corners",
    "border": "Mass on the border",
    "deletion_auc": "Deletion AUC",
    "file": "File name",
}
MEASURE_HELP = {
    "concentration": "Gini coefficient of the map: 0 when spread evenly, near 1 when a few "
                     "pixels hold it all.",
    "corners": "Share of the map's mass in the four corner squares (a quarter of the side "
               "each); 25 % for an even map. Watermarks and logos live there; a cluster is "
               "marked when one corner holds a quarter of its mass (four times an even share).",
    "border": "Share of the map's mass on the outer frame (an eighth of the side wide); 44 % "
              "for an even map.",
}


def model_picture(loaded, picture: Image.Image) -> np.ndarray:
    """The picture as the model sees it (resized, cropped), uint8 [H, W, 3]."""
    return loaded.unpreprocess(loaded.preprocess(picture))


def overlay_thumb(pixels: np.ndarray, small_map: np.ndarray, cmap: str = "inferno",
                  alpha: float = 0.55) -> np.ndarray:
    """A thumbnail of ``pixels`` with the compact map over it (each map on its own scale)."""
    image = np.asarray(Image.fromarray(pixels).resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR))
    heat = np.asarray(Image.fromarray(small_map.astype(np.float32), mode="F")
                      .resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR))
    return render.overlay(image, render.normalize(heat), cmap=cmap, alpha=alpha)


def average_map_picture(maps: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """The mean of unit-mass maps, coloured: where the cluster looks on average."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    total = flat.sum(1, keepdims=True)
    unit = np.divide(flat, total, out=np.zeros_like(flat), where=total > 0)
    mean = unit.mean(0).reshape(maps.shape[1:])
    heat = np.asarray(Image.fromarray(mean.astype(np.float32), mode="F")
                      .resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR))
    return render.colorize(render.normalize(heat), cmap=cmap)


def filtered(table: pd.DataFrame, predicted: list[str], true: list[str], outcome: str,
             cluster: str | None = None) -> pd.DataFrame:
    """The rows that pass the gallery's filters (an empty list means any class)."""
    keep = pd.Series(True, index=table.index)
    if predicted:
        keep &= table["predicted"].isin(predicted)
    if true:
        keep &= table["true"].isin(true).fillna(False).astype(bool)
    if outcome == "right":
        keep &= table["correct"].fillna(False).astype(bool)
    elif outcome == "wrong":
        keep &= (~table["correct"].fillna(True)).astype(bool)
    elif outcome == "unknown":
        keep &= table["correct"].isna()
    if cluster and "cluster" in table.columns:
        keep &= table["cluster"] == cluster
    return table[keep]


def sorted_rows(table: pd.DataFrame, by: str, descending: bool) -> pd.DataFrame:
    if by not in table.columns:
        by = "file"
    return table.sort_values(by, ascending=not descending, kind="stable", na_position="last")


@dataclass
class Strategy:
    """One cluster of one group: its members (row indices), size, accuracy and measures."""

    group: str
    index: int
    members: np.ndarray
    accuracy: float | None
    corners: float
    border: float
    concentration: float
    flagged: bool

    @property
    def name(self) -> str:
        return f"{self.group} · {self.index + 1}"


def group_of(result: DatasetExplanation, by: str) -> list[str]:
    """Each image's group: its true label ("true"), predicted class ("predicted") or "all"."""
    if by == "true":
        return [t if t is not None else "(no label)" for t in result.labels]
    if by == "predicted":
        return result.predicted_names
    return ["all images"] * len(result)


def strategies(result: DatasetExplanation, by: str, seed: int = 0,
               max_groups: int = MAX_GROUPS) -> tuple[list[Strategy], dict[str, MapClusters]]:
    """Spectral relevance analysis per group (the largest ``max_groups`` groups)."""
    groups = np.array(group_of(result, by))
    names, counts = np.unique(groups, return_counts=True)
    order = sorted(range(len(names)), key=lambda j: (-counts[j], names[j]))[:max_groups]
    correct = result.correct
    found: list[Strategy] = []
    clusters: dict[str, MapClusters] = {}
    for j in sorted(order, key=lambda j: names[j]):
        group = str(names[j])
        rows = np.flatnonzero(groups == group)
        c = cluster_maps(result.maps[rows], seed=seed)
        clusters[group] = c
        for k in range(c.n_clusters):
            members = rows[c.labels == k]
            known = [correct[i] for i in members if correct[i] is not None]
            mean = result.maps[members].mean(0)[None]
            found.append(Strategy(
                group, k, members, (float(np.mean(known)) if known else None),
                float(map_measures.corner_share(mean)[0]), float(map_measures.border_share(mean)[0]),
                float(map_measures.gini(mean)[0]), bool(map_measures.looks_at_the_edges(mean)[0])))
    return found, clusters


def cluster_column(result: DatasetExplanation, found: list[Strategy]) -> list[str]:
    column = [""] * len(result)
    for s in found:
        for i in s.members:
            column[int(i)] = s.name
    return column


def clusters_table(found: list[Strategy], names: list[str]) -> pd.DataFrame:
    """One row per cluster (the export): group, cluster, size, accuracy, measures, members."""
    return pd.DataFrame([{
        "group": s.group, "cluster": s.index + 1, "size": len(s.members),
        "accuracy": s.accuracy, "corners": s.corners, "border": s.border,
        "concentration": s.concentration, "members": [names[int(i)] for i in s.members],
    } for s in found])
