"""Greedy k-means++ seeding kernels.

The Python layer draws the random numbers; these kernels do the O(n) work of
each step in parallel: distances to candidate centers, the potential each
candidate would give, and the inverse-CDF lookup of D^2 sampling. Potentials are
summed per fixed row block and merged in block order (thread-count independent).
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from fastkm._common cimport (
    CHUNK, FASTKM_MADD, prefetch_row, sq_dist_chunk_to_center, transpose_chunk,
)


cdef enum:
    LANES = 8   # independent partial sums: the reductions vectorise without reassociation


cdef inline double _lane_total(const double* s) noexcept nogil:
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef inline double _potential_chunk(
    const floating* acc, const double* closest, const floating* sw, Py_ssize_t rows,
) noexcept nogil:
    # sum_i w_i min(D_i^2, acc_i) with LANES partial sums in a fixed order (row
    # i goes to lane i % LANES): a dependency chain per lane instead of one per
    # chunk, and the same result for any thread count.
    cdef double s[8]
    cdef Py_ssize_t i, l
    cdef double v, c
    for l in range(LANES):
        s[l] = 0.0
    i = 0
    while i + LANES <= rows:
        for l in range(LANES):
            v = acc[i + l]
            c = closest[i + l]
            s[l] += <double>sw[i + l] * (v if v < c else c)
        i += LANES
    for l in range(rows - i):
        v = acc[i + l]
        c = closest[i + l]
        s[l] += <double>sw[i + l] * (v if v < c else c)
    return _lane_total(s)


cdef inline floating* _chunk_t(
    const floating* X, const floating* xt_all, Py_ssize_t c0, Py_ssize_t rows, Py_ssize_t d,
    floating* scratch,
) noexcept nogil:
    # the chunk starting at row c0, transposed: from the whole-X copy when the
    # caller made one (few features), else into this thread's scratch
    if xt_all != NULL:
        return <floating*>(xt_all + (c0 // CHUNK) * d * CHUNK)
    transpose_chunk(X + c0 * d, rows, d, scratch)
    return scratch


def transpose_chunks(
    const floating[:, ::1] X,      # IN  (n_samples, n_features)
    floating[:, :, ::1] out,       # OUT (n_chunks, n_features, CHUNK)
    int n_threads,
):
    """X in the tile layout of the seeding kernels, once for the whole seeding."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], ch, start
    for ch in prange(out.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        start = ch * CHUNK
        transpose_chunk(&X[start, 0], min(<Py_ssize_t>CHUNK, n - start), d, &out[ch, 0, 0])


cdef inline double _potential_fused(
    const floating* xt, Py_ssize_t rows, Py_ssize_t d, const floating* c,
    const double* closest, const floating* sw,
) noexcept nogil:
    # _potential_chunk of sq_dist_chunk_to_center's distances, fused in one pass
    # (same operations, same order: the same bits). Inlined with a literal d, the
    # feature loop unrolls and the row loop vectorises.
    cdef double s[8]
    cdef Py_ssize_t i, l, f
    cdef floating t, dd
    cdef double c_
    for l in range(LANES):
        s[l] = 0.0
    i = 0
    while i + LANES <= rows:
        for l in range(LANES):
            t = xt[i + l] - c[0]
            dd = t * t
            for f in range(1, d):
                t = xt[f * CHUNK + i + l] - c[f]
                dd = <floating>FASTKM_MADD(t, t, dd)
            c_ = closest[i + l]
            s[l] += <double>sw[i + l] * (dd if dd < c_ else c_)
        i += LANES
    for l in range(rows - i):
        t = xt[i + l] - c[0]
        dd = t * t
        for f in range(1, d):
            t = xt[f * CHUNK + i + l] - c[f]
            dd = <floating>FASTKM_MADD(t, t, dd)
        c_ = closest[i + l]
        s[l] += <double>sw[i + l] * (dd if dd < c_ else c_)
    return _lane_total(s)


cdef inline double _potential_dispatch(
    const floating* xt, Py_ssize_t rows, Py_ssize_t d, const floating* c,
    const double* closest, const floating* sw, floating* acc,
) noexcept nogil:
    if d == 1:
        return _potential_fused(xt, rows, 1, c, closest, sw)
    if d == 2:
        return _potential_fused(xt, rows, 2, c, closest, sw)
    if d == 3:
        return _potential_fused(xt, rows, 3, c, closest, sw)
    if d == 4:
        return _potential_fused(xt, rows, 4, c, closest, sw)
    sq_dist_chunk_to_center(xt, rows, d, c, acc)
    return _potential_chunk(acc, closest, sw, rows)


cdef void _candidates_block(
    const floating* X, const floating* sw, const double* closest,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* candidates, Py_ssize_t m,
    double* pot,          # OUT (m,) this block's potential for each candidate (stride n_blocks)
    Py_ssize_t stride,
    const floating* xt_all, floating* xt, floating* acc,
) noexcept nogil:
    cdef Py_ssize_t c0, rows, t
    cdef floating* tile
    for t in range(m):
        pot[t * stride] = 0.0
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        tile = _chunk_t(X, xt_all, c0, rows, d, xt)
        for t in range(m):
            pot[t * stride] += _potential_dispatch(tile, rows, d, candidates + t * d,
                                                   closest + c0, sw + c0, acc)
        c0 += rows


def candidate_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) current D^2
    const floating[:, ::1] candidates,     # IN  (n_candidates, n_features)
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    Py_ssize_t rows_per_block,
    int n_threads,
    const floating[:, :, ::1] xt_all=None, # IN  optional ``transpose_chunks(X)``
):
    """Per-block potential sum_i w_i min(D_i^2, ||x_i - c_t||^2) for each candidate t."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b, start, end
    cdef floating* xt
    cdef floating* acc
    cdef const floating* pre = NULL
    if xt_all is not None:
        pre = &xt_all[0, 0, 0]
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            _candidates_block(&X[0, 0], &sample_weight[0], &closest[0], start, end, d,
                              &candidates[0, 0], m, &block_pot[0, b], n_blocks, pre, xt, acc)
        free(xt)
        free(acc)


cdef inline void _lower_fused(
    const floating* xt, Py_ssize_t rows, Py_ssize_t d, const floating* c, double* closest,
) noexcept nogil:
    # closest = min(closest, ||x - c||^2), distances as sq_dist_chunk_to_center
    cdef Py_ssize_t i, f
    cdef floating t, dd
    cdef double c_
    for i in range(rows):
        t = xt[i] - c[0]
        dd = t * t
        for f in range(1, d):
            t = xt[f * CHUNK + i] - c[f]
            dd = <floating>FASTKM_MADD(t, t, dd)
        c_ = closest[i]
        closest[i] = dd if dd < c_ else c_


cdef double _update_block(
    const floating* X, const floating* sw, double* closest,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* center, const floating* xt_all, floating* xt, floating* acc,
) noexcept nogil:
    cdef Py_ssize_t c0, rows, i
    cdef double s = 0.0
    cdef floating* tile
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        tile = _chunk_t(X, xt_all, c0, rows, d, xt)
        # the same lane-ordered sum as the candidates' potentials, so that the
        # chosen candidate's potential and the new total agree bit for bit
        s += _potential_dispatch(tile, rows, d, center, closest + c0, sw + c0, acc)
        if d == 1:
            _lower_fused(tile, rows, 1, center, closest + c0)
        elif d == 2:
            _lower_fused(tile, rows, 2, center, closest + c0)
        elif d == 3:
            _lower_fused(tile, rows, 3, center, closest + c0)
        elif d == 4:
            _lower_fused(tile, rows, 4, center, closest + c0)
        else:
            _lower_fused(tile, rows, d, center, closest + c0)
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
    const floating[:, :, ::1] xt_all=None, # IN  optional ``transpose_chunks(X)``
):
    """Lower D^2 to the new center; return the total potential (block-ordered sum)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t b, start, end
    cdef floating* xt
    cdef floating* acc
    cdef double total = 0.0
    cdef const floating* pre = NULL
    if xt_all is not None:
        pre = &xt_all[0, 0, 0]
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            block_pot[b] = _update_block(&X[0, 0], &sample_weight[0], &closest[0],
                                         start, end, d, &center[0], pre, xt, acc)
        free(xt)
        free(acc)
    for b in range(n_blocks):
        total += block_pot[b]
    return total


def sample_d2(
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) or (n_distinct,) with ``inverse``
    const double[::1] block_pot,           # IN  (n_blocks,)
    Py_ssize_t rows_per_block,
    const double[::1] targets,             # IN  (n_draws,) uniform draws times the potential
    Py_ssize_t[::1] out,                   # OUT (n_draws,)
    const int[::1] inverse=None,           # IN  (n_samples,) row -> distinct row of ``closest``
):
    """Inverse CDF of D^2 sampling: for each target r, the first index whose
    cumulative weighted D^2 reaches r (as ``searchsorted(cumsum, r)``). Walks
    block totals first, then one block.

    With ``inverse``, D^2 is kept per distinct row and the walk is over the rows
    of the full data: the same draw as without deduplication.
    """
    cdef Py_ssize_t n = sample_weight.shape[0], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t t, b, i, end
    cdef double r, cum
    cdef const int* inv = NULL
    if inverse is not None:
        inv = &inverse[0]
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
                cum += sample_weight[i] * closest[inv[i] if inv != NULL else i]
                if cum >= r:
                    break
                i += 1
            if i == end:
                # rounding: block totals are lane-ordered sums, this walk is
                # sequential. Take the block's last row that can be drawn.
                i = end - 1
                while i > b * rows_per_block and not (
                        sample_weight[i] * closest[inv[i] if inv != NULL else i] > 0.0):
                    i -= 1
            out[t] = i


def mapped_potentials(
    const floating[::1] sample_weight,     # IN  (n_samples,) weights of the full data
    const int[::1] inverse,                # IN  (n_samples,) row -> distinct row
    const double[::1] closest,             # IN  (n_distinct,) D^2 of each distinct row
    double[::1] block_pot,                 # OUT (n_blocks,) per block of the full data's rows
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """sum_i w_i D^2[inverse[i]] per row block of the full data, and the total:
    the block totals ``sample_d2`` needs to draw as it would without
    deduplication."""
    cdef Py_ssize_t n = inverse.shape[0], n_blocks = block_pot.shape[0], b, start, end
    cdef double total = 0.0
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_pot[b] = _mapped_block(&sample_weight[0], &inverse[0], &closest[0], start, end)
    for b in range(n_blocks):
        total += block_pot[b]
    return total


cdef double _mapped_block(
    const floating* sw, const int* inv, const double* closest, Py_ssize_t start, Py_ssize_t end,
) noexcept nogil:
    cdef double s[8]
    cdef Py_ssize_t i, l
    for l in range(LANES):
        s[l] = 0.0
    i = start
    while i + LANES <= end:
        for l in range(LANES):
            s[l] += <double>sw[i + l] * closest[inv[i + l]]
        i += LANES
    for l in range(end - i):
        s[l] += <double>sw[i + l] * closest[inv[i + l]]
    return _lane_total(s)


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
# rounding of the computed D^2 (``_seeding_slack`` in _kmeans.py), so that a
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
    CAND_LANES = 16       # candidates per pass (2 + ln k <= 16 for any k below a million)
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


cdef extern from *:
    """
    /* The 8 rows x 8 candidates tile of _half_dots in AVX/FMA intrinsics, one
       vector of candidates per row. GCC's own vectorisation of the Cython loop
       pairs rows into one wide vector and spends a shuffle per pair and feature
       on it. Each lane is the same chain of fused multiply-adds from the same
       start in feature order: fnmadd(x, c, a) = fma(-x, c, a) with one
       rounding, so the bits are the scalar loop's on FMA targets. */
    #if defined(__AVX__) && defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    #define FASTKM_TILE 1
    #define FASTKM_ROWS8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
    static inline void fastkm_half_dots_f(const float** p, Py_ssize_t d, const float* ct,
                                          const float* hn, float* out) {
        __m256 h = _mm256_loadu_ps(hn), c;
        Py_ssize_t f;
        #define FASTKM_DECL(r) __m256 a##r = h; const float* p##r = p[r];
        FASTKM_ROWS8(FASTKM_DECL)
        #undef FASTKM_DECL
        for (f = 0; f < d; f++) {
            c = _mm256_loadu_ps(ct + f * 8);
            #define FASTKM_FMA(r) a##r = _mm256_fnmadd_ps(_mm256_broadcast_ss(p##r + f), c, a##r);
            FASTKM_ROWS8(FASTKM_FMA)
            #undef FASTKM_FMA
        }
        #define FASTKM_STORE(r) _mm256_storeu_ps(out + 8 * r, a##r);
        FASTKM_ROWS8(FASTKM_STORE)
        #undef FASTKM_STORE
    }
    static inline void fastkm_half_dots_d(const double** p, Py_ssize_t d, const double* ct,
                                          const double* hn, double* out) {
        Py_ssize_t f;
    #if defined(__AVX512F__)
        __m512d h = _mm512_loadu_pd(hn), c;
        #define FASTKM_DECL(r) __m512d a##r = h; const double* p##r = p[r];
        FASTKM_ROWS8(FASTKM_DECL)
        #undef FASTKM_DECL
        for (f = 0; f < d; f++) {
            c = _mm512_loadu_pd(ct + f * 8);
            #define FASTKM_FMA(r) a##r = _mm512_fnmadd_pd(_mm512_set1_pd(p##r[f]), c, a##r);
            FASTKM_ROWS8(FASTKM_FMA)
            #undef FASTKM_FMA
        }
        #define FASTKM_STORE(r) _mm512_storeu_pd(out + 8 * r, a##r);
        FASTKM_ROWS8(FASTKM_STORE)
        #undef FASTKM_STORE
    #else
        __m256d hl = _mm256_loadu_pd(hn), hh = _mm256_loadu_pd(hn + 4), cl, ch, x;
        #define FASTKM_DECL(r) __m256d l##r = hl, u##r = hh; const double* p##r = p[r];
        FASTKM_ROWS8(FASTKM_DECL)
        #undef FASTKM_DECL
        for (f = 0; f < d; f++) {
            cl = _mm256_loadu_pd(ct + f * 8);
            ch = _mm256_loadu_pd(ct + f * 8 + 4);
            #define FASTKM_FMA(r) x = _mm256_broadcast_sd(p##r + f); \
                l##r = _mm256_fnmadd_pd(x, cl, l##r); u##r = _mm256_fnmadd_pd(x, ch, u##r);
            FASTKM_ROWS8(FASTKM_FMA)
            #undef FASTKM_FMA
        }
        #define FASTKM_STORE(r) _mm256_storeu_pd(out + 8 * r, l##r); \
            _mm256_storeu_pd(out + 8 * r + 4, u##r);
        FASTKM_ROWS8(FASTKM_STORE)
        #undef FASTKM_STORE
    #endif
    }
    #else
    #define FASTKM_TILE 0
    #define fastkm_half_dots_f(p, d, ct, hn, out) ((void)0)
    #define fastkm_half_dots_d(p, d, ct, hn, out) ((void)0)
    #endif
    """
    bint FASTKM_TILE
    void fastkm_half_dots_f(const float** p, Py_ssize_t d, const float* ct, const float* hn,
                            float* out) noexcept nogil
    void fastkm_half_dots_d(const double** p, Py_ssize_t d, const double* ct, const double* hn,
                            double* out) noexcept nogil


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


cdef extern from *:
    """
    /* The per-row epilogue of the seeding tile for 8 candidates of float64 data
       (float32 has fastkm_epi_rows8_f), in GCC/Clang
       vector types (the scalar loop compiles to compare-and-branch code):
       D^2 = (float) max(2 h + xx, 0), and lane sum s += w * min(D^2, c). The
       same operations per candidate as the scalar loop, so the same bits: 2 h
       is exact, the max and min are selections, the conversions round the
       same way, and s + w * m is contracted to an FMA exactly where the scalar
       statement is (default -ffp-contract=fast on FMA targets). */
    #if (defined(__GNUC__) && __GNUC__ >= 9) || defined(__clang__)
    #define FASTKM_EPI 1
    typedef double fastkm_ed8 __attribute__((vector_size(64), aligned(8)));
    typedef long long fastkm_el8 __attribute__((vector_size(64), aligned(8)));
    #define FASTKM_EPILOGUE8(NAME, T, VT)                                         \
    static inline void NAME(const T* o, double xi, double c, double w, T* v,      \
                            double* s) {                                          \
        VT ov; fastkm_ed8 h, hv, sv, cv; fastkm_el8 keep;                         \
        memcpy(&ov, o, sizeof(VT));                                               \
        h = __builtin_convertvector(ov, fastkm_ed8) * 2.0 + xi;                   \
        keep = h > 0.0;                                                           \
        h = (fastkm_ed8)((fastkm_el8)h & keep);                                   \
        ov = __builtin_convertvector(h, VT);                                      \
        memcpy(v, &ov, sizeof(VT));                                               \
        hv = __builtin_convertvector(ov, fastkm_ed8);                             \
        cv = (fastkm_ed8){0} + c;                                                 \
        keep = hv < cv;                                                           \
        hv = (fastkm_ed8)(((fastkm_el8)hv & keep) | ((fastkm_el8)cv & ~keep));    \
        memcpy(&sv, s, sizeof(sv));                                               \
        sv = sv + w * hv;                                                         \
        memcpy(s, &sv, sizeof(sv));                                               \
    }
    FASTKM_EPILOGUE8(fastkm_epilogue8_d, double, fastkm_ed8)
    #else
    #define FASTKM_EPI 0
    #define fastkm_epilogue8_d(o, xi, c, w, v, s) ((void)0)
    #endif
    """
    bint FASTKM_EPI
    void fastkm_epilogue8_d(const double* o, double xi, double c, double w, double* v,
                            double* s) noexcept nogil


cdef extern from *:
    """
    /* The seeding epilogue for float32 data with the rows as vector lanes: the
       8 x 8 tile (rows x candidates) is transposed in registers, then each
       candidate's 8 rows go through the scalar loop's operations at once:
       D^2 = (float) max(2 h + xx, 0) (2 h is exact, so fma(2, h, xx) rounds as
       the scalar 2 h + xx), stored as 8 consecutive floats of d2, and the lane
       sums s[t][r] = fma(w, min(D^2, closest), s[t][r]) (contracted as the
       scalar statement is on FMA targets). MAXPD/MINPD return their second
       operand on NaN or equal zeros: exactly the scalar selections h > 0 ? h : 0
       and v < c ? v : c. Only the m real candidates are computed. */
    #if defined(__AVX__) && defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    #define FASTKM_EPI_T 1
    static inline void fastkm_transpose8(__m256* r) {
        __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
        __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
        __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
        __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
        __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
        r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
        r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
        r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
    }
    static inline void fastkm_epi_rows8_f(const float* out, Py_ssize_t m, const double* xx,
                                          const double* cl, const float* sw, float* d2,
                                          Py_ssize_t n, double* s) {
        __m256 t[8];
        Py_ssize_t j;
        for (j = 0; j < 8; j++) t[j] = _mm256_loadu_ps(out + 8 * j);
        fastkm_transpose8(t);
    #if defined(__AVX512F__)
        __m512d xi = _mm512_loadu_pd(xx), c = _mm512_loadu_pd(cl);
        __m512d w = _mm512_cvtps_pd(_mm256_loadu_ps(sw)), z = _mm512_setzero_pd();
        __m512d two = _mm512_set1_pd(2.0), h;
        __m256 v;
        for (j = 0; j < m; j++) {
            h = _mm512_max_pd(_mm512_fmadd_pd(two, _mm512_cvtps_pd(t[j]), xi), z);
            v = _mm512_cvtpd_ps(h);
            _mm256_storeu_ps(d2 + j * n, v);
            h = _mm512_min_pd(_mm512_cvtps_pd(v), c);
            _mm512_storeu_pd(s + 8 * j, _mm512_fmadd_pd(w, h, _mm512_loadu_pd(s + 8 * j)));
        }
    #else
        __m256d xl = _mm256_loadu_pd(xx), xh = _mm256_loadu_pd(xx + 4);
        __m256d cl4 = _mm256_loadu_pd(cl), ch4 = _mm256_loadu_pd(cl + 4);
        __m128 w4l = _mm_loadu_ps(sw), w4h = _mm_loadu_ps(sw + 4);
        __m256d wl = _mm256_cvtps_pd(w4l), wh = _mm256_cvtps_pd(w4h), z = _mm256_setzero_pd();
        __m256d two = _mm256_set1_pd(2.0), hl, hh;
        __m128 vl, vh;
        for (j = 0; j < m; j++) {
            hl = _mm256_max_pd(_mm256_fmadd_pd(two, _mm256_cvtps_pd(_mm256_castps256_ps128(t[j])), xl), z);
            hh = _mm256_max_pd(_mm256_fmadd_pd(two, _mm256_cvtps_pd(_mm256_extractf128_ps(t[j], 1)), xh), z);
            vl = _mm256_cvtpd_ps(hl);
            vh = _mm256_cvtpd_ps(hh);
            _mm_storeu_ps(d2 + j * n, vl);
            _mm_storeu_ps(d2 + j * n + 4, vh);
            hl = _mm256_min_pd(_mm256_cvtps_pd(vl), cl4);
            hh = _mm256_min_pd(_mm256_cvtps_pd(vh), ch4);
            _mm256_storeu_pd(s + 8 * j, _mm256_fmadd_pd(wl, hl, _mm256_loadu_pd(s + 8 * j)));
            _mm256_storeu_pd(s + 8 * j + 4, _mm256_fmadd_pd(wh, hh, _mm256_loadu_pd(s + 8 * j + 4)));
        }
    #endif
    }
    #else
    #define FASTKM_EPI_T 0
    #define fastkm_epi_rows8_f(out, m, xx, cl, sw, d2, n, s) ((void)0)
    #endif
    """
    bint FASTKM_EPI_T
    void fastkm_epi_rows8_f(const float* out, Py_ssize_t m, const double* xx, const double* cl,
                            const float* sw, float* d2, Py_ssize_t n, double* s) noexcept nogil


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


cdef void _dot_block_all(
    const floating* X, const floating* sw, const double* closest, const double* xx,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* ct, const floating* hn, Py_ssize_t m, Py_ssize_t n_groups,
    double* pot, Py_ssize_t stride,    # OUT (m,) this block's potential of each candidate
    floating* d2, Py_ssize_t n,        # OUT (m, n) every D^2 to every candidate
) noexcept nogil:
    # every row, in order: the kernel without pruning
    cdef floating out[128]
    cdef double s[16 * 8]
    cdef const floating* p[8]
    cdef Py_ssize_t i0, r, t, nr, sr, st
    _sum_layout(X, &sr, &st)
    for t in range(16 * 8):
        s[t] = 0.0
    i0 = start
    while i0 < end:
        nr = min(<Py_ssize_t>ROW_GROUP, end - i0)
        for r in range(ROW_GROUP):
            # a short group re-reads its last row; only real rows are used
            p[r] = X + min(i0 + r, end - 1) * d
        _tile(p, d, ct, hn, n_groups, out)
        _dense_rows(out, n_groups, m, nr, xx + i0, closest + i0, sw + i0, d2 + i0, n, s)
        i0 += nr
    for t in range(m):
        pot[t * stride] = _lane_sum(s, t, sr, st)


cdef Py_ssize_t _dot_block(
    const floating* X, const floating* sw, const double* closest, const double* xx,
    const int* owner, const double* radius, const double* gap,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* ct, const floating* hn, Py_ssize_t m, Py_ssize_t n_groups,
    double* pot, Py_ssize_t stride,    # OUT (m,) this block's potential of each candidate
    floating* d2, Py_ssize_t n,        # OUT (m, n) D^2 of the j-th evaluated row at start + j
    int* rows,                         # OUT (n,) the evaluated rows, listed from start
    double* cv,                        # scratch (m, GATHER)
) noexcept nogil:
    cdef floating out[128]
    cdef double s[16 * 8]
    cdef double lane[8]
    cdef double xr[8]
    cdef double cr[8]
    cdef Py_ssize_t jr[8]
    cdef const floating* p[8]
    cdef Py_ssize_t c0, nc, i, i0, j, g, r, t, nr, q0, nq, total = 0, sr, st
    cdef double h
    cdef floating v
    cdef int e
    cdef bint dense
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
            e = gap[owner[i]] <= radius[i]
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
        pot[t * stride] = _lane_sum(s, t, sr, st)
    return total


def dot_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) current D^2
    const double[::1] x_sq,                # IN  (n_samples,) ||x||^2
    const floating[:, ::1] candidates,     # IN  (n_candidates <= 16, n_features)
    const int[::1] owner,                  # IN  (n_samples,) the chosen center that gave D^2
    const double[::1] radius,              # IN  (n_samples,) pruning radius, see ``lower_to``
    const double[::1] gap,                 # IN  (n_centers,) lower bound of min_t ||c_t - center||
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    floating[:, ::1] d2,                   # OUT (n_candidates, n_samples) D^2 of evaluated rows
    int[::1] rows,                         # OUT (n_samples,) evaluated rows, per block
    Py_ssize_t[::1] n_rows,                # OUT (n_blocks,) how many rows each block evaluated
    Py_ssize_t rows_per_block,
    int n_threads,
    bint prune=True,
):
    """Many features: ``candidate_potentials`` through dot products (8 rows x 8
    candidates in registers, as a GEMM micro-kernel, without repacking X),
    keeping the D^2 so that choosing a candidate needs no second pass
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
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b, start, end, j, f
    cdef Py_ssize_t n_groups = (m + 7) // 8
    cdef Py_ssize_t total = 0
    cdef double* cv
    if m > CAND_LANES:
        raise ValueError(f"at most {CAND_LANES} candidates per pass; got {m}")
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
    if not prune:
        for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            _dot_block_all(&X[0, 0], &sample_weight[0], &closest[0], &x_sq[0], start, end, d,
                           &ct[0, 0, 0], &hn[0], m, n_groups, &block_pot[0, b], n_blocks,
                           &d2[0, 0], n)
            n_rows[b] = -1
        return n
    with nogil, parallel(num_threads=n_threads):
        cv = <double*> malloc(m * GATHER * sizeof(double))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            n_rows[b] = _dot_block(&X[0, 0], &sample_weight[0], &closest[0], &x_sq[0],
                                   &owner[0], &radius[0], &gap[0], start, end, d,
                                   &ct[0, 0, 0], &hn[0], m, n_groups, &block_pot[0, b], n_blocks,
                                   &d2[0, 0], n, &rows[0], cv)
        free(cv)
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
    int n_threads,
):
    """closest = min(closest, D^2 to candidate t) on the rows dot_potentials
    evaluated (every row of a block with ``n_rows[b] = -1``), ``owner`` and
    ``radius`` following (the others keep theirs, bit for bit). The new
    potential is candidate t's: its block sums are copied and the total is
    summed in block order."""
    cdef Py_ssize_t n = closest.shape[0], n_blocks = block_pot.shape[0], b, j, i, start
    cdef double total = 0.0, c_, v
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
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
    for b in range(n_blocks):
        block_pot[b] = cand_pot[t, b]
        total += block_pot[b]
    return total
