"""Kernels shared by every algorithm: the fixed row-block layout, inertia,
distances to the assigned centers.

Sums over samples are computed per row block (a layout that depends on the data
shape only, never on the thread count) and merged in block order, so every
result is bitwise identical whatever the number of threads.
"""
from cython cimport floating
from cython.parallel cimport prange

import numpy as np

from fastkm._common cimport CHUNK, DOT_TILE_J, sq_dist

CHUNK_ROWS = CHUNK
CENTER_TILE = DOT_TILE_J
MAX_BLOCKS = 64
BLOCK_SUMS_BUDGET = 64 * 2**20  # bytes of per-block float64 center sums


def block_layout(Py_ssize_t n_samples, Py_ssize_t n_clusters=1, Py_ssize_t n_features=1):
    """Split ``n_samples`` rows into reduction blocks.

    Returns ``(n_blocks, rows_per_block)``; ``rows_per_block`` is a multiple of
    the tile height. The layout depends only on the arguments, which is what
    makes block-ordered reductions independent of the thread count.
    """
    cdef Py_ssize_t n_chunks = (n_samples + CHUNK - 1) // CHUNK
    cdef Py_ssize_t per_block_bytes = 8 * n_clusters * (n_features + 1)
    cdef Py_ssize_t cap = max(1, BLOCK_SUMS_BUDGET // per_block_bytes)
    cdef Py_ssize_t n_blocks = max(1, min(n_chunks, MAX_BLOCKS, cap))
    cdef Py_ssize_t chunks_per_block = (n_chunks + n_blocks - 1) // n_blocks
    cdef Py_ssize_t rows_per_block = max(1, chunks_per_block) * CHUNK
    n_blocks = max(1, (n_samples + rows_per_block - 1) // rows_per_block)
    return int(n_blocks), int(rows_per_block)


def dot_operands(centers):
    """Transposed centers and 0.5*||c||^2, padded to a multiple of CENTER_TILE centers.

    Padding centers are zero with a half-norm of the dtype's max: never the argmin.
    """
    c = np.asarray(centers)
    k, d = c.shape
    k_pad = -(-k // CENTER_TILE) * CENTER_TILE
    ct = np.zeros((d, k_pad), dtype=c.dtype)
    ct[:, :k] = c.T
    hn = np.full(k_pad, np.finfo(c.dtype).max, dtype=c.dtype)
    hn[:k] = 0.5 * np.einsum("ij,ij->i", c, c)
    return ct, hn


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


def merge_blocks(
    const double[:, :, ::1] block_sums,    # IN  (n_blocks, n_clusters, n_features)
    const double[:, ::1] block_weights,    # IN  (n_blocks, n_clusters)
    double[:, ::1] sums,                   # OUT (n_clusters, n_features)
    double[::1] weights,                   # OUT (n_clusters,)
    int n_threads,
):
    """Add the per-block center sums in block order (thread-count independent)."""
    cdef Py_ssize_t n_blocks = block_sums.shape[0], k = block_sums.shape[1]
    cdef Py_ssize_t d = block_sums.shape[2], b, j, f
    cdef double s
    for j in prange(k, nogil=True, schedule="static", num_threads=n_threads):
        s = 0.0
        for b in range(n_blocks):
            s = s + block_weights[b, j]
        weights[j] = s
        for f in range(d):
            s = 0.0
            for b in range(n_blocks):
                s = s + block_sums[b, j, f]
            sums[j, f] = s
