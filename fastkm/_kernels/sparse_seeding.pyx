"""k-means++ on CSR rows without densifying them: the potential each candidate
center would give, and the squared distances lowered to the chosen one.

Candidates are dense rows, kept transposed as float64 lanes (d, LANES): a
row's nonzero in column f reads LANES contiguous values. Squared distances are
||x||^2 + ||c||^2 - 2 x.c in float64, clipped at 0; potentials are summed per
fixed row block in 8 lane sums (row i in lane (i - block start) % 8) added in
a fixed order. The chosen candidate's pass repeats its lane's operations, so
its potential and the new total agree bit for bit, and every result is the
same for any thread count. The D^2 draws themselves are ``seeding.sample_d2``.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport (
    FASTKM_SEED_LANES, fastkm_seed_dots2_d, fastkm_seed_dots2_f, fastkm_seed_dots_d,
    fastkm_seed_dots_f,
)
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave

LANES = FASTKM_SEED_LANES


cdef inline double _lane_total(const double* s) noexcept nogil:
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef inline double _sq(double xx, double cc, double dot) noexcept nogil:
    cdef double v = xx + cc - 2.0 * dot
    return v if v > 0.0 else 0.0


cdef inline void _dots(
    CSR X, const floating* x, Py_ssize_t i, Py_ssize_t end, const double* tile,
    double* d0, double* d1,       # OUT (LANES,) rows i and i + 1 (if i + 1 < end)
) noexcept nogil:
    # rows two at a time (independent chains); each lane's operations are the
    # same either way
    cdef Py_ssize_t p0 = X.indptr[i], p1 = X.indptr[i + 1]
    if i + 1 < end:
        if floating is float:
            fastkm_seed_dots2_f(x + p0, X.indices + p0, p1 - p0, x + p1, X.indices + p1,
                                X.indptr[i + 2] - p1, tile, d0, d1)
        else:
            fastkm_seed_dots2_d(x + p0, X.indices + p0, p1 - p0, x + p1, X.indices + p1,
                                X.indptr[i + 2] - p1, tile, d0, d1)
    elif floating is float:
        fastkm_seed_dots_f(x + p0, X.indices + p0, p1 - p0, tile, d0)
    else:
        fastkm_seed_dots_d(x + p0, X.indices + p0, p1 - p0, tile, d0)


cdef void _candidates_block(
    CSR X, const floating* x, const floating* sw, const double* closest,
    const double* tile, const double* cc, Py_ssize_t m,
    Py_ssize_t start, Py_ssize_t end,
    double* pot, Py_ssize_t stride,      # OUT pot[t * stride]: candidate t's potential here
) noexcept nogil:
    cdef double s[FASTKM_SEED_LANES][8]
    cdef double dots[2][FASTKM_SEED_LANES]
    cdef Py_ssize_t i, h, t, r, row
    cdef double c_, v, w
    for t in range(FASTKM_SEED_LANES):
        for r in range(8):
            s[t][r] = 0.0
    i = start
    while i < end:
        _dots(X, x, i, end, tile, dots[0], dots[1])
        for h in range(min(<Py_ssize_t>2, end - i)):
            row = i + h
            r = (row - start) % 8
            c_ = closest[row]
            w = sw[row]
            for t in range(m):
                v = _sq(X.sq_norms[row], cc[t], dots[h][t])
                s[t][r] += w * (v if v < c_ else c_)
        i += 2
    for t in range(m):
        pot[t * stride] = _lane_total(s[t])


def candidate_potentials(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    const double[::1] closest,             # IN  (n,) current D^2
    const double[:, ::1] tile,             # IN  (d, LANES) candidates as lanes, zero elsewhere
    const double[::1] cc,                  # IN  (LANES,) the candidates' ||c||^2
    Py_ssize_t n_candidates,               # lanes in use (<= LANES)
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks) per-block potentials
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """sum_i w_i min(D_i^2, ||x_i - c_t||^2) per fixed row block, for each candidate t."""
    cdef Py_ssize_t n = X.n_rows, n_blocks = block_pot.shape[1], b
    cdef const floating* x = <const floating*>X.data
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4) or tile.shape[0] != X.n_cols \
            or tile.shape[1] != FASTKM_SEED_LANES or n_candidates > FASTKM_SEED_LANES:
        raise ValueError("tile must be (n_features, LANES), sample_weight X's dtype")
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            _candidates_block(X, x, &sample_weight[0], &closest[0], &tile[0, 0], &cc[0],
                              n_candidates, b * rows_per_block,
                              min(n, (b + 1) * rows_per_block), &block_pot[0, b], n_blocks)
        region_leave(rc, t0)


cdef double _lower_block(
    CSR X, const floating* x, const floating* sw, double* closest,
    const double* tile, Py_ssize_t lane, double cc, Py_ssize_t start, Py_ssize_t end,
) noexcept nogil:
    cdef double s[8]
    cdef double dots[2][FASTKM_SEED_LANES]
    cdef Py_ssize_t i, h, r, row
    cdef double c_, v
    for r in range(8):
        s[r] = 0.0
    i = start
    while i < end:
        _dots(X, x, i, end, tile, dots[0], dots[1])
        for h in range(min(<Py_ssize_t>2, end - i)):
            row = i + h
            v = _sq(X.sq_norms[row], cc, dots[h][lane])
            c_ = closest[row]
            if v < c_:
                closest[row] = v
            s[(row - start) % 8] += sw[row] * (v if v < c_ else c_)
        i += 2
    return _lane_total(s)


def lower_closest(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    double[::1] closest,                   # IN/OUT (n,) D^2, lowered to the chosen center
    const double[:, ::1] tile,             # IN  (d, LANES) with the chosen center in lane ``lane``
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
            or tile.shape[1] != FASTKM_SEED_LANES or not 0 <= lane < FASTKM_SEED_LANES:
        raise ValueError("tile must be (n_features, LANES), sample_weight X's dtype")
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            block_pot[b] = _lower_block(X, x, &sample_weight[0], &closest[0], &tile[0, 0],
                                        lane, cc, b * rows_per_block,
                                        min(n, (b + 1) * rows_per_block))
        region_leave(rc, t0)
    for b in range(n_blocks):
        total += block_pot[b]
    return total


def fill_lanes(
    CSR X,
    const Py_ssize_t[::1] rows,            # IN  (m <= LANES,) the rows to put in lanes 0 .. m-1
    double[:, ::1] tile,                   # IN/OUT (d, LANES) zero outside the rows' entries
    bint clear,                            # write zeros instead (undo a fill)
):
    """Put rows of X into the candidate lanes (or take them out again): only
    their nonzeros are touched, so a fill and a clear cost O(nnz of the rows)."""
    cdef Py_ssize_t t, p, i
    cdef const float* x32 = <const float*>X.data
    cdef const double* x64 = <const double*>X.data
    for t in range(rows.shape[0]):
        i = rows[t]
        for p in range(X.indptr[i], X.indptr[i + 1]):
            if clear:
                tile[X.indices[p], t] = 0.0
            elif X.single:
                tile[X.indices[p], t] = x32[p]
            else:
                tile[X.indices[p], t] = x64[p]
