"""A whole K-Means fit without the estimator class: tolerance, data preparation,
``n_init`` runs of seeding + solver, the best run mapped back to the input.

``KMeans.fit`` validates and then calls ``fit``; so does the image quantizer,
which never needs scikit-learn (this module imports nothing from it).
"""
from typing import NamedTuple

import numpy as np

from fastkm import _threads
from fastkm._kernels import stats
from fastkm.kmeans import _policy
from fastkm.kmeans._csr import SparseX
from fastkm.kmeans._prepare import prepare
from fastkm.kmeans._seeding import init_centers
from fastkm.kmeans._solver import run


class FitResult(NamedTuple):
    centers: np.ndarray      # (k, d) in the input's coordinates, X's dtype
    labels: np.ndarray       # (n,) int32, of the input's rows
    inertia: float
    n_iter: int
    algorithm: str           # the algorithm that ran ('auto' resolved)
    n_distinct: int          # clusters with at least one row


def tolerance(X, tol, n_threads=1):
    """tol scaled by the mean per-feature variance of X (as scikit-learn).

    Compiled, two passes over fixed row blocks in float64: no temporary of X's
    size, the same value for any thread count.
    """
    if tol == 0:
        return 0.0
    return stats.mean_variance(X, _threads.threads_for("columns", 2 * X.size, n_threads))[1] * tol


def same_clustering(labels1, labels2, n_clusters):
    """True if two labelings are the same up to a permutation of the labels."""
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    first = np.unique(labels1, return_index=True)[1]
    mapping[labels1[first]] = labels2[first]
    return bool(np.array_equal(mapping[labels1], labels2))


def fit(X, sample_weight, n_clusters, *, init, n_init, max_iter, tol, random_state, algorithm,
        copy_x, verbose, n_threads):
    """K-Means on validated input with validated parameters.

    ``X``: C-contiguous float32/float64 without NaN; ``sample_weight``: finite,
    non-negative, X's dtype; ``init``: 'k-means++', 'k-means||', 'random', a
    callable or an array of shape (n_clusters, n_features); ``tol``: relative to the mean
    column variance; ``random_state``: a RandomState; ``n_threads``: an int.
    Sparse input (a ``_csr.SparseX``) goes to ``_sparse_core.fit``.
    """
    if isinstance(X, SparseX):
        from fastkm.kmeans import _sparse_core

        return _sparse_core.fit(X, sample_weight, n_clusters, init=init, n_init=n_init,
                                max_iter=max_iter, tol=tol, random_state=random_state,
                                algorithm=algorithm, copy_x=copy_x, verbose=verbose,
                                n_threads=n_threads)
    tol = tolerance(X, tol, n_threads)
    # 'random' and callable inits pick from X's own rows: keep them as they are
    exact_rows = not (isinstance(init, np.ndarray) or init in ("k-means++", "k-means||"))
    data = prepare(X, sample_weight, n_clusters, exact_rows=exact_rows, copy_x=copy_x,
                   n_threads=n_threads, verbose=verbose)
    algorithm = _policy.choose_algorithm(algorithm, data.X.shape[0], X.shape[1], n_clusters,
                                         X.dtype.itemsize, data.sorted_rows)
    best = None
    for _ in range(n_init):
        centers_init = init_centers(data, n_clusters, init, random_state, n_threads)
        if verbose:
            print("Initialization complete")
        labels, inertia, centers, n_iter = run(data, centers_init, algorithm, max_iter, tol,
                                               verbose, n_threads)
        if best is None or (inertia < best[1]
                            and not same_clustering(labels, best[0], n_clusters)):
            best = (labels, inertia, centers, n_iter)
    labels, inertia, centers, n_iter = best
    n_distinct = int(np.count_nonzero(np.bincount(labels, minlength=n_clusters)))
    return FitResult(data.input_centers(centers), data.input_labels(labels), float(inertia),
                     int(n_iter), algorithm, n_distinct)
