"""A whole K-Means fit on sparse (CSR) input, and ``predict`` / ``transform`` /
``score`` on it: the sparse counterpart of ``_core``.

Semantics are scikit-learn's for sparse input: no mean-centring, no
deduplication or reordering of rows, ``tol`` scaled by the mean variance of
the columns (zeros included), empty clusters relocated to the farthest rows,
dense centers. The fit first checks that what it will allocate fits in the
memory available (``check_memory``).
"""
import os

import numpy as np

from fastkm import _threads
from fastkm._dispatch import sparse_lloyd
from fastkm._kernels import csr, layout, sparse_centers
from fastkm.kmeans import _policy
from fastkm.kmeans._core import FitResult, same_clustering
from fastkm.kmeans._sparse_seeding import init_centers_csr
from fastkm.kmeans._sparse_solver import Centers, run

# --------------------------------------------------------------------------- memory

def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available():
    """Bytes this process's cgroup still allows (v2 memory.max, v1 limit), or None."""
    from fastkm._threads import _cgroup_paths

    paths = _cgroup_paths("/proc/self")
    if "" in paths:
        d = os.path.join("/sys/fs/cgroup", paths[""].lstrip("/"))
        limit, used = _read_int(os.path.join(d, "memory.max")), _read_int(
            os.path.join(d, "memory.current"))
        if limit is not None and used is not None:
            return max(0, limit - used)
    if "memory" in paths:
        d = os.path.join("/sys/fs/cgroup/memory", paths["memory"].lstrip("/"))
        limit, used = _read_int(os.path.join(d, "memory.limit_in_bytes")), _read_int(
            os.path.join(d, "memory.usage_in_bytes"))
        if limit is not None and used is not None and limit < 1 << 60:
            return max(0, limit - used)
    return None


def available_memory():
    """Bytes a new allocation can use: the smaller of the system's available
    memory and what the cgroup's limit leaves, or None where neither is known."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(found) if found else None


def fit_bytes(n_samples, n_features, n_clusters, itemsize, algorithm, n_init):
    """Peak bytes a sparse fit allocates besides X, and what they are."""
    k, d, n = n_clusters, n_features, n_samples
    n_tiles = sparse_centers.tile_shape(k, d, itemsize == 4)
    tiles = n_tiles[0] * n_tiles[1] * n_tiles[2] * itemsize
    parts = {
        "center tiles": tiles,
        "float64 center sums": 8 * k * d,
        "dense centers": k * d * itemsize * (2 if n_init > 1 else 1),
        "per-sample buffers": n * 40,
    }
    if algorithm in ("hamerly", "exponion", "elkan"):
        parts["center-center distances"] = 16 << 20 if k > 1 else 0
        parts["center-center distances"] += 4 * 8 * k * k
    if algorithm == "elkan":
        parts["Elkan's lower bounds"] = n * k * itemsize
    return sum(parts.values()), parts


def check_memory(X, n_clusters, algorithm, n_init, available=None):
    """MemoryError, before anything is allocated, when the fit would not fit."""
    need, parts = fit_bytes(X.shape[0], X.shape[1], n_clusters, X.dtype.itemsize, algorithm,
                            n_init)
    refuse_if_too_big("K-Means", need, parts, n_clusters, X.shape[1], available)


def refuse_if_too_big(what, need, parts, n_clusters, n_features, available=None):
    """MemoryError when ``need`` bytes (``parts``: name -> bytes) exceed the
    memory available (``available_memory()`` unless given)."""
    available = available_memory() if available is None else available
    if available is None or need <= available:
        return
    detail = ", ".join(f"{name} {v / 2**30:.2f} GiB" for name, v in parts.items() if v)
    raise MemoryError(
        f"A sparse {what} fit with n_clusters={n_clusters} on {n_features} features needs "
        f"about {need / 2**30:.1f} GiB ({detail}), but only {available / 2**30:.1f} GiB "
        "are available. The dense centers alone are n_clusters x n_features values: use "
        "fewer clusters, fewer features (e.g. TfidfVectorizer(max_features=...)) or float32 "
        "data."
    )


# --------------------------------------------------------------------------- fit

def tolerance(X, tol):
    """tol scaled by the mean column variance of X (zeros included)."""
    return 0.0 if tol == 0 else float(csr.column_mean_variance(X.rows)) * tol


def fit(X, sample_weight, n_clusters, *, init, n_init, max_iter, tol, random_state, algorithm,
        copy_x, verbose, n_threads):
    """K-Means on a validated ``SparseX``; parameters as ``_core.fit``'s
    (``copy_x`` has nothing to do: sparse input is never centred or copied)."""
    n, d = X.shape
    algorithm = _policy.choose_sparse_algorithm(algorithm, n, d, n_clusters, X.nnz,
                                                X.dtype.itemsize)
    check_memory(X, n_clusters, algorithm, n_init)
    tol = tolerance(X, tol)
    best = None
    for _ in range(n_init):
        centers_init = init_centers_csr(X, sample_weight, n_clusters, init, random_state,
                                        n_threads)
        if verbose:
            print("Initialization complete")
        # the run reuses the memory of its initial centers (a fresh array)
        labels, inertia, centers, n_iter = run(X, sample_weight, centers_init, algorithm,
                                               max_iter, tol, verbose, n_threads)
        del centers_init
        if best is None or (inertia < best[1]
                            and not same_clustering(labels, best[0], n_clusters)):
            best = (labels, inertia, centers, n_iter)
    labels, inertia, centers, n_iter = best
    n_distinct = int(np.count_nonzero(np.bincount(labels, minlength=n_clusters)))
    return FitResult(centers, labels, float(inertia), int(n_iter), algorithm, n_distinct)


# --------------------------------------------------------------------------- after fit

def predict(X, centers, n_threads, C=None):
    """Nearest center of every row (int32), by Lloyd's tile kernel."""
    C = Centers(X, centers, n_threads) if C is None else C
    labels = np.zeros(X.shape[0], dtype=np.int32)
    r = _threads.region("sparse-assign", X.nnz * C.k, -(-X.shape[0] // layout.CHUNK_ROWS),
                        n_threads)
    sparse_lloyd.assign(X.rows, C.ct, C.hn, C.k, labels, r)
    _threads.record(r)
    return labels


def transform(X, centers, n_threads):
    """(n, k) Euclidean distances, in X's dtype."""
    C = Centers(X, centers, n_threads)
    out = np.empty((X.shape[0], C.k), dtype=X.dtype)
    r = _threads.region("sparse-transform", X.nnz * C.k, X.shape[0], n_threads)
    sparse_lloyd.distances(X.rows, C.ct, C.hn, out, r)
    _threads.record(r)
    return out


def score(X, sample_weight, centers, n_threads):
    """Minus the weighted inertia of X on the centers."""
    C = Centers(X, centers, n_threads)
    return -C.inertia(X, sample_weight, predict(X, centers, n_threads, C))
