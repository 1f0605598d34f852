"""Hamerly's exact K-Means (Hamerly 2010) and its Exponion refinement (Newling &
Fleuret 2016): one upper and one lower distance bound per sample let most
samples skip the distance computations of an iteration.

Labels are those of Lloyd's algorithm from the same centers: the bound test
runs over a tile of rows, and the rows that fail it are searched with Lloyd's
own arithmetic (the batched tile kernels, or, for Exponion, the ball step's
lanes, which repeat ``numerics.pair_value``'s operations). A bound rules a
center out only past ``numerics.rounding_bound`` (docs/design.md, "Why the
bounds are exact"). The center sums go through the same fixed row-block
reduction as ``lloyd``; only the labels that changed in a block are summed
again, which gives the same bits. So given the same labels the new centers are
bitwise identical to Lloyd's, for any thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

from fastkm._kernels.layout import dot_tiles
from fastkm._kernels.accumulate cimport accumulate_dirty, accumulate_rows, sum_changed
from fastkm._kernels.layout cimport BALL_SIZE, CHUNK, DIRECT_MAX_D
from fastkm._kernels.numerics cimport (
    FASTKM_MADD, exact_sq_dist, lower_from, prefetch_row, rounding_bound,
)
from fastkm._kernels.reduce cimport BlockSums, Merge, block_done
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport DOT_CT, pack_neg_rows, top2_chunk_direct, top2_chunk_dot


cdef enum:
    AHEAD = 6       # rows prefetched ahead when tightening (their X rows come from DRAM)


cdef struct HamerlyCtx:
    # read-only, one per kernel call; pointers are to ``floating`` unless typed
    const void* X              # (n, d)
    const void* sw             # (n,)
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t k
    const void* centers        # (k, d)
    const double* half_sep     # (k,) 0.5 * distance to the nearest other center
    const double* shift        # (k,) distance each center moved last update
    double max_shift           # the largest shift, the second largest, and whose
    double second_shift
    Py_ssize_t argmax_shift
    bint first                 # no valid bounds yet: every row is searched
    bint use_dot               # d > DIRECT_MAX_D
    bint use_ball              # Exponion
    double margin              # 1 - rounding_bound: bounds must clear it
    const void* cpack          # (n_tiles * d, DOT_CT) dot tiles (use_dot)
    const void* hn             # (n_tiles * DOT_CT,) their half norms
    Py_ssize_t n_tiles
    double max_cnorm           # max ||c||^2 (use_dot: the dot values' rounding scale)
    double dot_err             # rounding_bound, for lower bounds from dot values
    const int* ball            # (k, BALL_SIZE) Exponion's lists (ball_tables)
    const void* nbt            # (k, d, BALL_SIZE) their centers as lanes
    const void* nbh            # (k, BALL_SIZE) their half norms (use_dot)
    const double* beyond       # (k,) distance to the nearest center not in the list
    double* upper              # IN/OUT (n,)
    double* lower              # IN/OUT (n,)
    int* labels                # IN/OUT (n,)
    double* block_sums         # (n_blocks, k, d) kept between iterations
    double* block_weights      # (n_blocks, k)
    Py_ssize_t rows_per_block


cdef struct HScratch:
    # one per thread
    int* idx                   # (CHUNK,) rows of a tile that fail the bound test
    double* mb                 # (CHUNK,)
    void* xt                   # (d, CHUNK) the failing rows, transposed
    void* best                 # (CHUNK,)
    void* second               # (CHUNK,)
    int* lab                   # (CHUNK,)
    void* acc                  # (CHUNK,)
    char* dirty                # (k,) labels that gained or lost a row in the block


cdef HScratch* _scratch_new(Py_ssize_t d, Py_ssize_t k, Py_ssize_t itemsize) noexcept nogil:
    cdef HScratch* s = <HScratch*> malloc(sizeof(HScratch))
    s.idx = <int*> malloc(CHUNK * sizeof(int))
    s.mb = <double*> malloc(CHUNK * sizeof(double))
    s.xt = malloc(CHUNK * d * itemsize)
    s.best = malloc(CHUNK * itemsize)
    s.second = malloc(CHUNK * itemsize)
    s.lab = <int*> malloc(CHUNK * sizeof(int))
    s.acc = malloc(CHUNK * itemsize)
    s.dirty = <char*> malloc(k)
    return s


cdef void _scratch_free(HScratch* s) noexcept nogil:
    free(s.idx)
    free(s.mb)
    free(s.xt)
    free(s.best)
    free(s.second)
    free(s.lab)
    free(s.acc)
    free(s.dirty)
    free(s)


cdef inline Py_ssize_t _failing_rows(
    const floating* X, const HamerlyCtx* c, Py_ssize_t c0, Py_ssize_t rows,
    int* idx,                     # OUT the rows of the tile that must be searched
    double* mb,                   # scratch (CHUNK,)
) noexcept nogil:
    # Hamerly's bound test over a tile of rows: bounds moved by the centers'
    # shifts in one branch-free pass, then the failing rows are tightened with the
    # exact distance to their center. Returns how many still fail (all on the
    # first iteration).
    cdef Py_ssize_t i, q, m = 0, nf = 0, d = c.d
    cdef int a
    cdef double u, l
    cdef const floating* centers = <const floating*>c.centers
    cdef double* upper = c.upper
    cdef double* lower = c.lower
    cdef const int* labels = c.labels
    if c.first:
        for i in range(rows):
            idx[i] = <int>(c0 + i)
        return rows
    for i in range(rows):
        a = labels[c0 + i]
        u = upper[c0 + i] + c.shift[a]
        # the largest move of any *other* center bounds how far l can drop
        l = lower[c0 + i] - (c.second_shift if a == c.argmax_shift else c.max_shift)
        upper[c0 + i] = u
        lower[c0 + i] = l
        mb[i] = (c.half_sep[a] if c.half_sep[a] > l else l) * c.margin
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
# center keeps its BALL_SIZE nearest centers (itself first), packed as vector
# lanes: when the ball of radius 2u lies inside that list, the search is one
# pass of BALL_SIZE lanes over the features instead of a scan of all k centers.

def ball_tables(const double[:, ::1] cc_sq, int n_threads=1):
    """Each center's ``BALL_SIZE`` nearest centers (itself first; ascending distance,
    ties by index), the distance to the nearest center *not* in that list
    (inf when all are), and half the distance to the nearest other center.

    ``cc_sq``: (k, k) squared center-center distances (``stats.center_sq_distances``).
    Returns ``ball`` (k, BALL_SIZE) int32 (padded with the center itself),
    ``beyond`` (k,) and ``half_sep`` (k,), float64.
    """
    cdef Py_ssize_t k = cc_sq.shape[0], kq = min(<Py_ssize_t>BALL_SIZE, k)
    cdef Py_ssize_t a, j, p, cnt
    cdef double v
    cdef double* dv
    cdef int* di
    ball_arr = np.empty((k, BALL_SIZE), dtype=np.int32)
    beyond_arr = np.empty(k)
    half_arr = np.empty(k)
    cdef int[:, ::1] ball = ball_arr
    cdef double[::1] beyond = beyond_arr
    cdef double[::1] half_sep = half_arr
    with nogil, parallel(num_threads=n_threads):
        dv = <double*> malloc((BALL_SIZE + 1) * sizeof(double))
        di = <int*> malloc((BALL_SIZE + 1) * sizeof(int))
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
            for p in range(BALL_SIZE):
                ball[a, p] = di[p] if p < kq else <int>a
            beyond[a] = sqrt(dv[kq]) if k > kq else DBL_MAX
            half_sep[a] = 0.5 * sqrt(dv[1]) if k > 1 else DBL_MAX
        free(dv)
        free(di)
    return ball_arr, beyond_arr, half_arr


cdef inline void _ball_values(
    const floating* x, Py_ssize_t d,
    const floating* nbt,          # IN  (d, BALL_SIZE) the ball's centers, features x lanes
    const floating* nbh,          # IN  (BALL_SIZE,) their 0.5 ||c||^2 (dot values only)
    bint use_dot,                 # a literal at each call
    floating* out,                # OUT (BALL_SIZE,) pair_value of x and each lane's center
) noexcept nogil:
    # lanes are centers; each lane does pair_value's operations in its order,
    # so the values are bitwise those of Lloyd's tile kernels
    cdef floating acc[BALL_SIZE]
    cdef floating xf, t
    cdef Py_ssize_t f, l
    if use_dot:
        for l in range(BALL_SIZE):
            acc[l] = nbh[l]
        for f in range(d):
            xf = -x[f]
            for l in range(BALL_SIZE):
                acc[l] = <floating>FASTKM_MADD(xf, nbt[f * BALL_SIZE + l], acc[l])
    else:
        xf = x[0]
        for l in range(BALL_SIZE):
            t = xf - nbt[l]
            acc[l] = t * t
        for f in range(1, d):
            xf = x[f]
            for l in range(BALL_SIZE):
                t = xf - nbt[f * BALL_SIZE + l]
                acc[l] = <floating>FASTKM_MADD(t, t, acc[l])
    for l in range(BALL_SIZE):
        out[l] = acc[l]


cdef inline Py_ssize_t _ball_search(
    const floating* X, const HamerlyCtx* c,
    int* idx, Py_ssize_t nf,      # IN/OUT the failing rows; OUT the rows left for a full scan
    bint use_dot,                 # a literal at each call (c.use_dot)
    char* dirty, Py_ssize_t* changed,
) noexcept nogil:
    # Rows whose ball (radius 2u around their center) lies within the center's
    # BALL_SIZE-list are searched there; the others are compacted into idx[:return].
    cdef Py_ssize_t q, l, i, rest = 0, d = c.d, k = c.k
    cdef Py_ssize_t kq = min(<Py_ssize_t>BALL_SIZE, k)
    cdef int a, j, j1
    cdef double u, va, vb, v, xx, err, lo
    cdef floating vals[BALL_SIZE]
    cdef const floating* x
    cdef const floating* centers = <const floating*>c.centers
    cdef const floating* nbt = <const floating*>c.nbt
    # the few-feature lists have no half norms: their lanes are read as nbt (unused)
    cdef const floating* nbh = <const floating*>c.nbh if use_dot else nbt
    cdef const int* ball = c.ball
    cdef const double* beyond = c.beyond
    cdef double* upper = c.upper
    cdef double* lower = c.lower
    cdef int* labels = c.labels
    for q in range(nf):
        i = idx[q]
        a = labels[i]
        u = upper[i]              # tightened: the distance to center a
        if not 2.0 * u < beyond[a] * c.margin:
            idx[rest] = <int>i
            rest += 1
            continue
        x = X + i * d
        _ball_values(x, d, nbt + a * d * BALL_SIZE, nbh + a * BALL_SIZE, use_dot, vals)
        # Lloyd's rule: smallest value, lowest index on equal values
        va = DBL_MAX
        vb = DBL_MAX
        j1 = a
        for l in range(kq):
            j = ball[a * BALL_SIZE + l]
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
            err = c.dot_err * (xx + c.max_cnorm)
            v = lower_from(vb, True, xx, err) if vb < DBL_MAX else DBL_MAX
        else:
            upper[i] = sqrt(va)
            v = sqrt(vb) if vb < DBL_MAX else DBL_MAX
        lower[i] = v if v < lo else lo
    return rest


cdef inline Py_ssize_t _scan_rows(
    const floating* X, const HamerlyCtx* c, HScratch* s, Py_ssize_t nf,
    bint use_dot,                 # a literal at each call (c.use_dot)
) noexcept nogil:
    # The rows left failing (s.idx[:nf]) searched together over every center by
    # Lloyd's tile kernels, which also keep the runner-up; their labels and
    # bounds updated. Returns how many labels changed.
    cdef Py_ssize_t q, f, i, changed = 0, d = c.d, k = c.k
    cdef int a
    cdef double v, xx
    cdef const floating* x
    cdef const floating* centers = <const floating*>c.centers
    cdef floating* xt = <floating*>s.xt
    cdef floating* best = <floating*>s.best
    cdef floating* second = <floating*>s.second
    cdef int* idx = s.idx
    cdef int* lab = s.lab
    cdef int* labels = c.labels
    if use_dot:
        pack_neg_rows(X, idx, nf, d, xt)
        top2_chunk_dot(xt, nf, d, <const floating*>c.cpack, <const floating*>c.hn, c.n_tiles,
                       lab, best, second)
    else:
        for q in range(nf):
            x = X + <Py_ssize_t>idx[q] * d
            for f in range(d):
                xt[f * CHUNK + q] = x[f]
        top2_chunk_direct(xt, nf, d, centers, k, best, second, lab, <floating*>s.acc)
    for q in range(nf):
        i = idx[q]
        a = lab[q]
        if a != labels[i]:
            changed += 1
            if not c.first:
                s.dirty[labels[i]] = 1
                s.dirty[a] = 1
            labels[i] = a
        if use_dot:
            # exact distance to the winner; a lower bound for the runner-up
            # from 2 (0.5||c||^2 - x.c) + ||x||^2, less its worst rounding
            c.upper[i] = sqrt(exact_sq_dist(X + i * d, centers + a * d, d, &xx))
            v = 2.0 * <double>second[q] + xx - c.dot_err * (xx + c.max_cnorm)
            c.lower[i] = (sqrt(v) if v > 0.0 else 0.0) if k > 1 else DBL_MAX
        else:
            c.upper[i] = sqrt(<double>best[q])
            c.lower[i] = sqrt(<double>second[q]) if k > 1 else DBL_MAX
    return changed


cdef Py_ssize_t _hamerly_block(
    const floating* X, const HamerlyCtx* c, HScratch* s, Py_ssize_t b,
) noexcept nogil:
    # One reduction block: the bound test tile by tile, the ball step
    # (Exponion), the full scan of what still fails, then the block's sums.
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(c.n, start + c.rows_per_block)
    cdef Py_ssize_t c0, rows, nf, changed = 0, k = c.k, d = c.d
    cdef double* sums = c.block_sums + b * k * d
    cdef double* weights = c.block_weights + b * k
    # The block's sums persist between iterations: only the labels that gained
    # or lost a row are recomputed (bitwise what a full recomputation gives).
    if c.first:
        memset(sums, 0, k * d * sizeof(double))
        memset(weights, 0, k * sizeof(double))
    else:
        memset(s.dirty, 0, k)
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        nf = _failing_rows(X, c, c0, rows, s.idx, s.mb)
        if c.use_ball and not c.first and nf > 0:
            if c.use_dot:
                nf = _ball_search(X, c, s.idx, nf, True, s.dirty, &changed)
            else:
                nf = _ball_search(X, c, s.idx, nf, False, s.dirty, &changed)
        if nf > 0:
            if c.use_dot:
                changed += _scan_rows(X, c, s, nf, True)
            else:
                changed += _scan_rows(X, c, s, nf, False)
        c0 += rows
    if c.first:
        accumulate_rows(X, <const floating*>c.sw, c.labels, start, end, d, sums, weights)
    else:
        accumulate_dirty(X, <const floating*>c.sw, c.labels, start, end, d, k, sums, weights,
                         s.dirty)
    return changed


def hamerly_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    int[::1] labels,                       # IN/OUT (n_samples,)
    BlockSums sums,                        # IN/OUT per-block sums (kept); OUT merged sums
    const double[::1] half_sep,            # IN  (n_clusters,) 0.5 * distance to the nearest other center
    const double[::1] shift,               # IN  (n_clusters,) distance each center moved last update
    bint first,                            # IN  no valid bounds yet: full pass
    double[::1] upper,                     # IN/OUT (n_samples,) upper bound to assigned center
    double[::1] lower,                     # IN/OUT (n_samples,) lower bound to any other center
    Region region,                         # IN  thread count; OUT the threads' CPU time
    const int[:, ::1] ball=None,           # IN  (n_clusters, BALL_SIZE) Exponion: ball_tables' lists
    const double[::1] beyond=None,         # IN  (n_clusters,) and distances beyond them
):
    """One Hamerly iteration: labels, bounds, and per-center weighted sums.

    Same contract as ``lloyd.lloyd_iter`` (returns the number of changed labels),
    plus the bound arrays that carry over between iterations. With ``ball`` and
    ``beyond`` (from ``ball_tables`` of these centers) it runs Exponion: a
    sample that fails the bound test first searches its center's nearest
    centers, and only scans all of them when its ball is larger than that list.
    The per-block sums persist between calls (only changed labels are summed
    again), so pass the same ``sums`` every iteration of a run.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t j, f, l, b
    cdef HamerlyCtx c
    cdef bint use_dot = d > DIRECT_MAX_D
    dtype = np.asarray(centers).dtype
    c.max_shift = 0.0
    c.second_shift = 0.0
    c.argmax_shift = 0
    for j in range(k):
        if shift[j] > c.max_shift:
            c.second_shift = c.max_shift
            c.max_shift = shift[j]
            c.argmax_shift = j
        elif shift[j] > c.second_shift:
            c.second_shift = shift[j]

    cdef floating[:, ::1] cpack
    cdef floating[::1] hnp
    c.max_cnorm = 0.0
    c.n_tiles = 0
    if use_dot:
        cpack, hnp = dot_tiles(centers, DOT_CT)
        c.n_tiles = cpack.shape[0] // d
        c.max_cnorm = float(2.0 * np.max(np.asarray(hnp)[:k]))
    else:
        cpack = np.zeros((1, 1), dtype=dtype)
        hnp = np.zeros(1, dtype=dtype)

    # the ball lists packed as lanes: (k, d, BALL_SIZE) centers, (k, BALL_SIZE) half norms
    cdef floating[:, :, ::1] nbt
    cdef floating[:, ::1] nbh
    cdef bint use_ball = ball is not None
    if use_ball:
        if ball.shape[0] != k or ball.shape[1] != BALL_SIZE or beyond.shape[0] != k:
            raise ValueError("ball and beyond must come from ball_tables of these centers")
        nbt = np.empty((k, d, BALL_SIZE), dtype=dtype)
        nbh = np.empty((k, BALL_SIZE), dtype=dtype)
        with nogil:
            for j in range(k):
                for l in range(BALL_SIZE):
                    nbh[j, l] = hnp[ball[j, l]] if use_dot else 0
                    for f in range(d):
                        nbt[j, f, l] = centers[ball[j, l], f]
    else:
        ball = np.zeros((1, 1), dtype=np.int32)
        beyond = np.zeros(1)
        nbt = np.zeros((1, 1, 1), dtype=dtype)
        nbh = np.zeros((1, 1), dtype=dtype)

    # Bounds are compared with a relative safety margin that covers the rounding
    # of the distances: a sample is skipped only when its label is certain,
    # otherwise it gets the full (Lloyd-identical) search.
    c.X = &X[0, 0]
    c.sw = &sample_weight[0]
    c.n = n
    c.d = d
    c.k = k
    c.centers = &centers[0, 0]
    c.half_sep = &half_sep[0]
    c.shift = &shift[0]
    c.first = first
    c.use_dot = use_dot
    c.use_ball = use_ball
    c.dot_err = rounding_bound(d, floating is float)
    c.margin = 1.0 - c.dot_err
    c.cpack = &cpack[0, 0]
    c.hn = &hnp[0]
    c.ball = &ball[0, 0]
    c.nbt = &nbt[0, 0, 0]
    c.nbh = &nbh[0, 0]
    c.beyond = &beyond[0]
    c.upper = &upper[0]
    c.lower = &lower[0]
    c.labels = &labels[0]
    c.block_sums = &sums.block_sums[0, 0, 0]
    c.block_weights = &sums.block_weights[0, 0]
    c.rows_per_block = sums.rows_per_block

    cdef Py_ssize_t[::1] block_changed = sums.block_changed
    cdef Merge* m = sums.start_merge()
    cdef RegionClock* rc = &region.clock
    cdef HScratch* s
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(d, k, sizeof(floating))
        for b in prange(sums.n_blocks, schedule="dynamic"):
            block_changed[b] = _hamerly_block(&X[0, 0], &c, s, b)
            block_done(m, b)
        _scratch_free(s)
        region_leave(rc, t0)
    return sum_changed(&block_changed[0], sums.n_blocks)
