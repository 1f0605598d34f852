"""Elkan's exact K-Means (Elkan 2003): one upper bound and one lower bound per
(sample, center) pair, plus center-center distances, skip most distance work.

Memory is n_samples x n_clusters bounds (the caller checks it fits). Every
distance that decides a label is computed with exactly the arithmetic of the
Lloyd tile kernels (``_common.pair_value``), and a center is ruled out only when its
bound clears the current one by a safety margin, so labels are bit-for-bit
Lloyd's. Center sums are recomputed in full through the fixed block reduction.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.string cimport memset

from fastkm._common import dot_operands, merge_blocks
from fastkm._common cimport (
    DIRECT_MAX_D, accumulate_rows, lower_from, pair_value, sum_changed, upper_from,
)


cdef Py_ssize_t _elkan_block(
    const floating* X, const floating* sw, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t d, Py_ssize_t k,
    const floating* centers, const floating* half_cnorm, bint use_dot,
    const double* half_cc,     # (k, k) 0.5 d(c_a, c_j)
    const double* half_sep,    # (k,) min_j half_cc[a, j]
    const double* shift, bint first, double margin, double rel_err, double max_cnorm,
    double* upper, floating* lower, int* labels,
    double* sums, double* weights,
) noexcept nogil:
    cdef Py_ssize_t i, j, f, changed = 0
    cdef int a, a0
    cdef double u, z, v, va, xx, err, l
    cdef bint tight
    cdef const floating* x
    cdef floating* lo
    memset(sums, 0, k * d * sizeof(double))
    memset(weights, 0, k * sizeof(double))
    for i in range(start, end):
        x = X + i * d
        lo = lower + i * k
        xx = 0.0
        if use_dot:
            for f in range(d):
                xx = xx + <double>x[f] * <double>x[f]
        err = rel_err * (xx + max_cnorm)
        if first:
            # full pass: every value, lowest index wins ties (np.argmin)
            a = 0
            va = pair_value(x, centers, d, use_dot, half_cnorm[0])
            lo[0] = <floating>lower_from(va, use_dot, xx, err)
            for j in range(1, k):
                v = pair_value(x, centers + j * d, d, use_dot, half_cnorm[j])
                lo[j] = <floating>lower_from(v, use_dot, xx, err)
                if v < va:
                    va = v
                    a = <int>j
            u = upper_from(va, use_dot, xx, err)
            labels[i] = a
            changed += 1
        else:
            a = labels[i]
            a0 = a
            u = upper[i] + shift[a]
            for j in range(k):
                l = lo[j] - shift[j]
                lo[j] = <floating>(l if l > 0.0 else 0.0)
            if not u < half_sep[a] * margin:
                tight = False
                va = 0.0
                for j in range(k):
                    if j == a:
                        continue
                    z = lo[j] if lo[j] > half_cc[a * k + j] else half_cc[a * k + j]
                    if u < z * margin:
                        continue
                    if not tight:
                        va = pair_value(x, centers + a * d, d, use_dot, half_cnorm[a])
                        u = upper_from(va, use_dot, xx, err)
                        lo[a] = <floating>lower_from(va, use_dot, xx, err)
                        tight = True
                        if u < z * margin:
                            continue
                    v = pair_value(x, centers + j * d, d, use_dot, half_cnorm[j])
                    lo[j] = <floating>lower_from(v, use_dot, xx, err)
                    # Lloyd's rule: smallest value, lowest index on equal values
                    if v < va or (v == va and j < a):
                        va = v
                        a = <int>j
                        u = upper_from(va, use_dot, xx, err)
                if a != a0:
                    changed += 1
                    labels[i] = a
        upper[i] = u
    accumulate_rows(X, sw, labels, start, end, d, sums, weights)
    return changed


def elkan_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    const double[:, ::1] half_cc,          # IN  (n_clusters, n_clusters) 0.5 * center-center distances
    const double[::1] half_sep,            # IN  (n_clusters,) row minima of half_cc (diagonal excluded)
    const double[::1] shift,               # IN  (n_clusters,) distance each center moved last update
    bint first,                            # IN  no valid bounds yet: full pass
    double[::1] upper,                     # IN/OUT (n_samples,)
    floating[:, ::1] lower,                # IN/OUT (n_samples, n_clusters)
    double[:, :, ::1] block_sums,          # scratch (n_blocks, n_clusters, n_features)
    double[:, ::1] block_weights,          # scratch (n_blocks, n_clusters)
    Py_ssize_t[::1] block_changed,         # scratch (n_blocks,)
    double[:, ::1] sums,                   # OUT (n_clusters, n_features)
    double[::1] weights,                   # OUT (n_clusters,)
    int[::1] labels,                       # IN/OUT (n_samples,)
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """One Elkan iteration; same contract as ``_lloyd.lloyd_iter`` plus the bounds."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = block_sums.shape[0], b, start, end
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef double eps = 1.1920929e-07 if floating is float else 2.220446049250313e-16
    # bounds are stored in the data type: allow for that rounding too
    cdef double margin = 1.0 - 8.0 * (d + 4) * eps
    cdef double rel_err = 8.0 * (d + 4) * eps
    cdef double max_cnorm = 0.0
    cdef floating[::1] half_cnorm
    if use_dot:
        _, hn = dot_operands(centers)
        half_cnorm = hn
        max_cnorm = float(2.0 * np.max(np.asarray(hn)[:k]))
    else:
        half_cnorm = np.zeros(k, dtype=np.asarray(centers).dtype)

    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_changed[b] = _elkan_block(
            &X[0, 0], &sample_weight[0], start, end, d, k,
            &centers[0, 0], &half_cnorm[0], use_dot, &half_cc[0, 0], &half_sep[0],
            &shift[0], first, margin, rel_err, max_cnorm,
            &upper[0], &lower[0, 0], &labels[0],
            &block_sums[b, 0, 0], &block_weights[b, 0],
        )
    merge_blocks(block_sums, block_weights, sums, weights, n_threads)
    return sum_changed(&block_changed[0], n_blocks)
