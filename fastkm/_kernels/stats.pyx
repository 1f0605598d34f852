"""Statistics over rows: inertia, distances to the assigned centers, column
means and variances (and mean-centring), squared norms, center-center
distances, finiteness.

Sums over samples are taken per fixed row block (``layout.block_layout``) in
float64 and added in block order; per-row results are computed by one thread
each in a fixed order. Every result is the same bits for any thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite

import numpy as np

from fastkm._kernels.layout import block_layout
from fastkm._kernels.numerics cimport sq_dist


def distances_to_assigned(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    const int[::1] labels,             # IN  (n_samples,)
    double[::1] out,                   # OUT (n_samples,)
    int n_threads,
):
    """Squared Euclidean distance of every sample to its assigned center."""
    cdef Py_ssize_t i, n = X.shape[0], d = X.shape[1]
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = sq_dist(&X[i, 0], &centers[labels[i], 0], d)


cdef double _inertia_block(
    const floating* X, const floating* sw, const floating* centers,
    const int* labels, Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0
    for i in range(start, end):
        s += <double>sw[i] * <double>sq_dist(X + i * d, centers + labels[i] * d, d)
    return s


def inertia(
    const floating[:, ::1] X,             # IN  (n_samples, n_features)
    const floating[::1] sample_weight,    # IN  (n_samples,)
    const floating[:, ::1] centers,       # IN  (n_clusters, n_features)
    const int[::1] labels,                # IN  (n_samples,)
    double[::1] block_partials,           # scratch (n_blocks,)
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Sum of weighted squared distances of samples to their assigned center.

    Partial sums per row block (float64), added in block order.
    """
    cdef Py_ssize_t b, start, end
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_partials.shape[0]
    cdef double total = 0.0
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_partials[b] = _inertia_block(
            &X[0, 0], &sample_weight[0], &centers[0, 0], &labels[0], start, end, d
        )
    for b in range(n_blocks):
        total += block_partials[b]
    return total


cdef void _column_sums_block(
    const floating* X, Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const double* center,         # subtracted before squaring, or NULL for plain sums
    double* out,                  # OUT (d,)
) noexcept nogil:
    cdef Py_ssize_t i, f
    cdef double t
    for f in range(d):
        out[f] = 0.0
    for i in range(start, end):
        for f in range(d):
            if center == NULL:
                out[f] += X[i * d + f]
            else:
                t = X[i * d + f] - center[f]
                out[f] += t * t


cdef _column_means(const floating[:, ::1] X, double[:, ::1] partial, double[::1] mean,
                   Py_ssize_t rpb, int n_threads):
    # float64 column sums over fixed row blocks (one row of ``partial`` each),
    # merged in block order, over n: thread-count independent
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], nb = partial.shape[0], b, f, start, end
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        _column_sums_block(&X[0, 0], start, end, d, NULL, &partial[b, 0])
    for b in range(nb):
        for f in range(d):
            mean[f] += partial[b, f]
    for f in range(d):
        mean[f] /= n


def mean_variance(const floating[:, ::1] X, int n_threads):
    """Column means and the mean of the column variances of X (as ``np.var(X,
    axis=0).mean()``), in float64: two passes over fixed row blocks, merged in
    block order (no temporary of X's size, thread-count independent)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, f, start, end
    n_blocks, rows_per_block = block_layout(n)
    cdef Py_ssize_t nb = n_blocks, rpb = rows_per_block
    cdef double[:, ::1] partial = np.empty((nb, d))
    cdef double[::1] mean = np.zeros(d)
    cdef double var = 0.0
    if n == 0:
        return np.asarray(mean), 0.0
    _column_means(X, partial, mean, rpb, n_threads)
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        _column_sums_block(&X[0, 0], start, end, d, &mean[0], &partial[b, 0])
    for f in range(d):
        for b in range(1, nb):
            partial[0, f] += partial[b, f]
        var += partial[0, f] / n
    return np.asarray(mean), var / d


def centre_columns(const floating[:, ::1] X, floating[:, ::1] out, int n_threads):
    """``out = X - mean`` with the column means of X rounded to X's dtype (the
    subtraction NumPy's ``X - mean.astype(X.dtype)`` does), in parallel; ``out``
    may be X itself. The means are mean_variance's (float64, fixed row blocks,
    thread-count independent); returns them."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, f, i, start, end
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError("out must have X's shape")
    n_blocks, rows_per_block = block_layout(n)
    cdef Py_ssize_t nb = n_blocks, rpb = rows_per_block
    mean_arr = np.zeros(d)
    cdef double[::1] mean = mean_arr
    cdef double[:, ::1] partial = np.empty((nb, d))
    if n == 0:
        return mean_arr
    _column_means(X, partial, mean, rpb, n_threads)
    cdef floating[::1] m = mean_arr.astype(np.asarray(X).dtype)
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        for i in range(start, end):
            for f in range(d):
                out[i, f] = X[i, f] - m[f]
    return mean_arr


def center_sq_distances(const double[:, ::1] C, int n_threads=1):
    """Squared distances between all pairs of rows of C (exact differences).

    Compiled rather than a Gram-matrix product: a BLAS call inside the
    iteration loop would wake BLAS's own thread pool, which then competes with
    the OpenMP threads of the next pass.
    """
    cdef Py_ssize_t k = C.shape[0], d = C.shape[1], i, j, f
    cdef double[:, ::1] Ct = np.ascontiguousarray(np.asarray(C).T)
    cdef double[:, ::1] out = np.zeros((k, k))
    cdef double t
    for i in prange(k, nogil=True, schedule="static", num_threads=n_threads):
        for f in range(d):
            for j in range(k):
                t = Ct[f, j] - C[i, f]
                out[i, j] += t * t
    return np.asarray(out)


def row_sq_norms(const floating[:, ::1] X, int n_threads=1):
    """||x||^2 of every row, in float64.

    Each row's features are added in a fixed order into four partial sums
    (feature f into sum f % 4), combined as (s0 + s1) + (s2 + s3): one row, one
    thread, so the same bits for any thread count.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f
    cdef double[::1] out = np.empty(n)
    cdef double s0, s1, s2, s3, v
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        f = 0
        while f + 4 <= d:
            v = X[i, f]
            s0 = s0 + v * v
            v = X[i, f + 1]
            s1 = s1 + v * v
            v = X[i, f + 2]
            s2 = s2 + v * v
            v = X[i, f + 3]
            s3 = s3 + v * v
            f = f + 4
        if f < d:
            v = X[i, f]
            s0 = s0 + v * v
        if f + 1 < d:
            v = X[i, f + 1]
            s1 = s1 + v * v
        if f + 2 < d:
            v = X[i, f + 2]
            s2 = s2 + v * v
        out[i] = (s0 + s1) + (s2 + s3)
    return np.asarray(out)


def all_finite(const floating[:, ::1] X, int n_threads=1):
    """True when X holds no NaN and no infinity (one parallel pass, no temporary)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f
    cdef Py_ssize_t bad = 0
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for f in range(d):
            bad += not isfinite(X[i, f])
    return bad == 0
