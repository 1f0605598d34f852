"""Per-block partial statistics of a fit whose rows are processed in pieces
(memory windows of an out-of-core fit, chunks of a Dask fit): column sums for
the tolerance, and the inertia and farthest rows of assigned centers.

Each block's value is computed from its own rows only, in the order and with
the operations of the whole-array kernels in ``stats`` (this module is built
with the same flags), so the caller can merge the blocks of all pieces in
block order, or in a tree fixed by block index, and get the same bits however
the rows were split and for any thread count.
"""
from cython cimport floating
from cython.parallel cimport prange

from fastkm._kernels.numerics cimport sq_dist


cdef void _column_sums_block(
    const floating* X, Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const double* center,         # subtracted before squaring, or NULL for plain sums
    double* out,                  # OUT (d,)
) noexcept nogil:
    # stats._column_sums_block, operation for operation
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


def column_block_sums(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const double[::1] center,              # IN  (n_features,) or None
    Py_ssize_t rows_per_block,
    double[:, ::1] out,                    # OUT (n_blocks, n_features)
    int n_threads,
):
    """Per row block, the column sums of X (``center`` None) or of
    (X - center)^2: the partials ``stats.mean_variance`` adds in block order."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, start, end
    cdef const double* c = NULL
    if center is not None:
        c = &center[0]
    if n == 0:
        return
    for b in prange(out.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        _column_sums_block(&X[0, 0], start, end, d, c, &out[b, 0])


cdef double _assigned_block(
    const floating* X, const floating* sw, const floating* centers, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d, Py_ssize_t top,
    double* top_dist,             # OUT (top,) largest squared distances, descending, -1 = none
    Py_ssize_t* top_row,          # OUT (top,) their rows (the lower row first on ties)
) noexcept nogil:
    # the block's inertia as stats._inertia_block adds it, and its `top`
    # farthest rows by (distance descending, row ascending)
    cdef Py_ssize_t i, p, q
    cdef double s = 0.0, v
    for p in range(top):
        top_dist[p] = -1.0
        top_row[p] = -1
    for i in range(start, end):
        v = <double>sq_dist(X + i * d, centers + labels[i] * d, d)
        s += <double>sw[i] * v
        if top > 0 and v > top_dist[top - 1]:
            p = top - 1
            while p > 0 and top_dist[p - 1] < v:
                p -= 1
            q = top - 1
            while q > p:
                top_dist[q] = top_dist[q - 1]
                top_row[q] = top_row[q - 1]
                q -= 1
            top_dist[p] = v
            top_row[p] = i
    return s


def assigned_stats(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    const int[::1] labels,                 # IN  (n_samples,)
    Py_ssize_t rows_per_block,
    double[::1] block_inertia,             # OUT (n_blocks,) sum of w_i ||x_i - c_{l_i}||^2
    double[:, ::1] top_dist,               # OUT (n_blocks, top) farthest squared distances
    Py_ssize_t[:, ::1] top_row,            # OUT (n_blocks, top) their rows, -1 = none
    int n_threads,
):
    """Per row block: the inertia of the assigned centers (as ``stats.inertia``
    sums a block) and the ``top`` rows farthest from their centers (as
    ``stats.distances_to_assigned`` measures them; the lower row first on
    ties), the candidates for empty clusters."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, start, end
    cdef Py_ssize_t top = top_dist.shape[1]
    if n == 0:
        return
    for b in prange(block_inertia.shape[0], nogil=True, schedule="dynamic",
                    num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_inertia[b] = _assigned_block(&X[0, 0], &sample_weight[0], &centers[0, 0],
                                           &labels[0], start, end, d, top, &top_dist[b, 0],
                                           &top_row[b, 0])
