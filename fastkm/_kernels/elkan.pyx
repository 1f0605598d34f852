"""Elkan's exact K-Means (Elkan 2003): one upper bound and one lower bound per
(sample, center) pair, plus center-center distances, skip most distance work.

Memory is n_samples x n_clusters bounds (the caller checks it fits). Every
distance that decides a label is computed with exactly the arithmetic of the
Lloyd tile kernels (``numerics.pair_value``), and a center is ruled out only
when its bound clears the current one by ``numerics.rounding_bound``, so labels
are bit-for-bit Lloyd's. Center sums are recomputed in full through the fixed
block reduction and merged in block order (``reduce``): the same bits for any
thread count.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from fastkm._kernels.layout import dot_operands
from fastkm._kernels.accumulate cimport accumulate_rows, sum_changed
from fastkm._kernels.layout cimport DIRECT_MAX_D
from fastkm._kernels.numerics cimport lower_from, pair_value, rounding_bound, upper_from
from fastkm._kernels.reduce cimport BlockSums, Merge, block_done
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave


cdef struct ElkanCtx:
    # read-only, one per kernel call; pointers are to ``floating`` unless typed
    const void* X              # (n, d)
    const void* sw             # (n,)
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t k
    const void* centers        # (k, d)
    const void* half_cnorm     # (k,) 0.5 ||c||^2 (use_dot)
    bint use_dot               # d > DIRECT_MAX_D: values are 0.5||c||^2 - x.c
    const double* half_cc      # (k, k) 0.5 d(c_a, c_j)
    const double* half_sep     # (k,) min_j half_cc[a, j]
    const double* shift        # (k,) distance each center moved last update
    bint first                 # no valid bounds yet: full pass
    double margin              # 1 - rounding_bound: bounds must clear it
    double rel_err             # rounding_bound, for bounds from dot values
    double max_cnorm           # max ||c||^2
    double* upper              # IN/OUT (n,)
    void* lower                # IN/OUT (n, k) floating
    int* labels                # IN/OUT (n,)
    double* block_sums         # (n_blocks, k, d)
    double* block_weights      # (n_blocks, k)
    Py_ssize_t rows_per_block


cdef Py_ssize_t _elkan_block(
    const floating* X, const ElkanCtx* c, Py_ssize_t b,
) noexcept nogil:
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(c.n, start + c.rows_per_block)
    cdef Py_ssize_t i, j, f, changed = 0, d = c.d, k = c.k
    cdef int a, a0
    cdef double u, z, v, va, xx, err, l
    cdef bint tight, use_dot = c.use_dot
    cdef double margin = c.margin
    cdef const floating* x
    cdef floating* lo
    cdef const floating* centers = <const floating*>c.centers
    cdef const floating* half_cnorm = <const floating*>c.half_cnorm
    cdef const double* half_cc = c.half_cc
    cdef double* sums = c.block_sums + b * k * d
    cdef double* weights = c.block_weights + b * k
    memset(sums, 0, k * d * sizeof(double))
    memset(weights, 0, k * sizeof(double))
    for i in range(start, end):
        x = X + i * d
        lo = <floating*>c.lower + i * k
        xx = 0.0
        if use_dot:
            for f in range(d):
                xx = xx + <double>x[f] * <double>x[f]
        err = c.rel_err * (xx + c.max_cnorm)
        if c.first:
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
            c.labels[i] = a
            changed += 1
        else:
            a = c.labels[i]
            a0 = a
            u = c.upper[i] + c.shift[a]
            for j in range(k):
                l = lo[j] - c.shift[j]
                lo[j] = <floating>(l if l > 0.0 else 0.0)
            if not u < c.half_sep[a] * margin:
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
                    c.labels[i] = a
        c.upper[i] = u
    accumulate_rows(X, <const floating*>c.sw, c.labels, start, end, d, sums, weights)
    return changed


def elkan_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    int[::1] labels,                       # IN/OUT (n_samples,)
    BlockSums sums,                        # OUT per-block and merged center sums
    const double[:, ::1] half_cc,          # IN  (n_clusters, n_clusters) 0.5 * center-center distances
    const double[::1] half_sep,            # IN  (n_clusters,) row minima of half_cc (diagonal excluded)
    const double[::1] shift,               # IN  (n_clusters,) distance each center moved last update
    bint first,                            # IN  no valid bounds yet: full pass
    double[::1] upper,                     # IN/OUT (n_samples,)
    floating[:, ::1] lower,                # IN/OUT (n_samples, n_clusters)
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """One Elkan iteration; same contract as ``lloyd.lloyd_iter`` plus the bounds."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0], b
    cdef ElkanCtx c
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef floating[::1] half_cnorm
    c.max_cnorm = 0.0
    if use_dot:
        _, hn = dot_operands(centers)
        half_cnorm = hn
        c.max_cnorm = float(2.0 * np.max(np.asarray(hn)[:k]))
    else:
        half_cnorm = np.zeros(k, dtype=np.asarray(centers).dtype)
    c.X = &X[0, 0]
    c.sw = &sample_weight[0]
    c.n = n
    c.d = d
    c.k = k
    c.centers = &centers[0, 0]
    c.half_cnorm = &half_cnorm[0]
    c.use_dot = use_dot
    c.half_cc = &half_cc[0, 0]
    c.half_sep = &half_sep[0]
    c.shift = &shift[0]
    c.first = first
    # bounds are stored in the data type: the margin allows for that rounding too
    c.rel_err = rounding_bound(d, floating is float)
    c.margin = 1.0 - c.rel_err
    c.upper = &upper[0]
    c.lower = &lower[0, 0]
    c.labels = &labels[0]
    c.block_sums = &sums.block_sums[0, 0, 0]
    c.block_weights = &sums.block_weights[0, 0]
    c.rows_per_block = sums.rows_per_block
    cdef Py_ssize_t[::1] block_changed = sums.block_changed
    cdef Merge* m = sums.start_merge()
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(sums.n_blocks, schedule="dynamic"):
            block_changed[b] = _elkan_block(&X[0, 0], &c, b)
            block_done(m, b)
        region_leave(rc, t0)
    return sum_changed(&block_changed[0], sums.n_blocks)
