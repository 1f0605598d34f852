"""Hamerly's exact K-Means (Hamerly 2010) and its Exponion refinement: one upper and one lower distance bound
per sample let most samples skip the distance computations of an iteration.

Labels are those of Lloyd's algorithm from the same centers (ties aside). The
center sums are recomputed in full every iteration through the same fixed
row-block reduction as ``_lloyd``, so given the same labels the new centers are
bitwise identical to Lloyd's, for any thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.float cimport DBL_MAX

from fastkm._common import dot_operands, dot_tiles, merge_blocks
from fastkm._common cimport (
    CHUNK, DIRECT_MAX_D, DOT_CT, FASTKM_MADD, accumulate_dirty, accumulate_rows, lower_from,
    pack_neg_rows, pair_value, sum_changed, top2_chunk_direct, top2_chunk_dot, upper_from,
)


cdef inline void _all_distances(
    const floating* x, Py_ssize_t d, const floating* centers_t, Py_ssize_t k,
    floating* acc,               # OUT (k,) squared distances
) noexcept nogil:
    # across centers (independent lanes): vectorises, exact differences
    cdef Py_ssize_t j, f
    cdef floating xf, t
    cdef const floating* row
    xf = x[0]
    for j in range(k):
        t = xf - centers_t[j]
        acc[j] = t * t
    for f in range(1, d):
        xf = x[f]
        row = centers_t + f * k
        for j in range(k):
            t = xf - row[j]
            acc[j] = <floating>FASTKM_MADD(t, t, acc[j])


cdef inline void _all_half_dots(
    const floating* x, Py_ssize_t d, const floating* centers_t, const floating* half_cnorm,
    Py_ssize_t k_pad,
    floating* acc,               # OUT (k_pad,) 0.5 ||c||^2 - x.c
) noexcept nogil:
    # the same operations, in the same order, as argmin_chunk_dot (Lloyd, d > 8):
    # the label found here is bit-for-bit the one Lloyd's kernel finds
    cdef Py_ssize_t j, f
    cdef floating xf
    cdef const floating* row
    for j in range(k_pad):
        acc[j] = half_cnorm[j]
    for f in range(d):
        xf = x[f]
        row = centers_t + f * k_pad
        for j in range(k_pad):
            acc[j] = <floating>FASTKM_MADD(-xf, row[j], acc[j])


cdef Py_ssize_t _hamerly_block(
    const floating* X, const floating* sw, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t d, Py_ssize_t k,
    const floating* centers, const floating* centers_t,
    const double* half_sep, const double* shift, double max_shift, double second_shift,
    Py_ssize_t argmax_shift, bint first,
    double* upper, double* lower, int* labels,
    double* sums, double* weights, floating* acc, double margin,
    bint use_dot, const floating* dot_ct, const floating* dot_hn, Py_ssize_t k_pad,
    double max_cnorm, double dot_err,
    bint exponion, const double* cc_sorted, const int* cc_order,
) noexcept nogil:
    cdef Py_ssize_t i, j, f, changed = 0
    cdef int a, j1
    cdef double u, l, m, b1, b2, v, t, xx, r, va, vb
    cdef Py_ssize_t q
    cdef const floating* x
    memset(sums, 0, k * d * sizeof(double))
    memset(weights, 0, k * sizeof(double))
    for i in range(start, end):
        x = X + i * d
        a = labels[i]
        if not first:
            u = upper[i] + shift[a]
            # the largest move of any *other* center bounds how far l can drop
            l = lower[i] - (second_shift if a == argmax_shift else max_shift)
            m = (half_sep[a] if half_sep[a] > l else l) * margin
            # skip only on a strict inequality: on a tie the full scan below picks
            # the lowest index, exactly as Lloyd's argmin does
            if not u < m:
                # tighten the upper bound: exact distance to the assigned center
                v = 0.0
                for f in range(d):
                    v = v + <double>(x[f] - centers[a * d + f]) * <double>(x[f] - centers[a * d + f])
                u = sqrt(v)
        if not first and exponion and not u < m:
            # Exponion (Newling & Fleuret 2016): only centers within
            # R = 2u + d(c_a, nearest other center) of c_a can be nearest or
            # second nearest; every center beyond is at least R - u away.
            r = (2.0 * u + 2.0 * half_sep[a]) * (2.0 - margin)
            va = DBL_MAX
            vb = DBL_MAX
            j1 = a
            q = 0
            while q < k and cc_sorted[a * k + q] <= r:
                j = cc_order[a * k + q]
                v = pair_value(x, centers + j * d, d, use_dot,
                               dot_hn[j] if use_dot else <floating>0)
                # Lloyd's rule: smallest value, lowest index on equal values
                if v < va or (v == va and j < j1):
                    vb = va
                    va = v
                    j1 = <int>j
                elif v < vb:
                    vb = v
                q += 1
            if j1 != a:
                changed += 1
                labels[i] = j1
                a = j1
            xx = 0.0
            if use_dot:
                for f in range(d):
                    xx = xx + <double>x[f] * <double>x[f]
            t = dot_err * (xx + max_cnorm)
            u = upper_from(va, use_dot, xx, t)
            l = lower_from(vb, use_dot, xx, t)
            if q < k and cc_sorted[a * k + q] - u < l:
                l = cc_sorted[a * k + q] - u
        elif first or not u < m:
            if use_dot:
                _all_half_dots(x, d, dot_ct, dot_hn, k_pad, acc)
            else:
                _all_distances(x, d, centers_t, k, acc)
            b1 = DBL_MAX
            b2 = DBL_MAX
            j1 = 0
            for j in range(k):
                v = acc[j]
                if v < b1:
                    b2 = b1
                    b1 = v
                    j1 = <int>j
                elif v < b2:
                    b2 = v
            if j1 != a:
                changed += 1
                labels[i] = j1
                a = j1
            if use_dot:
                # exact distance to the winner; a lower bound for the runner-up
                # from 2 (0.5||c||^2 - x.c) + ||x||^2, less its worst rounding
                v = 0.0
                xx = 0.0
                for f in range(d):
                    t = <double>x[f] - <double>centers[a * d + f]
                    v = v + t * t
                    xx = xx + <double>x[f] * <double>x[f]
                u = sqrt(v)
                v = 2.0 * b2 + xx - dot_err * (xx + max_cnorm)
                l = sqrt(v) if v > 0.0 else 0.0
            else:
                u = sqrt(b1)
                l = sqrt(b2)
            if k == 1:
                l = DBL_MAX
        upper[i] = u
        lower[i] = l
    accumulate_rows(X, sw, labels, start, end, d, sums, weights)
    return changed


cdef inline Py_ssize_t _failing_rows(
    const floating* X, Py_ssize_t c0, Py_ssize_t rows, Py_ssize_t d, const floating* centers,
    const double* half_sep, const double* shift, double max_shift, double second_shift,
    Py_ssize_t argmax_shift, bint first,
    double* upper, double* lower, const int* labels, double margin,
    int* idx,                     # OUT the rows of the tile that must be searched
    double* mb,                   # scratch (CHUNK,)
) noexcept nogil:
    # Hamerly's bound test over a tile of rows: bounds moved by the centers'
    # shifts in one branch-free pass, then the failing rows are tightened with the
    # exact distance to their center. Returns how many still fail (all on the
    # first iteration).
    cdef Py_ssize_t i, f, nf = 0
    cdef int a
    cdef double u, l, v, t
    cdef const floating* x
    if first:
        for i in range(rows):
            idx[i] = <int>(c0 + i)
        return rows
    for i in range(rows):
        a = labels[c0 + i]
        u = upper[c0 + i] + shift[a]
        # the largest move of any *other* center bounds how far l can drop
        l = lower[c0 + i] - (second_shift if a == argmax_shift else max_shift)
        upper[c0 + i] = u
        lower[c0 + i] = l
        mb[i] = (half_sep[a] if half_sep[a] > l else l) * margin
    for i in range(rows):
        # skip only on a strict inequality: on a tie the search picks the lowest
        # index, exactly as Lloyd's argmin does
        if not upper[c0 + i] < mb[i]:
            a = labels[c0 + i]
            x = X + (c0 + i) * d
            v = 0.0
            for f in range(d):
                t = <double>(x[f] - centers[a * d + f])
                v = v + t * t
            u = sqrt(v)
            upper[c0 + i] = u
            if not u < mb[i]:
                idx[nf] = <int>(c0 + i)
                nf += 1
    return nf


cdef inline void _begin_sums(bint first, Py_ssize_t k, Py_ssize_t d, double* sums,
                             double* weights, char* dirty) noexcept nogil:
    # The block's sums persist between iterations: only the labels that gained
    # or lost a row are recomputed (bitwise what a full recomputation gives).
    if first:
        memset(sums, 0, k * d * sizeof(double))
        memset(weights, 0, k * sizeof(double))
    else:
        memset(dirty, 0, k)


cdef inline void _end_sums(
    const floating* X, const floating* sw, const int* labels, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t d, Py_ssize_t k, double* sums, double* weights, const char* dirty, bint first,
) noexcept nogil:
    if first:
        accumulate_rows(X, sw, labels, start, end, d, sums, weights)
    else:
        accumulate_dirty(X, sw, labels, start, end, d, k, sums, weights, dirty)


cdef Py_ssize_t _hamerly_block_direct(
    const floating* X, const floating* sw, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t d, Py_ssize_t k, const floating* centers,
    const double* half_sep, const double* shift, double max_shift, double second_shift,
    Py_ssize_t argmax_shift, bint first,
    double* upper, double* lower, int* labels,
    double* sums, double* weights, double margin,
    int* idx, double* mb, floating* xt, floating* best, floating* second, int* lab,
    floating* acc, char* dirty,
) noexcept nogil:
    # Few features: the bound test runs over a whole tile of rows without
    # branches; the rows that fail it are gathered and searched together by the
    # vectorised tile kernel (Lloyd's distances, plus the second smallest).
    cdef Py_ssize_t c0, rows, i, q, f, nf, changed = 0
    cdef const floating* x
    _begin_sums(first, k, d, sums, weights, dirty)
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        nf = _failing_rows(X, c0, rows, d, centers, half_sep, shift, max_shift, second_shift,
                           argmax_shift, first, upper, lower, labels, margin, idx, mb)
        if nf > 0:
            for q in range(nf):
                x = X + <Py_ssize_t>idx[q] * d
                for f in range(d):
                    xt[f * CHUNK + q] = x[f]
            top2_chunk_direct(xt, nf, d, centers, k, best, second, lab, acc)
            for q in range(nf):
                i = idx[q]
                if lab[q] != labels[i]:
                    changed += 1
                    if not first:
                        dirty[labels[i]] = 1
                        dirty[lab[q]] = 1
                    labels[i] = lab[q]
                upper[i] = sqrt(<double>best[q])
                lower[i] = sqrt(<double>second[q]) if k > 1 else DBL_MAX
        c0 += rows
    _end_sums(X, sw, labels, start, end, d, k, sums, weights, dirty, first)
    return changed


cdef Py_ssize_t _hamerly_block_dot(
    const floating* X, const floating* sw, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t d, Py_ssize_t k, const floating* centers,
    const double* half_sep, const double* shift, double max_shift, double second_shift,
    Py_ssize_t argmax_shift, bint first,
    double* upper, double* lower, int* labels,
    double* sums, double* weights, double margin,
    const floating* cpack, const floating* hn, Py_ssize_t n_tiles,
    double max_cnorm, double dot_err,
    int* idx, double* mb, floating* xt, floating* best, floating* second, int* lab,
    char* dirty,
) noexcept nogil:
    # Many features: the same batched scheme as _hamerly_block_direct, the rows
    # that fail the bound test searched together by Lloyd's register-tiled dot
    # kernel (which also keeps the runner-up).
    cdef Py_ssize_t c0, rows, i, q, f, nf, changed = 0
    cdef int a
    cdef double v, t, xx
    cdef const floating* x
    _begin_sums(first, k, d, sums, weights, dirty)
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        nf = _failing_rows(X, c0, rows, d, centers, half_sep, shift, max_shift, second_shift,
                           argmax_shift, first, upper, lower, labels, margin, idx, mb)
        if nf > 0:
            pack_neg_rows(X, idx, nf, d, xt)
            top2_chunk_dot(xt, nf, d, cpack, hn, n_tiles, lab, best, second)
            for q in range(nf):
                i = idx[q]
                a = lab[q]
                if a != labels[i]:
                    changed += 1
                    if not first:
                        dirty[labels[i]] = 1
                        dirty[a] = 1
                    labels[i] = a
                # exact distance to the winner; a lower bound for the runner-up
                # from 2 (0.5||c||^2 - x.c) + ||x||^2, less its worst rounding
                x = X + i * d
                v = 0.0
                xx = 0.0
                for f in range(d):
                    t = <double>x[f] - <double>centers[a * d + f]
                    v = v + t * t
                    xx = xx + <double>x[f] * <double>x[f]
                upper[i] = sqrt(v)
                v = 2.0 * <double>second[q] + xx - dot_err * (xx + max_cnorm)
                lower[i] = (sqrt(v) if v > 0.0 else 0.0) if k > 1 else DBL_MAX
        c0 += rows
    _end_sums(X, sw, labels, start, end, d, k, sums, weights, dirty, first)
    return changed


def hamerly_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    const double[::1] half_sep,            # IN  (n_clusters,) 0.5 * distance to the nearest other center
    const double[::1] shift,               # IN  (n_clusters,) distance each center moved last update
    bint first,                            # IN  no valid bounds yet: full pass
    double[::1] upper,                     # IN/OUT (n_samples,) upper bound to assigned center
    double[::1] lower,                     # IN/OUT (n_samples,) lower bound to any other center
    double[:, :, ::1] block_sums,          # scratch (n_blocks, n_clusters, n_features)
    double[:, ::1] block_weights,          # scratch (n_blocks, n_clusters)
    Py_ssize_t[::1] block_changed,         # scratch (n_blocks,)
    double[:, ::1] sums,                   # OUT (n_clusters, n_features)
    double[::1] weights,                   # OUT (n_clusters,)
    int[::1] labels,                       # IN/OUT (n_samples,)
    Py_ssize_t rows_per_block,
    int n_threads,
    const double[:, ::1] cc_sorted=None,   # IN  (n_clusters, n_clusters) Exponion: each row's
                                           #     center-center distances, ascending
    const int[:, ::1] cc_order=None,       # IN  (n_clusters, n_clusters) the matching center indices
):
    """One Hamerly iteration: labels, bounds, and per-center weighted sums.

    Same contract as ``_lloyd.lloyd_iter`` (returns the number of changed labels),
    plus the bound arrays that carry over between iterations. With ``cc_sorted``
    and ``cc_order`` it runs Exponion: a sample that fails the bound test only
    looks at the centers in a ball around its current one.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = block_sums.shape[0], b, j, f, start, end
    cdef Py_ssize_t argmax_shift = 0
    cdef double max_shift = 0.0, second_shift = 0.0
    cdef floating* acc
    cdef floating* xt
    cdef floating* best
    cdef floating* second
    cdef int* idx
    cdef int* lab
    cdef double* mb
    cdef char* dirty
    # Bounds are compared with a relative safety margin that covers the rounding
    # of the distances (~d ulps of the data type): a sample is skipped only when
    # its label is certain, otherwise it gets the full (Lloyd-identical) scan.
    cdef double eps = 1.1920929e-07 if floating is float else 2.220446049250313e-16
    cdef double margin = 1.0 - 8.0 * (d + 4) * eps
    import numpy as np
    cdef floating[:, ::1] centers_t = np.ascontiguousarray(np.asarray(centers).T)
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef floating[:, ::1] dot_ct = centers_t
    cdef floating[::1] dot_hn = np.zeros(1, dtype=np.asarray(centers).dtype)
    cdef double max_cnorm = 0.0, dot_err = 8.0 * (d + 4) * eps
    if use_dot:
        dot_ct, dot_hn = dot_operands(centers)
        max_cnorm = float(2.0 * np.max(np.asarray(dot_hn)[:k]))
    cdef Py_ssize_t k_pad = dot_ct.shape[1] if use_dot else k
    cdef bint exponion = cc_sorted is not None
    if not exponion:
        cc_sorted = np.zeros((1, 1))
        cc_order = np.zeros((1, 1), dtype=np.int32)
    for j in range(k):
        if shift[j] > max_shift:
            second_shift = max_shift
            max_shift = shift[j]
            argmax_shift = j
        elif shift[j] > second_shift:
            second_shift = shift[j]

    cdef floating[:, ::1] cpack
    cdef floating[::1] hnp
    cdef Py_ssize_t n_tiles
    if use_dot and not exponion:
        cpack, hnp = dot_tiles(centers, DOT_CT)
        n_tiles = cpack.shape[0] // d
        with nogil, parallel(num_threads=n_threads):
            idx = <int*> malloc(CHUNK * sizeof(int))
            mb = <double*> malloc(CHUNK * sizeof(double))
            xt = <floating*> malloc(CHUNK * d * sizeof(floating))
            best = <floating*> malloc(CHUNK * sizeof(floating))
            second = <floating*> malloc(CHUNK * sizeof(floating))
            lab = <int*> malloc(CHUNK * sizeof(int))
            dirty = <char*> malloc(k)
            for b in prange(n_blocks, schedule="dynamic"):
                start = b * rows_per_block
                end = min(n, start + rows_per_block)
                block_changed[b] = _hamerly_block_dot(
                    &X[0, 0], &sample_weight[0], start, end, d, k, &centers[0, 0],
                    &half_sep[0], &shift[0], max_shift, second_shift, argmax_shift, first,
                    &upper[0], &lower[0], &labels[0],
                    &block_sums[b, 0, 0], &block_weights[b, 0], margin,
                    &cpack[0, 0], &hnp[0], n_tiles, max_cnorm, dot_err,
                    idx, mb, xt, best, second, lab, dirty,
                )
            free(idx)
            free(mb)
            free(xt)
            free(best)
            free(second)
            free(lab)
            free(dirty)
        merge_blocks(block_sums, block_weights, sums, weights, n_threads)
        return sum_changed(&block_changed[0], n_blocks)

    if not use_dot and not exponion:
        with nogil, parallel(num_threads=n_threads):
            idx = <int*> malloc(CHUNK * sizeof(int))
            mb = <double*> malloc(CHUNK * sizeof(double))
            xt = <floating*> malloc(CHUNK * d * sizeof(floating))
            best = <floating*> malloc(CHUNK * sizeof(floating))
            second = <floating*> malloc(CHUNK * sizeof(floating))
            lab = <int*> malloc(CHUNK * sizeof(int))
            dirty = <char*> malloc(k)
            acc = <floating*> malloc(CHUNK * sizeof(floating))
            for b in prange(n_blocks, schedule="dynamic"):
                start = b * rows_per_block
                end = min(n, start + rows_per_block)
                block_changed[b] = _hamerly_block_direct(
                    &X[0, 0], &sample_weight[0], start, end, d, k, &centers[0, 0],
                    &half_sep[0], &shift[0], max_shift, second_shift, argmax_shift, first,
                    &upper[0], &lower[0], &labels[0],
                    &block_sums[b, 0, 0], &block_weights[b, 0], margin,
                    idx, mb, xt, best, second, lab, acc, dirty,
                )
            free(idx)
            free(mb)
            free(xt)
            free(best)
            free(second)
            free(lab)
            free(dirty)
            free(acc)
        merge_blocks(block_sums, block_weights, sums, weights, n_threads)
        return sum_changed(&block_changed[0], n_blocks)

    with nogil, parallel(num_threads=n_threads):
        acc = <floating*> malloc(k_pad * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            block_changed[b] = _hamerly_block(
                &X[0, 0], &sample_weight[0], start, end, d, k,
                &centers[0, 0], &centers_t[0, 0], &half_sep[0], &shift[0],
                max_shift, second_shift, argmax_shift, first,
                &upper[0], &lower[0], &labels[0],
                &block_sums[b, 0, 0], &block_weights[b, 0], acc, margin,
                use_dot, &dot_ct[0, 0], &dot_hn[0], k_pad, max_cnorm, dot_err,
                exponion, &cc_sorted[0, 0], &cc_order[0, 0],
            )
        free(acc)

    merge_blocks(block_sums, block_weights, sums, weights, n_threads)
    return sum_changed(&block_changed[0], n_blocks)

