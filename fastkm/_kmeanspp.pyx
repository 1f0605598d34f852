"""Greedy k-means++ seeding kernels.

The Python layer draws the random numbers; these kernels do the O(n) work of
each step in parallel: distances to candidate centers, the potential each
candidate would give, and the inverse-CDF lookup of D^2 sampling. Potentials are
summed per fixed row block and merged in block order (thread-count independent).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from fastkm._common cimport CHUNK, sq_dist_chunk_to_center, transpose_chunk


cdef void _candidates_block(
    const floating* X, const floating* sw, const double* closest,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* candidates, Py_ssize_t m,
    double* pot,          # OUT (m,) this block's potential for each candidate (stride n_blocks)
    Py_ssize_t stride,
    floating* xt, floating* acc,
) noexcept nogil:
    cdef Py_ssize_t c0, rows, i, t
    cdef double s, dist
    for t in range(m):
        pot[t * stride] = 0.0
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        transpose_chunk(X + c0 * d, rows, d, xt)
        for t in range(m):
            sq_dist_chunk_to_center(xt, rows, d, candidates + t * d, acc)
            s = 0.0
            for i in range(rows):
                dist = acc[i]
                if closest[c0 + i] < dist:
                    dist = closest[c0 + i]
                s += sw[c0 + i] * dist
            pot[t * stride] += s
        c0 += rows


def candidate_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) current D^2
    const floating[:, ::1] candidates,     # IN  (n_candidates, n_features)
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Per-block potential sum_i w_i min(D_i^2, ||x_i - c_t||^2) for each candidate t."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b, start, end
    cdef floating* xt
    cdef floating* acc
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            _candidates_block(&X[0, 0], &sample_weight[0], &closest[0], start, end, d,
                              &candidates[0, 0], m, &block_pot[0, b], n_blocks, xt, acc)
        free(xt)
        free(acc)


cdef double _update_block(
    const floating* X, const floating* sw, double* closest,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* center, floating* xt, floating* acc,
) noexcept nogil:
    cdef Py_ssize_t c0, rows, i
    cdef double s = 0.0, dist
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        transpose_chunk(X + c0 * d, rows, d, xt)
        sq_dist_chunk_to_center(xt, rows, d, center, acc)
        for i in range(rows):
            dist = acc[i]
            if dist < closest[c0 + i]:
                closest[c0 + i] = dist
            s += sw[c0 + i] * closest[c0 + i]
        c0 += rows
    return s


def update_closest(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    double[::1] closest,                   # IN/OUT (n_samples,) D^2 to the nearest chosen center
    const floating[::1] center,            # IN  (n_features,) the newly chosen center
    double[::1] block_pot,                 # OUT (n_blocks,) sum_i w_i D_i^2 per block
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Lower D^2 to the new center; return the total potential (block-ordered sum)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t b, start, end
    cdef floating* xt
    cdef floating* acc
    cdef double total = 0.0
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            block_pot[b] = _update_block(&X[0, 0], &sample_weight[0], &closest[0],
                                         start, end, d, &center[0], xt, acc)
        free(xt)
        free(acc)
    for b in range(n_blocks):
        total += block_pot[b]
    return total


def sample_d2(
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,)
    const double[::1] block_pot,           # IN  (n_blocks,)
    Py_ssize_t rows_per_block,
    const double[::1] targets,             # IN  (n_draws,) uniform draws times the potential
    Py_ssize_t[::1] out,                   # OUT (n_draws,)
):
    """Inverse CDF of D^2 sampling: for each target r, the first index whose
    cumulative weighted D^2 reaches r (as ``searchsorted(cumsum, r)``), clipped
    to the last sample. Walks block totals first, then one block.
    """
    cdef Py_ssize_t n = closest.shape[0], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t t, b, i, end
    cdef double r, cum
    with nogil:
        for t in range(targets.shape[0]):
            r = targets[t]
            cum = 0.0
            b = 0
            while b < n_blocks - 1 and cum + block_pot[b] < r:
                cum += block_pot[b]
                b += 1
            i = b * rows_per_block
            end = min(n, i + rows_per_block)
            while i < end:
                cum += sample_weight[i] * closest[i]
                if cum >= r:
                    break
                i += 1
            out[t] = min(i, n - 1)
