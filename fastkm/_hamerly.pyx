"""Hamerly's exact K-Means (Hamerly 2010) and its Exponion refinement (Newling &
Fleuret 2016): one upper and one lower distance bound per sample let most
samples skip the distance computations of an iteration.

Labels are those of Lloyd's algorithm from the same centers (ties aside): the
bound test runs over a tile of rows, and the rows that fail it are searched
with Lloyd's own arithmetic (the batched tile kernels, or, for Exponion, the
ball step's lanes, which repeat ``pair_value``'s operations). The center sums
go through the same fixed row-block reduction as ``_lloyd``; only the labels
that changed in a block are summed again, which gives the same bits. So given
the same labels the new centers are bitwise identical to Lloyd's, for any
thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.float cimport DBL_MAX

import numpy as np

from fastkm._common import dot_tiles, merge_blocks
from fastkm._common cimport (
    CHUNK, DIRECT_MAX_D, DOT_CT, FASTKM_MADD, accumulate_dirty, accumulate_rows, exact_sq_dist,
    lower_from, pack_neg_rows, prefetch_row, sum_changed, top2_chunk_direct, top2_chunk_dot,
)


cdef enum:
    AHEAD = 6     # rows prefetched ahead when tightening (their X rows come from DRAM)


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
    cdef Py_ssize_t i, q, m = 0, nf = 0
    cdef int a
    cdef double u, l
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
        idx[m] = <int>(c0 + i)
        m += not upper[c0 + i] < mb[i]
    # tighten the failing rows: exact distance to their center, their rows
    # requested AHEAD rows in advance (X is read sparsely, mostly from DRAM)
    for q in range(min(<Py_ssize_t>AHEAD, m)):
        prefetch_row(X + <Py_ssize_t>idx[q] * d, d)
    for q in range(m):
        if q + AHEAD < m:
            prefetch_row(X + <Py_ssize_t>idx[q + AHEAD] * d, d)
        i = idx[q]
        a = labels[i]
        u = sqrt(exact_sq_dist(X + i * d, centers + a * d, d, NULL))
        upper[i] = u
        if not u < mb[i - c0]:
            idx[nf] = <int>i
            nf += 1
    return nf


# ------------------------------------------------------------------ Exponion's ball
# A sample that fails the bound test with upper bound u can only be nearest to
# a center within 2u of its own (Elkan's lemma; Newling & Fleuret 2016). Each
# center keeps its BALL nearest centers (itself first), packed as vector lanes:
# when the ball of radius 2u lies inside that list, the search is one pass of
# BALL lanes over the features instead of a scan of all k centers.

cdef enum:
    BALL = 16     # neighbours kept per center: one float32 zmm / two ymm of lanes


def ball_tables(const double[:, ::1] cc_sq, int n_threads=1):
    """Each center's ``BALL`` nearest centers (itself first; ascending distance,
    ties by index), the distance to the nearest center *not* in that list
    (inf when all are), and half the distance to the nearest other center.

    ``cc_sq``: (k, k) squared center-center distances (``center_sq_distances``).
    Returns ``ball`` (k, BALL) int32 (padded with the center itself),
    ``beyond`` (k,) and ``half_sep`` (k,), float64.
    """
    cdef Py_ssize_t k = cc_sq.shape[0], kq = min(<Py_ssize_t>BALL, k)
    cdef Py_ssize_t a, j, p, cnt
    cdef double v
    cdef double* dv
    cdef int* di
    ball_arr = np.empty((k, BALL), dtype=np.int32)
    beyond_arr = np.empty(k)
    half_arr = np.empty(k)
    cdef int[:, ::1] ball = ball_arr
    cdef double[::1] beyond = beyond_arr
    cdef double[::1] half_sep = half_arr
    with nogil, parallel(num_threads=n_threads):
        dv = <double*> malloc((BALL + 1) * sizeof(double))
        di = <int*> malloc((BALL + 1) * sizeof(int))
        for a in prange(k, schedule="static"):
            # the kq + 1 smallest (value, index) pairs by insertion; j ascends,
            # so a strict '>' keeps equal values in index order
            cnt = 0
            for j in range(k):
                v = cc_sq[a, j]
                if cnt == kq + 1:
                    if not v < dv[kq]:
                        continue
                    cnt = kq
                p = cnt
                while p > 0 and dv[p - 1] > v:
                    dv[p] = dv[p - 1]
                    di[p] = di[p - 1]
                    p = p - 1
                dv[p] = v
                di[p] = <int>j
                cnt = cnt + 1
            for p in range(BALL):
                ball[a, p] = di[p] if p < kq else <int>a
            beyond[a] = sqrt(dv[kq]) if k > kq else DBL_MAX
            half_sep[a] = 0.5 * sqrt(dv[1]) if k > 1 else DBL_MAX
        free(dv)
        free(di)
    return ball_arr, beyond_arr, half_arr


cdef inline void _ball_values(
    const floating* x, Py_ssize_t d,
    const floating* nbt,          # IN  (d, BALL) the ball's centers, features x lanes
    const floating* nbh,          # IN  (BALL,) their 0.5 ||c||^2 (dot values only)
    bint use_dot,                 # a literal at each call
    floating* out,                # OUT (BALL,) pair_value of x and each lane's center
) noexcept nogil:
    # lanes are centers; each lane does pair_value's operations in its order,
    # so the values are bitwise those of Lloyd's tile kernels
    cdef floating acc[BALL]
    cdef floating xf, t
    cdef Py_ssize_t f, l
    if use_dot:
        for l in range(BALL):
            acc[l] = nbh[l]
        for f in range(d):
            xf = -x[f]
            for l in range(BALL):
                acc[l] = <floating>FASTKM_MADD(xf, nbt[f * BALL + l], acc[l])
    else:
        xf = x[0]
        for l in range(BALL):
            t = xf - nbt[l]
            acc[l] = t * t
        for f in range(1, d):
            xf = x[f]
            for l in range(BALL):
                t = xf - nbt[f * BALL + l]
                acc[l] = <floating>FASTKM_MADD(t, t, acc[l])
    for l in range(BALL):
        out[l] = acc[l]


cdef inline Py_ssize_t _ball_search(
    const floating* X, Py_ssize_t d, Py_ssize_t k, const floating* centers,
    int* idx, Py_ssize_t nf,      # IN/OUT the failing rows; OUT the rows left for a full scan
    const int* ball, const floating* nbt, const floating* nbh, const double* beyond,
    bint use_dot, double margin, double max_cnorm, double dot_err,
    double* upper, double* lower, int* labels, char* dirty, Py_ssize_t* changed,
) noexcept nogil:
    # Rows whose ball (radius 2u around their center) lies within the center's
    # BALL-list are searched there; the others are compacted into idx[:return].
    cdef Py_ssize_t q, f, l, i, rest = 0
    cdef Py_ssize_t kq = min(<Py_ssize_t>BALL, k)
    cdef int a, j, j1
    cdef double u, va, vb, v, t, xx, err, lo
    cdef floating vals[BALL]
    cdef const floating* x
    for q in range(nf):
        i = idx[q]
        a = labels[i]
        u = upper[i]              # tightened: the distance to center a
        if not 2.0 * u < beyond[a] * margin:
            idx[rest] = <int>i
            rest += 1
            continue
        x = X + i * d
        _ball_values(x, d, nbt + a * d * BALL, nbh + a * BALL, use_dot, vals)
        # Lloyd's rule: smallest value, lowest index on equal values
        va = DBL_MAX
        vb = DBL_MAX
        j1 = a
        for l in range(kq):
            j = ball[a * BALL + l]
            v = vals[l]
            if v < va or (v == va and j < j1):
                vb = va
                va = v
                j1 = j
            elif v < vb:
                vb = v
        # every center outside the list is at least beyond[a] - u away
        lo = beyond[a] - u
        if j1 != a:
            changed[0] += 1
            dirty[a] = 1
            dirty[j1] = 1
            labels[i] = j1
        if use_dot:
            upper[i] = sqrt(exact_sq_dist(x, centers + j1 * d, d, &xx))
            err = dot_err * (xx + max_cnorm)
            v = lower_from(vb, True, xx, err) if vb < DBL_MAX else DBL_MAX
        else:
            upper[i] = sqrt(va)
            v = sqrt(vb) if vb < DBL_MAX else DBL_MAX
        lower[i] = v if v < lo else lo
    return rest


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
    bint use_ball, const int* ball, const floating* nbt, const double* beyond,
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
        if use_ball and not first and nf > 0:
            nf = _ball_search(X, d, k, centers, idx, nf, ball, nbt, nbt, beyond, False, margin,
                              0.0, 0.0, upper, lower, labels, dirty, &changed)
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
    bint use_ball, const int* ball, const floating* nbt, const floating* nbh,
    const double* beyond,
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
        if use_ball and not first and nf > 0:
            nf = _ball_search(X, d, k, centers, idx, nf, ball, nbt, nbh, beyond, True, margin,
                              max_cnorm, dot_err, upper, lower, labels, dirty, &changed)
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
                upper[i] = sqrt(exact_sq_dist(X + i * d, centers + a * d, d, &xx))
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
    const int[:, ::1] ball=None,           # IN  (n_clusters, BALL) Exponion: ball_tables' lists
    const double[::1] beyond=None,         # IN  (n_clusters,) and distances beyond them
):
    """One Hamerly iteration: labels, bounds, and per-center weighted sums.

    Same contract as ``_lloyd.lloyd_iter`` (returns the number of changed labels),
    plus the bound arrays that carry over between iterations. With ``ball`` and
    ``beyond`` (from ``ball_tables`` of these centers) it runs Exponion: a
    sample that fails the bound test first searches its center's nearest
    centers, and only scans all of them when its ball is larger than that list.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = block_sums.shape[0], b, j, f, l, start, end
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
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef double max_cnorm = 0.0, dot_err = 8.0 * (d + 4) * eps
    cdef bint use_ball = ball is not None
    dtype = np.asarray(centers).dtype
    for j in range(k):
        if shift[j] > max_shift:
            second_shift = max_shift
            max_shift = shift[j]
            argmax_shift = j
        elif shift[j] > second_shift:
            second_shift = shift[j]

    cdef floating[:, ::1] cpack
    cdef floating[::1] hnp
    cdef Py_ssize_t n_tiles = 0
    if use_dot:
        cpack, hnp = dot_tiles(centers, DOT_CT)
        n_tiles = cpack.shape[0] // d
        max_cnorm = float(2.0 * np.max(np.asarray(hnp)[:k]))
    else:
        cpack = np.zeros((1, 1), dtype=dtype)
        hnp = np.zeros(1, dtype=dtype)

    # the ball lists packed as lanes: (k, d, BALL) centers, (k, BALL) half norms
    cdef floating[:, :, ::1] nbt
    cdef floating[:, ::1] nbh
    if use_ball:
        if ball.shape[0] != k or ball.shape[1] != BALL or beyond.shape[0] != k:
            raise ValueError("ball and beyond must come from ball_tables of these centers")
        nbt = np.empty((k, d, BALL), dtype=dtype)
        nbh = np.empty((k, BALL), dtype=dtype)
        with nogil:
            for j in range(k):
                for l in range(BALL):
                    nbh[j, l] = hnp[ball[j, l]] if use_dot else 0
                    for f in range(d):
                        nbt[j, f, l] = centers[ball[j, l], f]
    else:
        ball = np.zeros((1, 1), dtype=np.int32)
        beyond = np.zeros(1)
        nbt = np.zeros((1, 1, 1), dtype=dtype)
        nbh = np.zeros((1, 1), dtype=dtype)

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
            if use_dot:
                block_changed[b] = _hamerly_block_dot(
                    &X[0, 0], &sample_weight[0], start, end, d, k, &centers[0, 0],
                    &half_sep[0], &shift[0], max_shift, second_shift, argmax_shift, first,
                    &upper[0], &lower[0], &labels[0],
                    &block_sums[b, 0, 0], &block_weights[b, 0], margin,
                    &cpack[0, 0], &hnp[0], n_tiles, max_cnorm, dot_err,
                    idx, mb, xt, best, second, lab, dirty,
                    use_ball, &ball[0, 0], &nbt[0, 0, 0], &nbh[0, 0], &beyond[0],
                )
            else:
                block_changed[b] = _hamerly_block_direct(
                    &X[0, 0], &sample_weight[0], start, end, d, k, &centers[0, 0],
                    &half_sep[0], &shift[0], max_shift, second_shift, argmax_shift, first,
                    &upper[0], &lower[0], &labels[0],
                    &block_sums[b, 0, 0], &block_weights[b, 0], margin,
                    idx, mb, xt, best, second, lab, acc, dirty,
                    use_ball, &ball[0, 0], &nbt[0, 0, 0], &beyond[0],
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
