import numpy as np
import pytest


def numpy_assign(X, centers):
    """Reference nearest-center labels and squared distances (float64, exact differences)."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(centers, dtype=np.float64)
    d2 = ((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1), d2


def numpy_lloyd(X, centers, sample_weight=None, max_iter=300):
    """Plain Lloyd in NumPy: assign, stop when labels repeat, weighted means.

    Clusters that become empty keep their center (test data avoid that case).
    Returns labels, centers, n_iter.
    """
    X = np.asarray(X, dtype=np.float64)
    C = np.array(centers, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    prev = None
    for it in range(max_iter):
        labels, _ = numpy_assign(X, C)
        if prev is not None and np.array_equal(labels, prev):
            return labels, C, it
        for j in range(len(C)):
            m = labels == j
            if w[m].sum() > 0:
                C[j] = (w[m, None] * X[m]).sum(axis=0) / w[m].sum()
        prev = labels
    labels, _ = numpy_assign(X, C)
    return labels, C, max_iter


def has_near_ties(X, centers, rtol=1e-9):
    """True if some sample is (almost) equidistant from its two nearest centers."""
    _, d2 = numpy_assign(X, centers)
    if d2.shape[1] < 2:
        return False
    part = np.sort(d2, axis=1)[:, :2]
    return bool(np.any(part[:, 1] - part[:, 0] <= rtol * (1 + part[:, 1])))


@pytest.fixture(scope="session")
def blobs():
    rng = np.random.RandomState(0)
    centers = rng.uniform(-10, 10, size=(6, 5))
    X = np.concatenate([c + rng.normal(scale=1.0, size=(200, 5)) for c in centers])
    return X[rng.permutation(len(X))]


def seed_pp(X, k, sample_weight, seed, n_threads, n_local_trials=None):
    """Greedy k-means++ on X as it is (no deduplication, no reordering, no
    centring): (centers, indices), through the fit's own seeding code."""
    from fastkm.kmeans._prepare import FitData
    from fastkm.kmeans._seeding import kmeans_plusplus_data

    sw = np.ascontiguousarray(sample_weight, dtype=X.dtype)
    data = FitData(X, sw, None, sw, False, None, None)
    return kmeans_plusplus_data(data, k, np.random.RandomState(seed), n_local_trials, n_threads)
