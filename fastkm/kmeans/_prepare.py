"""The rows a fit actually iterates on: ``prepare`` turns the validated input into
one ``FitData`` (distinct rows with their total weights, spatial order, tile
layout, mean-centring) and ``FitData`` maps results back to the input.

Each step is exact: K-Means on the distinct rows, each weighted by the total
weight of its copies, is K-Means on the input (identical rows always get the
same label); reordering rows or subtracting the column means changes no label.
The input is never modified.
"""
from dataclasses import dataclass

import numpy as np

from fastkm import _threads
from fastkm._kernels import layout, stats
from fastkm._kernels import prepare as _prepare_kernels
from fastkm.kmeans import _policy


@dataclass(frozen=True)
class FitData:
    """The rows a fit iterates on, and how they relate to the input's rows.

    Attributes
    ----------
    X : ndarray (m, d), float32 or float64, C-contiguous
        The rows to fit: the input's, or its distinct rows, possibly reordered
        and mean-centred. Owned by the fit (never the caller's array, unless
        it is the input itself, unmodified).
    weights : ndarray (m,), X's dtype
        Weight of each row (the summed weights of its copies).
    input_rows : ndarray (n,) int32 or None
        Row of ``X`` that each input row became; None when it is the identity.
    input_weights : ndarray (n,)
        The input's weights: k-means++ draws walk the input's rows, so that the
        centers are those the input itself would give for the same random stream.
    sorted_rows : bool
        X is in spatial order (few features): Lloyd's tiles skip the centers
        their bounding box rules out.
    tiles : ndarray (n_chunks, d, CHUNK) or None
        X in tile layout, when the few-feature kernels read it many times.
    mean : ndarray (d,) float64 or None
        The column means subtracted from X.
    """

    X: np.ndarray
    weights: np.ndarray
    input_rows: object
    input_weights: np.ndarray
    sorted_rows: bool
    tiles: object
    mean: object

    @property
    def n_input(self):
        return self.input_weights.shape[0]

    def input_labels(self, labels):
        """Labels of the input's rows from labels of X's rows."""
        return labels if self.input_rows is None else labels[self.input_rows]

    def input_centers(self, centers):
        """Centers in the input's coordinates (undo the centring)."""
        return centers if self.mean is None else (centers + self.mean).astype(self.X.dtype)

    def fit_centers(self, centers):
        """Centers given in the input's coordinates, in X's."""
        return centers if self.mean is None else (centers - self.mean).astype(self.X.dtype)

    def row_of_input(self, i):
        """Row of X that input row(s) ``i`` became."""
        return i if self.input_rows is None else self.input_rows[i]


def tile_layout(X, n_threads):
    """X as (n_chunks, n_features, CHUNK) tiles: what the few-feature kernels read."""
    n_chunks = -(-X.shape[0] // layout.CHUNK_ROWS)
    xt = np.empty((n_chunks, X.shape[1], layout.CHUNK_ROWS), dtype=X.dtype)
    layout.transpose_chunks(X, xt, _threads.threads_for("transpose", X.size, n_threads))
    return xt


def deduplicate(X, sample_weight, n_clusters, n_threads=1):
    """Distinct rows of X with their summed weights, and the map back to X's rows,
    or None when it would not pay (few rows, or hardly any repeats)."""
    n = X.shape[0]
    if n < _policy.DEDUP_MIN_SAMPLES:
        return None
    # A spread-out sample of rows without a single repeat: almost surely data
    # with few repeats (continuous features); don't pay for the full pass.
    sample = np.ascontiguousarray(X[:: max(1, n // _policy.DEDUP_SAMPLE)][:_policy.DEDUP_SAMPLE])
    if _prepare_kernels.unique_rows(sample, sample.shape[0] - 1) is None:
        return None
    found = _prepare_kernels.unique_rows(X, int(_policy.DEDUP_MAX_FRACTION * n),
                                         _threads.threads_for("dedup", X.size, n_threads))
    if found is None or found[0].shape[0] < n_clusters:
        return None
    X_u, inverse = found
    weights = np.bincount(inverse, weights=sample_weight, minlength=X_u.shape[0])
    return X_u, weights.astype(X.dtype), inverse


def prepare(X, sample_weight, n_clusters, *, exact_rows, copy_x, n_threads, verbose=0):
    """The ``FitData`` of validated X and weights.

    ``exact_rows``: the init picks centers from X's own rows ('random', a
    callable), so X is kept as it is: no deduplication, no reordering.
    """
    n, d = X.shape
    weights, input_rows, sorted_rows, owned = sample_weight, None, False, False
    if not exact_rows:
        found = deduplicate(X, sample_weight, n_clusters, n_threads)
        if found is not None:
            X, weights, input_rows = found
            owned = True
            if verbose:
                print(f"{X.shape[0]} distinct rows among {n}: fitting those.")
        if (d <= _policy.PRUNE_MAX_FEATURES and X.shape[0] >= _policy.PRUNE_MIN_SAMPLES
                and n_clusters >= _policy.PRUNE_MIN_CLUSTERS):
            perm = _prepare_kernels.spatial_order(X)
            rank = np.empty(perm.shape[0], dtype=np.int32)
            rank[perm] = np.arange(perm.shape[0], dtype=np.int32)
            input_rows = rank if input_rows is None else rank[input_rows]
            X, weights = X[perm], weights[perm]
            sorted_rows = owned = True
    tiles = tile_layout(X, n_threads) if sorted_rows else None
    mean = None
    if d > _policy.CENTRE_ABOVE_FEATURES and copy_x:
        # into the fit's own copy of the rows, else a new array: the input is
        # never modified
        out = X if owned else np.empty_like(X)
        mean = stats.centre_columns(X, out, _threads.threads_for("columns", X.size, n_threads))
        X = out
    return FitData(X, weights, input_rows, sample_weight, sorted_rows, tiles, mean)
