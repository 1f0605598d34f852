"""k-means++ on CSR rows without densifying them: the potential each candidate
center would give, and the squared distances lowered to the chosen one.

Candidates are dense rows, kept transposed as float64 lanes (d, LANES) with a
bitmap of their columns (``fill_lanes``): a row's nonzero in a marked column
reads LANES contiguous values, the others are skipped (they add exactly
nothing, see ``src/sparse_tile.h``). Squared distances are
||x||^2 + ||c||^2 - 2 x.c in float64, clipped at 0; potentials are summed per
fixed row block in 8 lane sums (row i in lane (i - block start) % 8) added in
a fixed order. Lowering D^2 to the chosen candidate repeats its lane's
operations (or takes its stored D^2), so its potential and the new total
agree bit for bit, and every result is the same for any thread count. The
D^2 draws themselves are ``seeding.sample_d2``.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint64_t

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport (
    FASTKM_SEED_LANES, fastkm_seed_dots_d, fastkm_seed_dots_f,
)
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave

LANES = FASTKM_SEED_LANES


cdef inline double _lane_total(const double* s) noexcept nogil:
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef inline double _sq(double xx, double cc, double dot) noexcept nogil:
    cdef double v = xx + cc - 2.0 * dot
    return v if v > 0.0 else 0.0


cdef inline void _dots(CSR X, const floating* x, Py_ssize_t i, const double* tile,
                       const uint64_t* bits, double* out) noexcept nogil:
    cdef Py_ssize_t p0 = X.indptr[i]
    if floating is float:
        fastkm_seed_dots_f(x + p0, X.indices + p0, X.indptr[i + 1] - p0, tile, bits, out)
    else:
        fastkm_seed_dots_d(x + p0, X.indices + p0, X.indptr[i + 1] - p0, tile, bits, out)


cdef void _candidates_block(
    CSR X, const floating* x, const floating* sw, const double* closest,
    const double* tile, const uint64_t* bits, const double* cc, Py_ssize_t m,
    Py_ssize_t start, Py_ssize_t end,
    double* pot, Py_ssize_t stride,      # OUT pot[t * stride]: candidate t's potential here
    double* d2, Py_ssize_t n,            # OUT d2[t * n + i] (NULL: not kept)
) noexcept nogil:
    cdef double s[FASTKM_SEED_LANES][8]
    cdef double dots[FASTKM_SEED_LANES]
    cdef Py_ssize_t i, t, r
    cdef double c_, v, w
    for t in range(FASTKM_SEED_LANES):
        for r in range(8):
            s[t][r] = 0.0
    for i in range(start, end):
        _dots(X, x, i, tile, bits, dots)
        r = (i - start) % 8
        c_ = closest[i]
        w = sw[i]
        for t in range(m):
            v = _sq(X.sq_norms[i], cc[t], dots[t])
            if d2 != NULL:
                d2[t * n + i] = v
            s[t][r] += w * (v if v < c_ else c_)
    for t in range(m):
        pot[t * stride] = _lane_total(s[t])


def candidate_potentials(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    const double[::1] closest,             # IN  (n,) current D^2
    const double[:, ::1] tile,             # IN  (d, LANES) candidates as lanes, zero elsewhere
    const uint64_t[::1] bits,              # IN  (d / 64 rounded up,) the candidates' columns
    const double[::1] cc,                  # IN  (LANES,) the candidates' ||c||^2
    Py_ssize_t n_candidates,               # lanes in use (<= LANES)
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks) per-block potentials
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
    double[:, ::1] d2=None,                # OUT (n_candidates, n) each row's D^2 to each, if given
):
    """sum_i w_i min(D_i^2, ||x_i - c_t||^2) per fixed row block, for each candidate t."""
    cdef Py_ssize_t n = X.n_rows, n_blocks = block_pot.shape[1], b
    cdef const floating* x = <const floating*>X.data
    cdef double* d2p = NULL
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4) or tile.shape[0] != X.n_cols \
            or tile.shape[1] != FASTKM_SEED_LANES or n_candidates > FASTKM_SEED_LANES \
            or bits.shape[0] * 64 < X.n_cols:
        raise ValueError("tile must be (n_features, LANES), sample_weight X's dtype")
    if d2 is not None:
        if d2.shape[0] < n_candidates or d2.shape[1] != n:
            raise ValueError("d2 must be (n_candidates, n_samples)")
        d2p = &d2[0, 0]
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            _candidates_block(X, x, &sample_weight[0], &closest[0], &tile[0, 0], &bits[0],
                              &cc[0], n_candidates, b * rows_per_block,
                              min(n, (b + 1) * rows_per_block), &block_pot[0, b], n_blocks,
                              d2p, n)
        region_leave(rc, t0)


cdef double _lower_block(
    CSR X, const floating* x, const floating* sw, double* closest,
    const double* tile, const uint64_t* bits, Py_ssize_t lane, double cc,
    Py_ssize_t start, Py_ssize_t end,
) noexcept nogil:
    cdef double s[8]
    cdef double dots[FASTKM_SEED_LANES]
    cdef Py_ssize_t i, r
    cdef double c_, v
    for r in range(8):
        s[r] = 0.0
    for i in range(start, end):
        _dots(X, x, i, tile, bits, dots)
        v = _sq(X.sq_norms[i], cc, dots[lane])
        c_ = closest[i]
        if v < c_:
            closest[i] = v
        s[(i - start) % 8] += sw[i] * (v if v < c_ else c_)
    return _lane_total(s)


def lower_closest(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    double[::1] closest,                   # IN/OUT (n,) D^2, lowered to the chosen center
    const double[:, ::1] tile,             # IN  (d, LANES) with the chosen center in lane ``lane``
    const uint64_t[::1] bits,              # IN  the tile's columns
    Py_ssize_t lane,
    double cc,                             # IN  the chosen center's ||c||^2
    double[::1] block_pot,                 # OUT (n_blocks,) the new potential per block
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """D^2 = min(D^2, ||x - c||^2) for the chosen center; returns the new total
    potential (block sums in block order), which is the candidate's potential
    from ``candidate_potentials``, bit for bit. With ``closest`` = inf, the
    first center's D^2 and potential."""
    cdef Py_ssize_t n = X.n_rows, n_blocks = block_pot.shape[0], b
    cdef const floating* x = <const floating*>X.data
    cdef double total = 0.0
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4) or tile.shape[0] != X.n_cols \
            or tile.shape[1] != FASTKM_SEED_LANES or not 0 <= lane < FASTKM_SEED_LANES \
            or bits.shape[0] * 64 < X.n_cols:
        raise ValueError("tile must be (n_features, LANES), sample_weight X's dtype")
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            block_pot[b] = _lower_block(X, x, &sample_weight[0], &closest[0], &tile[0, 0],
                                        &bits[0], lane, cc, b * rows_per_block,
                                        min(n, (b + 1) * rows_per_block))
        region_leave(rc, t0)
    for b in range(n_blocks):
        total += block_pot[b]
    return total


def lower_to_stored(
    double[::1] closest,                   # IN/OUT (n,) D^2
    const double[::1] d2,                  # IN  (n,) the chosen candidate's D^2 (candidate_potentials)
    const double[::1] cand_pot,            # IN  (n_blocks,) its potential per block
    double[::1] block_pot,                 # OUT (n_blocks,)
):
    """``lower_closest`` from the chosen candidate's stored D^2: the same values
    (min of the same numbers) and the same block sums, bit for bit."""
    cdef Py_ssize_t i, b
    cdef double total = 0.0
    with nogil:
        for i in range(closest.shape[0]):
            if d2[i] < closest[i]:
                closest[i] = d2[i]
        for b in range(block_pot.shape[0]):
            block_pot[b] = cand_pot[b]
            total += cand_pot[b]
    return total


def fill_lanes(
    CSR X,
    const Py_ssize_t[::1] rows,            # IN  (m <= LANES,) the rows to put in lanes 0 .. m-1
    double[:, ::1] tile,                   # IN/OUT (d, LANES) zero outside the rows' entries
    uint64_t[::1] bits,                    # IN/OUT (d / 64 rounded up,) their columns
    bint clear,                            # write zeros instead (undo a fill)
):
    """Put rows of X into the candidate lanes and mark their columns (or take
    them out again): only their nonzeros are touched, so a fill and a clear
    cost O(nnz of the rows)."""
    cdef Py_ssize_t t, p, i
    cdef int f
    cdef const float* x32 = <const float*>X.data
    cdef const double* x64 = <const double*>X.data
    for t in range(rows.shape[0]):
        i = rows[t]
        for p in range(X.indptr[i], X.indptr[i + 1]):
            f = X.indices[p]
            if clear:
                tile[f, t] = 0.0
                bits[f >> 6] &= ~((<uint64_t>1) << (f & 63))
            else:
                tile[f, t] = x32[p] if X.single else x64[p]
                bits[f >> 6] |= (<uint64_t>1) << (f & 63)
