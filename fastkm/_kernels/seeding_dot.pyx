"""k-means++ seeding kernels for many features (d > layout.DIRECT_MAX_D): the
distances of up to MAX_CANDIDATES candidates to every row through dot-product
register tiles (``src/seed_tile.h``), with exact pruning of the rows no
candidate can bring nearer.

Potentials are summed per fixed row block in (candidate, lane) sums of a fixed
order, so they are the same bits for any thread count; a pruned row adds
exactly what the unpruned kernel would (the proof is in docs/design.md,
"Exact pruning in the seeding").
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from fastkm._kernels.numerics cimport FASTKM_MADD, prefetch_row
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave


# ------------------------------------------------------------------ many features
# Squared distances as ||x||^2 + 2 (0.5 ||c||^2 - x.c), the dot products of 8
# rows with 8 candidates at once (8 independent accumulator vectors of 8 lanes),
# twice for 9 to 16 candidates: the structure of a GEMM micro-kernel, without
# repacking X. As in scikit-learn's seeding, which uses the same expansion.
#
# Exact pruning (Elkan's lemma applied to seeding; Raff 2021, "Exact
# acceleration of k-means++ and k-means||"). Row i's D_i^2 came from the chosen
# center a = owner[i]. If ||cand_t - center_a|| >= 2 D_i for every candidate t,
# the triangle inequality gives ||x_i - cand_t|| >= D_i: no candidate lowers
# D_i^2, and row i adds w_i D_i^2 to every candidate's potential without its
# distances being computed. The test is made against a radius that covers the
# rounding of the computed D^2 (``fastkm.kmeans._seeding.seeding_slack``), so that a
# skipped row's computed D^2 would be >= D_i^2 and min(D_i^2, D^2) is D_i^2 bit
# for bit: the potentials, the draws and the centers are those of the unpruned
# kernel. A row is evaluated against all candidates or none (one register tile);
# evaluating a row that could have been skipped changes nothing, so a chunk
# where most rows are needed is evaluated whole, in order (streamed, not gathered).

cdef inline void _prefetch_rows(
    const floating* X, const int* rows, Py_ssize_t count, Py_ssize_t d,
) noexcept nogil:
    # the evaluated rows are scattered: ask for their cache lines a few tiles
    # ahead (the hardware prefetchers follow streams, not lists)
    cdef Py_ssize_t r
    for r in range(count):
        prefetch_row(X + <Py_ssize_t>rows[r] * d, d)


cdef enum:
    PREFETCH_AHEAD = 32   # rows, four tiles
    DENSE_NUM = 3         # evaluate a whole chunk when more than 3/8 of its rows need it
    DENSE_DEN = 8
    MAX_CANDIDATES = 16   # candidates per pass (2 + ln k <= 16 for any k below a million)
    ROW_GROUP = 8
    GATHER = 256          # rows tested, then gathered, per pass (a multiple of ROW_GROUP)


cdef inline void _half_dots(
    const floating** p,           # IN  8 row pointers (a short group repeats its last row)
    Py_ssize_t d,
    const floating* ct,           # IN  (d, 8) 8 candidates transposed, zero padded
    const floating* hn,           # IN  (8,) 0.5 ||c||^2
    floating* out,                # OUT (8 rows, 8 candidates)
) noexcept nogil:
    # every value depends only on its own row and candidate (one FMA per
    # feature, in feature order): the same bits whichever rows and candidates
    # share the tile
    cdef floating a0[8]
    cdef floating a1[8]
    cdef floating a2[8]
    cdef floating a3[8]
    cdef floating a4[8]
    cdef floating a5[8]
    cdef floating a6[8]
    cdef floating a7[8]
    cdef const floating* c
    cdef floating x0, x1, x2, x3, x4, x5, x6, x7
    cdef Py_ssize_t f, j
    for j in range(8):
        a0[j] = hn[j]
        a1[j] = hn[j]
        a2[j] = hn[j]
        a3[j] = hn[j]
        a4[j] = hn[j]
        a5[j] = hn[j]
        a6[j] = hn[j]
        a7[j] = hn[j]
    for f in range(d):
        c = ct + f * 8
        x0 = -p[0][f]
        x1 = -p[1][f]
        x2 = -p[2][f]
        x3 = -p[3][f]
        x4 = -p[4][f]
        x5 = -p[5][f]
        x6 = -p[6][f]
        x7 = -p[7][f]
        for j in range(8):
            a0[j] = <floating>FASTKM_MADD(x0, c[j], a0[j])
        for j in range(8):
            a1[j] = <floating>FASTKM_MADD(x1, c[j], a1[j])
        for j in range(8):
            a2[j] = <floating>FASTKM_MADD(x2, c[j], a2[j])
        for j in range(8):
            a3[j] = <floating>FASTKM_MADD(x3, c[j], a3[j])
        for j in range(8):
            a4[j] = <floating>FASTKM_MADD(x4, c[j], a4[j])
        for j in range(8):
            a5[j] = <floating>FASTKM_MADD(x5, c[j], a5[j])
        for j in range(8):
            a6[j] = <floating>FASTKM_MADD(x6, c[j], a6[j])
        for j in range(8):
            a7[j] = <floating>FASTKM_MADD(x7, c[j], a7[j])
    for j in range(8):
        out[j] = a0[j]
        out[8 + j] = a1[j]
        out[16 + j] = a2[j]
        out[24 + j] = a3[j]
        out[32 + j] = a4[j]
        out[40 + j] = a5[j]
        out[48 + j] = a6[j]
        out[56 + j] = a7[j]


cdef extern from "seed_tile.h":
    bint FASTKM_TILE      # the intrinsics tile exists for this build (AVX + FMA)
    bint FASTKM_EPI       # the float64 vector-type epilogue exists
    bint FASTKM_EPI_T     # the float32 rows-as-lanes epilogue exists
    void fastkm_half_dots_f(const float** p, Py_ssize_t d, const float* ct, const float* hn,
                            float* out) noexcept nogil
    void fastkm_half_dots_d(const double** p, Py_ssize_t d, const double* ct, const double* hn,
                            double* out) noexcept nogil
    void fastkm_epilogue8_d(const double* o, double xi, double c, double w, double* v,
                            double* s) noexcept nogil
    void fastkm_epi_rows8_f(const float* out, Py_ssize_t m, const double* xx, const double* cl,
                            const float* sw, float* d2, Py_ssize_t n, double* s) noexcept nogil

MAX_CANDIDATES_PER_PASS = MAX_CANDIDATES


cdef inline void _tile(
    const floating** p, Py_ssize_t d, const floating* ct, const floating* hn,
    Py_ssize_t n_groups, floating* out,   # OUT (n_groups, 8, 8)
) noexcept nogil:
    # 8 candidates at a time (one call site: the compiler inlines the tile)
    cdef Py_ssize_t cg
    for cg in range(n_groups):
        if FASTKM_TILE:
            if floating is float:
                fastkm_half_dots_f(p, d, ct + cg * d * 8, hn + cg * 8, out + cg * 64)
            else:
                fastkm_half_dots_d(p, d, ct + cg * d * 8, hn + cg * 8, out + cg * 64)
        else:
            _half_dots(p, d, ct + cg * d * 8, hn + cg * 8, out + cg * 64)


cdef inline void _dense_rows(
    const floating* out, Py_ssize_t n_groups, Py_ssize_t m, Py_ssize_t nr,
    const double* xx, const double* closest, const floating* sw,  # at the group's first row
    floating* d2, Py_ssize_t n,        # OUT d2 at (candidate 0, the group's first position)
    double* s,                         # IN/OUT (8 lanes x 16 candidates) the lane sums
) noexcept nogil:
    # ||x||^2 + 2 (0.5 ||c||^2 - x.c), clipped at 0, in X's precision, and
    # w min(D_i^2, D^2) added to lane r of each candidate (each (candidate,
    # lane) sum adds its rows in row order, whichever way it is vectorised).
    # float32: rows as vector lanes (fastkm_epi_rows8_f) for full groups, sums
    # candidate-major; float64: candidates as vector lanes, sums lane-major (see
    # _sum_layout). Padding candidates fill sums that are never read.
    cdef floating vv[16]
    cdef double h, hv, c_, wi, xi
    cdef Py_ssize_t r, t, g, sr, st
    if floating is float:
        if FASTKM_EPI_T and nr == ROW_GROUP:
            for g in range(n_groups):
                fastkm_epi_rows8_f(out + g * 64, min(<Py_ssize_t>8, m - g * 8), xx, closest, sw,
                                   d2 + g * 8 * n, n, s + g * 64)
            return
    _sum_layout(out, &sr, &st)
    for r in range(nr):
        xi = xx[r]
        c_ = closest[r]
        wi = <double>sw[r]
        for g in range(n_groups):
            if floating is double:
                if FASTKM_EPI:
                    fastkm_epilogue8_d(out + g * 64 + r * 8, xi, c_, wi, vv + g * 8,
                                       s + r * 16 + g * 8)
                    continue
            for t in range(8):
                h = 2.0 * <double>out[g * 64 + r * 8 + t] + xi
                vv[g * 8 + t] = <floating>(h if h > 0.0 else 0.0)
                hv = <double>vv[g * 8 + t]
                s[r * sr + (g * 8 + t) * st] += wi * (hv if hv < c_ else c_)
        for t in range(m):
            d2[t * n + r] = vv[t]


cdef inline void _sum_layout(const floating* tag, Py_ssize_t* sr, Py_ssize_t* st) noexcept nogil:
    # where the lane sums keep lane r of candidate t: s[r * sr + t * st]. Rows
    # as vector lanes (float32) want a candidate's 8 lanes together; candidates
    # as lanes (float64) want a lane's 16 candidates together.
    if floating is float:
        sr[0] = 1
        st[0] = 8
    else:
        sr[0] = 16
        st[0] = 1


cdef inline double _lane_sum(const double* s, Py_ssize_t t, Py_ssize_t sr, Py_ssize_t st) noexcept nogil:
    # candidate t's potential from its 8 lane sums, in one fixed order
    cdef const double* q = s + t * st
    return (((q[0] + q[sr]) + (q[2 * sr] + q[3 * sr]))
            + ((q[4 * sr] + q[5 * sr]) + (q[6 * sr] + q[7 * sr])))


cdef struct SeedCtx:
    # read-only, one per dot_potentials call; pointers are to ``floating`` unless typed
    const void* X              # (n, d)
    const void* sw             # (n,)
    const double* closest      # (n,) current D^2
    const double* xx           # (n,) ||x||^2
    const int* owner           # (n,) the chosen center that gave D^2
    const double* radius       # (n,) pruning radius
    const double* gap          # (n_centers,) lower bound of min_t ||c_t - center||
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t m               # candidates
    Py_ssize_t n_groups        # groups of 8 candidates
    const void* ct             # (n_groups, d, 8) candidates transposed, zero padded
    const void* hn             # (n_groups * 8,) their 0.5 ||c||^2
    double* block_pot          # OUT (m, n_blocks)
    Py_ssize_t n_blocks
    void* d2                   # OUT (m, n)
    int* rows                  # OUT (n,) evaluated rows, per block
    Py_ssize_t rows_per_block


cdef void _dot_block_all(const floating* X, const SeedCtx* c, Py_ssize_t b) noexcept nogil:
    # every row of block b, in order: the kernel without pruning
    cdef floating out[128]
    cdef double s[16 * 8]
    cdef const floating* p[8]
    cdef Py_ssize_t i0, r, t, nr, sr, st, d = c.d, n = c.n
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(n, start + c.rows_per_block)
    cdef const floating* sw = <const floating*>c.sw
    cdef floating* d2 = <floating*>c.d2
    _sum_layout(X, &sr, &st)
    for t in range(16 * 8):
        s[t] = 0.0
    i0 = start
    while i0 < end:
        nr = min(<Py_ssize_t>ROW_GROUP, end - i0)
        for r in range(ROW_GROUP):
            # a short group re-reads its last row; only real rows are used
            p[r] = X + min(i0 + r, end - 1) * d
        _tile(p, d, <const floating*>c.ct, <const floating*>c.hn, c.n_groups, out)
        _dense_rows(out, c.n_groups, c.m, nr, c.xx + i0, c.closest + i0, sw + i0, d2 + i0, n, s)
        i0 += nr
    for t in range(c.m):
        c.block_pot[t * c.n_blocks + b] = _lane_sum(s, t, sr, st)


cdef Py_ssize_t _dot_block(
    const floating* X, const SeedCtx* c, Py_ssize_t b,
    double* cv,                        # scratch (m, GATHER)
) noexcept nogil:
    # Block b with pruning: D^2 of the j-th evaluated row at d2[:, start + j],
    # the evaluated rows listed in rows[start:]; returns how many were evaluated
    cdef floating out[128]
    cdef double s[16 * 8]
    cdef double lane[8]
    cdef double xr[8]
    cdef double cr[8]
    cdef Py_ssize_t jr[8]
    cdef const floating* p[8]
    cdef Py_ssize_t c0, nc, i, i0, j, g, r, t, nr, q0, nq, total = 0, sr, st
    cdef Py_ssize_t d = c.d, n = c.n, m = c.m, n_groups = c.n_groups
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(n, start + c.rows_per_block)
    cdef double h
    cdef floating v
    cdef int e
    cdef bint dense
    cdef const floating* sw = <const floating*>c.sw
    cdef const floating* ct = <const floating*>c.ct
    cdef const floating* hn = <const floating*>c.hn
    cdef floating* d2 = <floating*>c.d2
    cdef const double* closest = c.closest
    cdef const double* xx = c.xx
    cdef int* rows = c.rows
    _sum_layout(X, &sr, &st)
    for t in range(16 * 8):
        s[t] = 0.0
    c0 = start
    while c0 < end:
        # chunks of GATHER rows from the block's start: row i stays in lane (i - start) % 8
        nc = min(<Py_ssize_t>GATHER, end - c0)
        # the rows that some candidate may bring nearer than their own center
        q0 = start + total
        nq = 0
        for i in range(c0, c0 + nc):
            e = c.gap[c.owner[i]] <= c.radius[i]
            rows[q0 + nq] = <int>i
            nq += e
        dense = nq * DENSE_DEN > nc * DENSE_NUM
        if dense:
            # most rows needed: all of them, streamed in order, the sums taken
            # as they come (as the unpruned kernel)
            for j in range(nc):
                rows[q0 + j] = <int>(c0 + j)
            nq = nc
        else:
            # min(D_i^2, D^2_ti) of the chunk's rows: D_i^2 unless evaluated
            _prefetch_rows(X, rows + q0, min(nq, <Py_ssize_t>PREFETCH_AHEAD), d)
            for t in range(m):
                for j in range(nc):
                    cv[t * GATHER + j] = closest[c0 + j]
        g = 0
        while g < nq:
            nr = min(<Py_ssize_t>ROW_GROUP, nq - g)
            if not dense and g + PREFETCH_AHEAD < nq:
                _prefetch_rows(X, rows + q0 + g + PREFETCH_AHEAD,
                               min(<Py_ssize_t>ROW_GROUP, nq - g - PREFETCH_AHEAD), d)
            for r in range(ROW_GROUP):
                p[r] = X + <Py_ssize_t>rows[q0 + g + min(r, nr - 1)] * d
            _tile(p, d, ct, hn, n_groups, out)
            if dense:
                i0 = c0 + g
                _dense_rows(out, n_groups, m, nr, xx + i0, closest + i0, sw + i0,
                            d2 + q0 + g, n, s)
            else:
                for r in range(nr):
                    i = rows[q0 + g + r]
                    jr[r] = i - c0
                    xr[r] = xx[i]
                    cr[r] = closest[i]
                for t in range(m):
                    for r in range(nr):
                        h = 2.0 * <double>out[(t >> 3) * 64 + r * 8 + (t & 7)] + xr[r]
                        v = <floating>(h if h > 0.0 else 0.0)
                        d2[t * n + q0 + g + r] = v
                        cv[t * GATHER + jr[r]] = v if v < cr[r] else cr[r]
            g += nr
        if not dense:
            # sum_i w_i min(D_i^2, D^2_ti), row i in lane (i - start) % 8, rows
            # in order: the unpruned kernel's sums, term for term
            for t in range(m):
                for r in range(ROW_GROUP):
                    lane[r] = s[r * sr + t * st]
                j = 0
                while j + ROW_GROUP <= nc:
                    for r in range(ROW_GROUP):
                        lane[r] += <double>sw[c0 + j + r] * cv[t * GATHER + j + r]
                    j += ROW_GROUP
                for r in range(nc - j):
                    lane[r] += <double>sw[c0 + j + r] * cv[t * GATHER + j + r]
                for r in range(ROW_GROUP):
                    s[r * sr + t * st] = lane[r]
        total += nq
        c0 += nc
    for t in range(m):
        c.block_pot[t * c.n_blocks + b] = _lane_sum(s, t, sr, st)
    return total


def dot_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) current D^2
    const double[::1] x_sq,                # IN  (n_samples,) ||x||^2
    const floating[:, ::1] candidates,     # IN  (n_candidates <= MAX_CANDIDATES, n_features)
    const int[::1] owner,                  # IN  (n_samples,) the chosen center that gave D^2
    const double[::1] radius,              # IN  (n_samples,) pruning radius, see ``lower_to``
    const double[::1] gap,                 # IN  (n_centers,) lower bound of min_t ||c_t - center||
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    floating[:, ::1] d2,                   # OUT (n_candidates, n_samples) D^2 of evaluated rows
    int[::1] rows,                         # OUT (n_samples,) evaluated rows, per block
    Py_ssize_t[::1] n_rows,                # OUT (n_blocks,) how many rows each block evaluated
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
    bint prune=True,
):
    """Many features: ``seeding.candidate_potentials`` through dot products (8
    rows x 8 candidates in registers, as a GEMM micro-kernel, without repacking
    X), keeping the D^2 so that choosing a candidate needs no second pass
    (``lower_to``). D^2 = ||x||^2 + 2 (0.5||c||^2 - x.c), as scikit-learn's
    seeding computes it.

    Only rows with ``gap[owner[i]] <= radius[i]`` are evaluated: block b lists
    them in ``rows[b * rows_per_block:][:n_rows[b]]``, their D^2 at the same
    positions of ``d2``. The others cannot get nearer to any candidate (see the
    section comment) and add w_i D_i^2 to each potential. ``radius = inf``
    evaluates every row. Returns the number of rows evaluated.

    ``prune=False`` evaluates every row without testing any (cheaper when
    most rows need it): ``n_rows[b] = -1`` and ``d2`` holds every row's D^2.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b, j, f
    cdef Py_ssize_t n_groups = (m + 7) // 8
    cdef Py_ssize_t total = 0
    cdef double* cv
    cdef SeedCtx c
    if m > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates per pass; got {m}")
    dtype = np.asarray(X).dtype
    cdef floating[:, :, ::1] ct = np.zeros((n_groups, d, 8), dtype=dtype)
    cdef floating[::1] hn = np.zeros(n_groups * 8, dtype=dtype)
    cdef double h
    for j in range(m):
        h = 0.0
        for f in range(d):
            ct[j // 8, f, j % 8] = candidates[j, f]
            h += <double>candidates[j, f] * <double>candidates[j, f]
        hn[j] = <floating>(0.5 * h)
    c.X = &X[0, 0]
    c.sw = &sample_weight[0]
    c.closest = &closest[0]
    c.xx = &x_sq[0]
    c.owner = &owner[0]
    c.radius = &radius[0]
    c.gap = &gap[0]
    c.n = n
    c.d = d
    c.m = m
    c.n_groups = n_groups
    c.ct = &ct[0, 0, 0]
    c.hn = &hn[0]
    c.block_pot = &block_pot[0, 0]
    c.n_blocks = n_blocks
    c.d2 = &d2[0, 0]
    c.rows = &rows[0]
    c.rows_per_block = rows_per_block
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        cv = <double*> malloc(m * GATHER * sizeof(double)) if prune else NULL
        for b in prange(n_blocks, schedule="dynamic"):
            if prune:
                n_rows[b] = _dot_block(&X[0, 0], &c, b, cv)
            else:
                _dot_block_all(&X[0, 0], &c, b)
                n_rows[b] = -1
        free(cv)
        region_leave(rc, t0)
    if not prune:
        return n
    for b in range(n_blocks):
        total += n_rows[b]
    return total


def center_gaps(
    const floating[:, ::1] candidates,     # IN  (n_candidates, n_features)
    const floating[:, ::1] centers,        # IN  (n_centers, n_features) chosen so far
    double[::1] gap,                       # OUT (>= n_centers,)
):
    """gap[a] = (1 - 1e-9) min_t ||candidates[t] - centers[a]||, in float64 with
    exact differences (for float32 data): shrunk by far more than its rounding,
    a lower bound of the exact distance."""
    cdef Py_ssize_t m = candidates.shape[0], k = centers.shape[0], d = centers.shape[1]
    cdef Py_ssize_t a, t, f
    cdef double best, acc, diff
    with nogil:
        for a in range(k):
            best = DBL_MAX
            for t in range(m):
                acc = 0.0
                for f in range(d):
                    diff = <double>candidates[t, f] - <double>centers[a, f]
                    acc += diff * diff
                best = acc if acc < best else best
            gap[a] = (1.0 - 1e-9) * sqrt(best)


def lower_to(
    double[::1] closest,                   # IN/OUT (n_samples,)
    int[::1] owner,                        # IN/OUT (n_samples,) the center that gave closest
    double[::1] radius,                    # IN/OUT (n_samples,) 2 sqrt(closest rel + slack)
    const double[::1] slack,               # IN  (n_samples,) rounding bound of a computed D^2
    double rel,                            # IN  1 + 4 eps of X's dtype
    const floating[:, ::1] d2,             # IN  (n_candidates, n_samples) from dot_potentials
    const int[::1] rows,                   # IN  (n_samples,) from dot_potentials
    const Py_ssize_t[::1] n_rows,          # IN  (n_blocks,) from dot_potentials
    Py_ssize_t t,                          # the chosen candidate
    int center,                            # its position among the chosen centers
    const double[:, ::1] cand_pot,         # IN  (n_candidates, n_blocks) from dot_potentials
    double[::1] block_pot,                 # OUT (n_blocks,)
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """closest = min(closest, D^2 to candidate t) on the rows dot_potentials
    evaluated (every row of a block with ``n_rows[b] = -1``), ``owner`` and
    ``radius`` following (the others keep theirs, bit for bit). The new
    potential is candidate t's: its block sums are copied and the total is
    summed in block order."""
    cdef Py_ssize_t n = closest.shape[0], n_blocks = block_pot.shape[0], b, j, i, start
    cdef double total = 0.0, c_, v
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            if n_rows[b] < 0:
                for i in range(start, min(n, start + rows_per_block)):
                    v = d2[t, i]
                    if v < closest[i]:
                        closest[i] = v
                        owner[i] = center
                        radius[i] = 2.0 * sqrt(v * rel + slack[i])
            else:
                for j in range(start, start + n_rows[b]):
                    i = rows[j]
                    v = d2[t, j]
                    c_ = closest[i]
                    if v < c_:
                        closest[i] = v
                        owner[i] = center
                        radius[i] = 2.0 * sqrt(v * rel + slack[i])
        region_leave(rc, t0)
    for b in range(n_blocks):
        block_pot[b] = cand_pot[t, b]
        total += block_pot[b]
    return total
