"""Hamerly's (with Exponion's refinement) and Elkan's exact K-Means on CSR rows:
distance bounds from the centers' shifts and center-center distances skip most
of the comparison values of an iteration.

Labels are those of ``sparse_lloyd.assign`` from the same centers, bit for bit.
Every value that decides a label is computed with Lloyd's arithmetic (the
tile scan, or the one-lane gather that repeats its operations), and a center
is ruled out only when it cannot win in that arithmetic: with true distances
D_a <= u (to the row's center) and D_j >= z, the computed values satisfy
2 v + ||x||^2 = D^2 +- E (``csr_tiles.value_error``), so z^2 > u^2 + 2E
guarantees v_j > v_a. The margin is absolute (the sparse expansion
||x||^2 + ||c||^2 - 2 x.c cancels); upper and lower bounds come from float64
dot products less their own rounding (``csr_tiles.dist_error``), and
center-center distances from the float64 Gram matrix less its rounding. The
center sums are the solver's (``sparse_centers.update_centers``).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport INFINITY, nextafterf, sqrt
from libc.stdlib cimport free, malloc

import numpy as np

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport (
    FASTKM_GATHER, dist_error, dot_lane, fastkm_row_tile2_d, fastkm_row_tile2_f, init_best,
    lanes_values, lower_dist, lower_from_value, row_values, scan_tile, tile_width,
    upper_dist, value_error,
)
from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave

cdef enum:
    NEIGHBOURS_MAX = 64   # Exponion: nearest centers kept per center

NEIGHBOURS = NEIGHBOURS_MAX


cdef struct BoundsCtx:
    # read-only, one per kernel call; pointers to ``floating`` are void*
    const void* data           # (nnz,)
    const int* indices         # (nnz,)
    const Py_ssize_t* indptr   # (n + 1,)
    const double* xx           # (n,) ||x||^2
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t k
    Py_ssize_t kt
    Py_ssize_t n_tiles
    bint single
    const void* ct             # (n_tiles, d, kt) the centers
    const void* hn             # (n_tiles * kt,) 0.5 ||c||^2
    const double* cnorm        # (k,) ||c||^2
    double cmax                # an upper bound of max ||c||^2
    int* labels                # IN/OUT (n,)
    double* upper              # IN/OUT (n,) bound on the distance to the row's center
    void* lower                # IN/OUT (n,) double (Hamerly) or (n, k) floating (Elkan)
    const double* half_sep     # (k,) half the lower bound of the distance to the nearest other center
    const double* half_cc      # (k, k) Elkan: half the center-center lower bounds
    const double* shift        # (k,) upper bound of each center's last move
    double max_shift           # the largest shift, the second largest, and whose
    double second_shift
    Py_ssize_t argmax_shift
    bint first                 # no valid bounds yet: every row is searched
    const int* ball            # (k, nb) Exponion: each center's nearest centers, ascending
    const double* ball_cc      # (k, nb) their distance lower bounds
    const double* beyond       # (k,) lower bound of the distance to the nearest one not listed
    Py_ssize_t nb              # 0: plain Hamerly


cdef struct Scratch:
    # one per thread
    int* idx                   # (CHUNK,) rows left to search
    void* best                 # (CHUNK,) floating
    void* second               # (CHUNK,) floating
    int* arg                   # (CHUNK,)
    int* arg2                  # (CHUNK,)
    void* vals                 # (2 * kt,) floating
    int* cand                  # (k,) candidate centers of one row
    const void** lane_ptr      # (FASTKM_GATHER,) a gather's centers (tile + lane)
    void* ghn                  # (FASTKM_GATHER,) floating, their 0.5 ||c||^2
    void* gvals                # (FASTKM_GATHER,) floating, their values
    double* gdots              # (FASTKM_GATHER,) their float64 dots


cdef Scratch* _scratch_new(Py_ssize_t kt, Py_ssize_t k, Py_ssize_t itemsize) noexcept nogil:
    cdef Scratch* s = <Scratch*> malloc(sizeof(Scratch))
    s.idx = <int*> malloc(CHUNK * sizeof(int))
    s.best = malloc(CHUNK * itemsize)
    s.second = malloc(CHUNK * itemsize)
    s.arg = <int*> malloc(CHUNK * sizeof(int))
    s.arg2 = <int*> malloc(CHUNK * sizeof(int))
    s.vals = malloc(2 * kt * itemsize)
    s.cand = <int*> malloc(k * sizeof(int))
    s.lane_ptr = <const void**> malloc(FASTKM_GATHER * sizeof(void*))
    s.ghn = malloc(FASTKM_GATHER * itemsize)
    s.gvals = malloc(FASTKM_GATHER * itemsize)
    s.gdots = <double*> malloc(FASTKM_GATHER * sizeof(double))
    return s


cdef void _scratch_free(Scratch* s) noexcept nogil:
    free(s.idx)
    free(s.best)
    free(s.second)
    free(s.arg)
    free(s.arg2)
    free(s.vals)
    free(s.cand)
    free(s.lane_ptr)
    free(s.ghn)
    free(s.gvals)
    free(s.gdots)
    free(s)


cdef inline floating _down(double v, floating tag) noexcept nogil:
    # v rounded to the dtype, downwards: a lower bound stays a lower bound
    cdef floating f = <floating>v
    if floating is float:
        if f > v:
            f = nextafterf(f, 0.0)
    return f


cdef inline bint _rules_out(double z, double u, double margin) noexcept nogil:
    # a center at distance >= z cannot beat (or tie) one at distance <= u
    return z > 0.0 and z * z > u * u + margin


cdef inline const floating* _lane_ptr(const BoundsCtx* c, Py_ssize_t j,
                                      const floating* tag) noexcept nogil:
    # center j in the tiles: its tile plus its lane (stride kt)
    return <const floating*>c.ct + (j // c.kt) * c.d * c.kt + j % c.kt


cdef inline double _dot(const BoundsCtx* c, const floating* x, const int* ind, Py_ssize_t m,
                        Py_ssize_t j) noexcept nogil:
    # x.c_j in float64 (for bounds)
    return dot_lane(x, ind, m, _lane_ptr(c, j, x))


cdef inline void _gather(
    const BoundsCtx* c, Scratch* s, const floating* x, const int* ind, Py_ssize_t m,
    const int* js, int count,     # IN  up to FASTKM_GATHER centers
) noexcept nogil:
    # their comparison values (Lloyd's bits) into s.gvals, float64 dots into s.gdots
    cdef int g
    cdef const floating** lp = <const floating**>s.lane_ptr
    cdef floating* h = <floating*>s.ghn
    for g in range(count):
        lp[g] = _lane_ptr(c, js[g], x)
        h[g] = (<const floating*>c.hn)[js[g]]
    lanes_values(x, ind, m, lp, h, count, <floating*>s.gvals, s.gdots)


# ------------------------------------------------------------------ Hamerly / Exponion

cdef inline Py_ssize_t _failing_rows(
    const BoundsCtx* c, const floating* x, Py_ssize_t r0, Py_ssize_t rows,
    int* idx,                     # OUT the rows that must be searched
) noexcept nogil:
    # The bound test, then the test again with the exact upper bound; returns
    # how many rows fail both (all on the first iteration).
    cdef Py_ssize_t i, m, p0, nf = 0
    cdef int a
    cdef double u, l, xx, margin, dot
    cdef double* lower = <double*>c.lower
    for i in range(r0, r0 + rows):
        if c.first:
            idx[nf] = <int>i
            nf += 1
            continue
        a = c.labels[i]
        p0 = c.indptr[i]
        m = c.indptr[i + 1] - p0
        xx = c.xx[i]
        margin = 2.0 * value_error(m, c.d, c.single, xx, c.cmax)
        u = c.upper[i] + c.shift[a]
        l = lower[i] - (c.second_shift if a == c.argmax_shift else c.max_shift)
        lower[i] = l
        # any other center j: D_j >= l, and D_j >= d(c_a, c_j) - D_a >= 2 half_sep - u
        if _rules_out(max(l, 2.0 * c.half_sep[a] - u), u, margin):
            c.upper[i] = u
            continue
        dot = _dot(c, x + p0, c.indices + p0, m, a)
        u = upper_dist(xx, c.cnorm[a], dot, dist_error(m, c.d, xx, c.cnorm[a]))
        c.upper[i] = u
        if _rules_out(max(l, 2.0 * c.half_sep[a] - u), u, margin):
            continue
        idx[nf] = <int>i
        nf += 1
    return nf


cdef inline bint _ball_search(
    const BoundsCtx* c, Scratch* s, const floating* x, Py_ssize_t i, Py_ssize_t* changed,
) noexcept nogil:
    # Exponion: a center that could win is within u + sqrt(u^2 + margin) of the
    # row's center; search those of its nearest-center list. False when the
    # radius reaches past the list (the row needs the full scan).
    cdef Py_ssize_t p0 = c.indptr[i], m = c.indptr[i + 1] - p0, q, g0, end
    cdef int a = c.labels[i], j, jb, count
    cdef double u = c.upper[i], xx = c.xx[i], margin, radius, lo, vd, vb, lb, lob, out, err
    cdef const int* ball = c.ball + a * c.nb
    cdef const double* bcc = c.ball_cc + a * c.nb
    cdef floating* vals = <floating*>s.gvals
    margin = 2.0 * value_error(m, c.d, c.single, xx, c.cmax)
    radius = u + sqrt(u * u + margin)
    if not radius < c.beyond[a]:
        return False
    end = 0
    while end < c.nb and bcc[end] <= radius:
        end += 1
    if 4 * end > c.k:
        return False
    # every center outside the searched ones is at least this far
    out = (bcc[end] if end < c.nb else c.beyond[a]) - u
    jb = -1
    vb = INFINITY
    lb = INFINITY      # lower bound of the searched centers other than the best
    lob = INFINITY     # the best's own lower bound (moves to lb if it is beaten)
    g0 = 0
    while g0 < end:
        count = <int>min(<Py_ssize_t>FASTKM_GATHER, end - g0)
        _gather(c, s, x + p0, c.indices + p0, m, ball + g0, count)
        for q in range(count):
            j = ball[g0 + q]
            vd = vals[q]
            err = dist_error(m, c.d, xx, c.cnorm[j])
            lo = lower_dist(xx, c.cnorm[j], s.gdots[q], err)
            # Lloyd's rule: the smallest value, the lowest index on equal values
            if vd < vb or (vd == vb and j < jb):
                lb = min(lb, lob)
                vb = vd
                jb = j
                lob = lo
                c.upper[i] = upper_dist(xx, c.cnorm[j], s.gdots[q], err)
            else:
                lb = min(lb, lo)
        g0 += count
    (<double*>c.lower)[i] = min(lb, out)
    if jb != a:
        changed[0] += 1
        c.labels[i] = jb
    return True


cdef inline Py_ssize_t _tests(
    const BoundsCtx* c, const floating* x, Scratch* s, Py_ssize_t ch,
    int* fail,                    # OUT the chunk's rows that need the full scan
    Py_ssize_t* changed,          # IN/OUT labels changed by the ball search
) noexcept nogil:
    # Chunk ch: the bound tests, then (Exponion) the ball search; returns how
    # many rows are left for the full scan.
    cdef Py_ssize_t r0 = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.n - r0)
    cdef Py_ssize_t nf, q, rest = 0
    nf = _failing_rows(c, x, r0, rows, fail)
    if c.nb > 0 and not c.first:
        for q in range(nf):
            if not _ball_search(c, s, x, fail[q], changed):
                fail[rest] = fail[q]
                rest += 1
        nf = rest
    return nf


cdef inline Py_ssize_t _settle(
    const BoundsCtx* c, const floating* x, const int* fail, Py_ssize_t nf,
    const int* arg, const int* arg2,   # IN  the full scan's best and runner-up of each
) noexcept nogil:
    # labels and bounds of the rows the full scan searched; returns how many
    # labels changed
    cdef Py_ssize_t q, i, p0, m, changed = 0
    cdef int a, a2
    cdef double dot, xx
    for q in range(nf):
        i = fail[q]
        a = arg[q]
        a2 = arg2[q]
        p0 = c.indptr[i]
        m = c.indptr[i + 1] - p0
        xx = c.xx[i]
        if a != c.labels[i]:
            changed += 1
            c.labels[i] = a
        dot = _dot(c, x + p0, c.indices + p0, m, a)
        c.upper[i] = upper_dist(xx, c.cnorm[a], dot, dist_error(m, c.d, xx, c.cnorm[a]))
        if a2 >= 0:
            dot = _dot(c, x + p0, c.indices + p0, m, a2)
            (<double*>c.lower)[i] = lower_dist(xx, c.cnorm[a2], dot,
                                               dist_error(m, c.d, xx, c.cnorm[a2]))
        else:
            (<double*>c.lower)[i] = DBL_MAX
    return changed


cdef _fill_common(BoundsCtx* c, CSR X, const floating[:, :, ::1] ct, const floating[::1] hn,
                  const double[::1] cnorm, double cmax, int[::1] labels, double[::1] upper,
                  const double[::1] shift, bint first):
    cdef Py_ssize_t j, k = cnorm.shape[0]
    if X.single != (sizeof(floating) == 4) or ct.shape[2] != tile_width(X.single) \
            or ct.shape[1] != X.n_cols or labels.shape[0] != X.n_rows:
        raise ValueError("ct must be X's dtype in the tile layout of sparse_centers.to_tiles")
    c.data = X.data
    c.indices = X.indices
    c.indptr = X.indptr
    c.xx = X.sq_norms
    c.n = X.n_rows
    c.d = X.n_cols
    c.k = k
    c.kt = ct.shape[2]
    c.n_tiles = ct.shape[0]
    c.single = X.single
    c.ct = &ct[0, 0, 0]
    c.hn = &hn[0]
    c.cnorm = &cnorm[0]
    c.cmax = cmax
    c.labels = &labels[0]
    c.upper = &upper[0]
    c.shift = &shift[0]
    c.first = first
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
    c.nb = 0
    c.half_cc = NULL


def hamerly_iter(
    CSR X,
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const floating[::1] hn,                # IN  (n_tiles * KT,) 0.5 ||c||^2
    const double[::1] cnorm,               # IN  (k,) ||c||^2
    double cmax,                           # IN  an upper bound of max ||c||^2
    int[::1] labels,                       # IN/OUT (n,)
    double[::1] upper,                     # IN/OUT (n,) upper bound of the distance to the row's center
    double[::1] lower,                     # IN/OUT (n,) lower bound of the distance to any other center
    const double[::1] half_sep,            # IN  (k,) half the lower bound of the nearest other center
    const double[::1] shift,               # IN  (k,) upper bound of each center's last move
    bint first,                            # IN  no valid bounds yet: every row is searched
    Region region,                         # IN  thread count; OUT the threads' CPU time
    const int[:, ::1] ball=None,           # IN  (k, nb) Exponion: each center's nearest centers
    const double[:, ::1] ball_cc=None,     # IN  (k, nb) their center-distance lower bounds
    const double[::1] beyond=None,         # IN  (k,) lower bound past the list
):
    """One Hamerly iteration on CSR rows: labels and bounds. With ``ball``,
    ``ball_cc`` and ``beyond`` it runs Exponion: a row that fails the bound
    test first searches its center's nearest centers, and scans all of them
    only when the radius that matters reaches past that list (or covers more
    than a quarter of the centers). Returns the number of changed labels."""
    cdef BoundsCtx c
    _fill_common(&c, X, ct, hn, cnorm, cmax, labels, upper, shift, first)
    c.lower = &lower[0]
    c.half_sep = &half_sep[0]
    if ball is not None:
        c.ball = &ball[0, 0]
        c.ball_cc = &ball_cc[0, 0]
        c.beyond = &beyond[0]
        c.nb = ball.shape[1]
    return _hamerly_passes(&c, <const floating*>X.data, region)


cdef Py_ssize_t _hamerly_passes(const BoundsCtx* c, const floating* x, Region region):
    # One parallel region: the bound tests chunk by chunk (every row fails on
    # the first iteration), the full scan of the rows left, tiles outermost
    # (as sparse_lloyd.assign), then their labels and bounds.
    cdef Py_ssize_t n = c.n, n_chunks = (n + CHUNK - 1) // CHUNK, ch, r0, nf, t
    cdef Py_ssize_t changed = 0
    cdef int[::1] fail = np.empty(n, dtype=np.int32)
    cdef Py_ssize_t[::1] ball_changed = np.zeros(n_chunks, dtype=np.intp)
    cdef Py_ssize_t[::1] nfail = np.zeros(n_chunks, dtype=np.intp)
    cdef floating[::1] best = np.empty(n, dtype=np.float32 if c.single else np.float64)
    cdef floating[::1] second = np.empty(n, dtype=np.float32 if c.single else np.float64)
    cdef int[::1] arg = np.empty(n, dtype=np.int32)
    cdef int[::1] arg2 = np.empty(n, dtype=np.int32)
    cdef Scratch* s
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c.kt, c.k, sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            nfail[ch] = _tests(c, x, s, ch, &fail[ch * CHUNK], &ball_changed[ch])
        for t in range(c.n_tiles):
            for ch in prange(n_chunks, schedule="dynamic"):
                r0 = ch * CHUNK
                nf = nfail[ch]
                if nf > 0:
                    if t == 0:
                        init_best(nf, &best[r0], &arg[r0], &second[r0], &arg2[r0])
                    scan_tile(x, c.indices, c.indptr, &fail[r0], nf, 0,
                              <const floating*>c.ct + t * c.d * c.kt,
                              <const floating*>c.hn + t * c.kt, t * c.kt,
                              min(c.kt, c.k - t * c.kt), True, &best[r0], &arg[r0],
                              &second[r0], &arg2[r0], <floating*>s.vals)
        for ch in prange(n_chunks, schedule="dynamic"):
            r0 = ch * CHUNK
            changed += ball_changed[ch] + _settle(c, x, &fail[r0], nfail[ch], &arg[r0],
                                                  &arg2[r0])
        _scratch_free(s)
        region_leave(rc, t0)
    return changed


# ------------------------------------------------------------------ Elkan

cdef inline bint _elkan_full(
    const BoundsCtx* c, const floating* x, Py_ssize_t i, floating* vals,
) noexcept nogil:
    # every value of row i (tile by tile): the label, the upper bound and a
    # lower bound per center. True if the label changed.
    cdef Py_ssize_t p0 = c.indptr[i], m = c.indptr[i + 1] - p0, t, l, j, lanes
    cdef double xx = c.xx[i], err, dot
    cdef floating best = INFINITY
    cdef int a = 0, a0 = c.labels[i]
    cdef floating* lo = <floating*>c.lower + i * c.k
    err = value_error(m, c.d, c.single, xx, c.cmax)
    for t in range(c.n_tiles):
        row_values(x + p0, c.indices + p0, m, <const floating*>c.ct + t * c.d * c.kt,
                   <const floating*>c.hn + t * c.kt, vals)
        lanes = min(c.kt, c.k - t * c.kt)
        for l in range(lanes):
            j = t * c.kt + l
            lo[j] = _down(lower_from_value(vals[l], xx, err), vals[0])
            if vals[l] < best:
                best = vals[l]
                a = <int>j
    c.labels[i] = a
    dot = _dot(c, x + p0, c.indices + p0, m, a)
    c.upper[i] = upper_dist(xx, c.cnorm[a], dot, dist_error(m, c.d, xx, c.cnorm[a]))
    return a != a0


cdef inline bint _elkan_row(
    const BoundsCtx* c, Scratch* s, const floating* x, Py_ssize_t i,
) noexcept nogil:
    # One row with valid bounds; True if its label changed. The centers the
    # bounds do not rule out are computed FASTKM_GATHER at a time (the row's
    # own center with the first ones); a row with many of them is scanned whole.
    cdef Py_ssize_t p0 = c.indptr[i], m = c.indptr[i + 1] - p0, j, k = c.k, nc, q, g0
    cdef int a = c.labels[i], a0 = a, count, jj
    cdef double xx = c.xx[i], margin, u, l, err
    cdef floating va = INFINITY, v
    cdef floating* lo = <floating*>c.lower + i * k
    cdef floating* vals = <floating*>s.gvals
    cdef int* cand = s.cand
    cdef int batch[FASTKM_GATHER]
    margin = 2.0 * value_error(m, c.d, c.single, xx, c.cmax)
    u = c.upper[i] + c.shift[a]
    for j in range(k):
        l = lo[j] - c.shift[j]
        lo[j] = _down(l if l > 0.0 else 0.0, va)
    if _rules_out(2.0 * c.half_sep[a] - u, u, margin):
        c.upper[i] = u
        return False
    nc = 0
    for j in range(k):
        if j != a and not _rules_out(max(<double>lo[j], 2.0 * c.half_cc[a * k + j] - u), u,
                                     margin):
            cand[nc] = <int>j
            nc += 1
    if nc == 0:
        c.upper[i] = u
        return False
    if 4 * nc >= k:
        return _elkan_full(c, x, i, <floating*>s.vals)
    # the row's own center (tight bounds) with the first candidates, then the
    # candidates that the best so far does not rule out, FASTKM_GATHER at a time
    batch[0] = a
    count = 1
    g0 = 0
    while g0 < nc and count < FASTKM_GATHER:
        batch[count] = cand[g0]
        count += 1
        g0 += 1
    while count > 0:
        _gather(c, s, x + p0, c.indices + p0, m, batch, count)
        for q in range(count):
            jj = batch[q]
            v = vals[q]
            err = dist_error(m, c.d, xx, c.cnorm[jj])
            lo[jj] = _down(lower_dist(xx, c.cnorm[jj], s.gdots[q], err), v)
            # Lloyd's rule: the smallest value, the lowest index on equal values
            if v < va or (v == va and jj < a):
                va = v
                a = jj
                u = upper_dist(xx, c.cnorm[jj], s.gdots[q], err)
        count = 0
        while g0 < nc and count < FASTKM_GATHER:
            jj = cand[g0]
            g0 += 1
            if not _rules_out(max(<double>lo[jj], 2.0 * c.half_cc[a * k + jj] - u), u, margin):
                batch[count] = jj
                count += 1
    c.upper[i] = u
    if a != a0:
        c.labels[i] = a
        return True
    return False


def elkan_iter(
    CSR X,
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const floating[::1] hn,                # IN  (n_tiles * KT,) 0.5 ||c||^2
    const double[::1] cnorm,               # IN  (k,) ||c||^2
    double cmax,                           # IN  an upper bound of max ||c||^2
    int[::1] labels,                       # IN/OUT (n,)
    double[::1] upper,                     # IN/OUT (n,)
    floating[:, ::1] lower,                # IN/OUT (n, k) lower bounds, rounded down to the dtype
    const double[:, ::1] half_cc,          # IN  (k, k) half the center-center lower bounds
    const double[::1] half_sep,            # IN  (k,) row minima of half_cc (diagonal excluded)
    const double[::1] shift,               # IN  (k,) upper bound of each center's last move
    bint first,                            # IN  no valid bounds yet: every value is computed
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """One Elkan iteration on CSR rows: labels and bounds. Returns the number of
    changed labels."""
    cdef BoundsCtx c
    cdef Py_ssize_t n = X.n_rows, i, changed = 0
    _fill_common(&c, X, ct, hn, cnorm, cmax, labels, upper, shift, first)
    if lower.shape[0] != n or lower.shape[1] != c.k:
        raise ValueError("lower must be (n_samples, n_clusters)")
    c.lower = &lower[0, 0]
    c.half_cc = &half_cc[0, 0]
    c.half_sep = &half_sep[0]
    cdef const floating* x = <const floating*>X.data
    cdef Scratch* s
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if first:
        return _elkan_first(&c, x, region)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c.kt, c.k, sizeof(floating))
        for i in prange(n, schedule="dynamic", chunksize=64):
            changed += _elkan_row(&c, s, x, i)
        _scratch_free(s)
        region_leave(rc, t0)
    return changed


cdef inline void _elkan_tile_row(
    const BoundsCtx* c, Py_ssize_t i, const floating* vals, Py_ssize_t t, double err,
    floating* best, int* arg,     # IN/OUT the row's best so far
) noexcept nogil:
    # one tile's values of row i: lower bounds, and Lloyd's running argmin
    cdef Py_ssize_t l, j
    cdef floating* lo = <floating*>c.lower + i * c.k
    for l in range(min(c.kt, c.k - t * c.kt)):
        j = t * c.kt + l
        lo[j] = _down(lower_from_value(vals[l], c.xx[i], err), vals[0])
        if vals[l] < best[0]:
            best[0] = vals[l]
            arg[0] = <int>j


cdef Py_ssize_t _elkan_first(const BoundsCtx* c, const floating* x, Region region):
    # No bounds yet: every value of every row, tiles outermost (as
    # sparse_lloyd.assign), each one a lower bound; then labels and upper bounds.
    cdef Py_ssize_t n = c.n, n_pairs = (n + 1) // 2, q, i0, i1, t, i, p0, m, kt = c.kt
    cdef floating[::1] best = np.full(n, np.inf, dtype=np.float32 if c.single else np.float64)
    cdef int[::1] arg = np.zeros(n, dtype=np.int32)
    cdef floating* vals
    cdef const floating* tile
    cdef double dot
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        vals = <floating*> malloc(2 * kt * sizeof(floating))
        for t in range(c.n_tiles):
            tile = <const floating*>c.ct + t * c.d * kt
            for q in prange(n_pairs, schedule="dynamic", chunksize=64):
                i0 = 2 * q
                i1 = i0 + 1
                if i1 < n:
                    if floating is float:
                        fastkm_row_tile2_f(
                            x + c.indptr[i0], c.indices + c.indptr[i0], c.indptr[i1] - c.indptr[i0],
                            x + c.indptr[i1], c.indices + c.indptr[i1],
                            c.indptr[i1 + 1] - c.indptr[i1], tile,
                            <const floating*>c.hn + t * kt, vals, vals + kt)
                    else:
                        fastkm_row_tile2_d(
                            x + c.indptr[i0], c.indices + c.indptr[i0], c.indptr[i1] - c.indptr[i0],
                            x + c.indptr[i1], c.indices + c.indptr[i1],
                            c.indptr[i1 + 1] - c.indptr[i1], tile,
                            <const floating*>c.hn + t * kt, vals, vals + kt)
                    _elkan_tile_row(c, i1, vals + kt, t, value_error(
                        c.indptr[i1 + 1] - c.indptr[i1], c.d, c.single, c.xx[i1], c.cmax),
                        &best[i1], &arg[i1])
                else:
                    row_values(x + c.indptr[i0], c.indices + c.indptr[i0],
                               c.indptr[i1] - c.indptr[i0], tile, <const floating*>c.hn + t * kt,
                               vals)
                _elkan_tile_row(c, i0, vals, t, value_error(
                    c.indptr[i0 + 1] - c.indptr[i0], c.d, c.single, c.xx[i0], c.cmax),
                    &best[i0], &arg[i0])
        free(vals)
        for i in prange(n, schedule="static"):
            p0 = c.indptr[i]
            m = c.indptr[i + 1] - p0
            c.labels[i] = arg[i]
            dot = _dot(c, x + p0, c.indices + p0, m, arg[i])
            c.upper[i] = upper_dist(c.xx[i], c.cnorm[arg[i]], dot,
                                    dist_error(m, c.d, c.xx[i], c.cnorm[arg[i]]))
        region_leave(rc, t0)
    return n
