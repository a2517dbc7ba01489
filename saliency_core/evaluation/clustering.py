"""Strategies of a model as clusters of its attribution maps: spectral relevance analysis
(Lapuschkin et al. 2019, "Unmasking Clever Hans predictors").

Maps are made comparable (each scaled to unit mass, then flattened), linked to their nearest
neighbours (a symmetric k-nearest-neighbour graph, so a small tight group stays its own
component), and the eigenvalues of that graph's normalised Laplacian say how many groups there
are: the largest gap between consecutive eigenvalues (the eigengap) ends the clusters.
scikit-learn does the clustering (SpectralClustering on the same graph) and the embedding
(t-SNE) that draws it; nothing here is a hand-written clusterer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csgraph
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from saliency_core.errors import SaliencyError

MAX_CLUSTERS = 8
LOCAL_SCALE_NEIGHBOUR = 7


@dataclass
class MapClusters:
    """What ``cluster_maps`` returns.

    Attributes:
        labels: int [N], each map's cluster (0 is the largest, then by size).
        n_clusters: How many clusters (given, or chosen by the eigengap).
        eigengaps: float [K], ``eigenvalue[k] - eigenvalue[k - 1]`` of the normalised
            Laplacian for k = 1..K: the gap after the k-th eigenvalue; the chosen number of
            clusters is where it is largest (index + 1).
        eigenvalues: float [K + 1], the smallest eigenvalues, ascending.
        neighbours: The k of the nearest-neighbour graph.
    """

    labels: np.ndarray
    n_clusters: int
    eigengaps: np.ndarray
    eigenvalues: np.ndarray
    neighbours: int

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_clusters)

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.labels == cluster)


def prepare_maps(maps: np.ndarray) -> np.ndarray:
    """[N, h, w] -> float64 [N, h*w], each row non-negative with unit sum (a zero map stays
    zero), so clusters group maps by where they look, not by how strong they are."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise SaliencyError(f"maps must be [N, h, w]; got shape {m.shape}")
    flat = np.clip(np.nan_to_num(m.reshape(len(m), -1)), 0, None)
    total = flat.sum(1, keepdims=True)
    return np.divide(flat, total, out=np.zeros_like(flat), where=total > 0)


def _affinity(features: np.ndarray, k: int):
    """Gaussian weights with a local scale on the k-nearest-neighbour graph (Zelnik-Manor and
    Perona's self-tuning affinity): w_ij = exp(-d_ij^2 / (s_i s_j)), s_i the distance to map
    i's 7th neighbour. Maps of one strategy are then strongly linked to their neighbours and
    weakly to another strategy's, however spread out each group is."""
    from scipy.sparse import coo_matrix
    from sklearn.neighbors import NearestNeighbors

    n = len(features)
    distances, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    distances, neighbours = distances[:, 1:], neighbours[:, 1:]  # each map's own entry first
    scale = distances[:, min(LOCAL_SCALE_NEIGHBOUR, k) - 1]
    scale = np.where(scale > 0, scale, max(float(scale.max()), 1e-12))
    rows = np.repeat(np.arange(n), k)
    cols = neighbours.reshape(-1)
    weights = np.exp(-(distances.reshape(-1) ** 2) / (scale[rows] * scale[cols]))
    graph = coo_matrix((weights, (rows, cols)), shape=(n, n)).tocsr()
    return graph.maximum(graph.T).tocsr()


def _smallest_eigenvalues(affinity, count: int) -> np.ndarray:
    laplacian = csgraph.laplacian(affinity, normed=True)
    n = laplacian.shape[0]
    if n <= 300 or count >= n - 1:
        values = np.linalg.eigvalsh(laplacian.toarray())
        return np.sort(values)[:count]
    # I - L's largest eigenvalues are L's smallest: ARPACK finds the largest ones fast.
    shifted = -laplacian
    shifted.setdiag(shifted.diagonal() + 1.0)
    try:
        top = eigsh(shifted, k=count, which="LA", tol=1e-6, return_eigenvectors=False,
                    v0=np.ones(n))
    except ArpackNoConvergence as exc:
        top = exc.eigenvalues
    return np.sort(1.0 - np.asarray(top))[:count]


def cluster_maps(maps: np.ndarray, n_clusters: int | None = None, seed: int = 0,
                 max_clusters: int = MAX_CLUSTERS, neighbours: int | None = None) -> MapClusters:
    """Group attribution maps by where they look (spectral relevance analysis).

    Args:
        maps: Non-negative maps [N, h, w] (``DatasetExplanation.maps``: downsampled already).
        n_clusters: How many clusters; None chooses by the eigengap (2..``max_clusters``, or 1
            when no gap stands out).
        seed: Seeds the clustering's k-means step: the same maps give the same labels.
        max_clusters: The most clusters the eigengap may choose.
        neighbours: k of the nearest-neighbour graph (default: about sqrt(N), 3..10).

    Returns:
        ``MapClusters`` with ``labels`` [N] (cluster 0 the largest), ``n_clusters`` and
        ``eigengaps``.

    Raises:
        SaliencyError: Maps that are not [N, h, w], or an ``n_clusters`` above N.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> left = np.zeros((20, 8, 8)); left[:, :, :2] = 1
        >>> right = np.zeros((12, 8, 8)); right[:, :, -2:] = 1
        >>> maps = np.concatenate([left, right]) + rng.uniform(0, 0.2, (32, 8, 8))
        >>> c = cluster_maps(maps)
        >>> c.n_clusters, c.sizes().tolist()
        (2, [20, 12])
    """
    features = prepare_maps(maps)
    n = len(features)
    if n_clusters is not None and not 1 <= n_clusters <= max(1, n):
        raise SaliencyError(f"n_clusters must be between 1 and {max(1, n)}; got {n_clusters}")
    if n < 4:
        count = n_clusters or 1
        labels = np.arange(n) % count if count > 1 else np.zeros(n, dtype=np.int64)
        return MapClusters(labels.astype(np.int64), count if n else 0, np.zeros(0), np.zeros(0), 0)
    k = neighbours or int(np.clip(round(np.sqrt(n)), 3, 10))
    k = min(k, n - 1)
    affinity = _affinity(features, k)
    top = min(max_clusters, n - 1)
    eigenvalues = _smallest_eigenvalues(affinity, top + 1)
    eigengaps = np.diff(eigenvalues)
    if n_clusters is None:
        # The gap after the k-th eigenvalue, for k >= 2; one cluster when no gap beats the
        # spread of the first ones (a single blob has small, even gaps).
        candidates = eigengaps[1:top]
        n_clusters = int(np.argmax(candidates)) + 2 if candidates.size else 1
        if candidates.size and candidates.max() < max(eigengaps[0], 1e-3):
            n_clusters = 1
    if n_clusters == 1:
        labels = np.zeros(n, dtype=np.int64)
    else:
        labels = _spectral_labels(affinity, n_clusters, seed)
    return MapClusters(_by_size(labels), n_clusters, eigengaps, eigenvalues, k)


def _spectral_labels(affinity, n_clusters: int, seed: int) -> np.ndarray:
    import warnings

    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", random_state=seed,
                               assign_labels="cluster_qr")
    with warnings.catch_warnings():
        # A graph with several components is what a shortcut looks like, not a problem.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return model.fit_predict(affinity).astype(np.int64)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel so that cluster 0 is the largest (ties: first seen)."""
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(values)), key=lambda j: (-counts[j], first[j]))
    mapping = np.empty(values.max() + 1, dtype=np.int64)
    for new, j in enumerate(order):
        mapping[values[j]] = new
    return mapping[labels]


def embed_maps(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE embedding [N, 2] of the maps (scikit-learn), for drawing the clusters.

    Example:
        >>> import numpy as np
        >>> embed_maps(np.random.default_rng(0).uniform(size=(30, 8, 8))).shape
        (30, 2)
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = prepare_maps(maps)
    n = len(features)
    if n < 3:
        return np.zeros((n, 2))
    # t-SNE's neighbour search on 1,024 dimensions is most of its time; 30 principal
    # components keep the neighbourhoods and make it several times faster.
    components = min(30, n, features.shape[1])
    reduced = PCA(n_components=components, random_state=seed).fit_transform(features)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca",
                max_iter=500)
    # One OpenMP thread: on a machine busier than its cores t-SNE's threads wait on each other
    # (240 maps: 24 s with the default threads against 1.6 s with one, on 2 loaded cores), and
    # a few thousand points take seconds on one core anyway.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return tsne.fit_transform(reduced)
