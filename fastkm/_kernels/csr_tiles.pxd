# The arithmetic of CSR rows against dense centers kept in tiles (n_tiles, d,
# KT) of KT transposed centers (src/sparse_tile.h): one rounding order for a
# comparison value, the scan of a list of rows over every tile, the one-lane
# gather, and the rounding bounds that make the sparse bounds exact.
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport uint64_t

from cython cimport floating

from fastkm._kernels.numerics cimport rounding_bound

cdef extern from "sparse_tile.h":
    enum:
        FASTKM_SKT_D
        FASTKM_SKT_F
        FASTKM_SEED_LANES
    void fastkm_row_tile_d(const double* x, const int* ind, Py_ssize_t m, const double* ct,
                           const double* hn, double* out) noexcept nogil
    void fastkm_row_tile_f(const float* x, const int* ind, Py_ssize_t m, const float* ct,
                           const float* hn, float* out) noexcept nogil
    void fastkm_row_tile2_d(const double* x0, const int* i0, Py_ssize_t m0, const double* x1,
                            const int* i1, Py_ssize_t m1, const double* ct, const double* hn,
                            double* out0, double* out1) noexcept nogil
    void fastkm_row_tile2_f(const float* x0, const int* i0, Py_ssize_t m0, const float* x1,
                            const int* i1, Py_ssize_t m1, const float* ct, const float* hn,
                            float* out0, float* out1) noexcept nogil
    double fastkm_lane_d(const double* x, const int* ind, Py_ssize_t m, const double* ct_lane,
                         double hn, double* dot) noexcept nogil
    float fastkm_lane_f(const float* x, const int* ind, Py_ssize_t m, const float* ct_lane,
                        float hn, double* dot) noexcept nogil
    enum:
        FASTKM_GATHER
    void fastkm_lanes_d(const double* x, const int* ind, Py_ssize_t m,
                        const double* const* lane_ptr, const double* hn, int count, double* vals,
                        double* dots) noexcept nogil
    void fastkm_lanes_f(const float* x, const int* ind, Py_ssize_t m,
                        const float* const* lane_ptr, const float* hn, int count, float* vals,
                        double* dots) noexcept nogil
    double fastkm_dot_lane_d(const double* x, const int* ind, Py_ssize_t m,
                             const double* ct_lane) noexcept nogil
    double fastkm_dot_lane_f(const float* x, const int* ind, Py_ssize_t m,
                             const float* ct_lane) noexcept nogil
    void fastkm_seed_dots_d(const double* x, const int* ind, Py_ssize_t m, const double* tile,
                            const uint64_t* bits, double* out) noexcept nogil
    void fastkm_seed_dots_f(const float* x, const int* ind, Py_ssize_t m, const double* tile,
                            const uint64_t* bits, double* out) noexcept nogil
    void fastkm_gram_4x8(const double* c, Py_ssize_t rows, Py_ssize_t kp, Py_ssize_t a0,
                         Py_ssize_t b0, double* g, Py_ssize_t ldg) noexcept nogil


cdef inline Py_ssize_t tile_width(bint single) noexcept nogil:
    # KT: centers per tile for float32 / float64 values
    return FASTKM_SKT_F if single else FASTKM_SKT_D


cdef inline void row_values(
    const floating* x, const int* ind, Py_ssize_t m,   # IN  one row's values and columns
    const floating* ct,           # IN  (d, KT) one tile
    const floating* hn,           # IN  (KT,) its 0.5 ||c||^2
    floating* out,                # OUT (KT,) the row's comparison values
) noexcept nogil:
    if floating is float:
        fastkm_row_tile_f(x, ind, m, ct, hn, out)
    else:
        fastkm_row_tile_d(x, ind, m, ct, hn, out)


cdef inline floating lane_value(
    const floating* x, const int* ind, Py_ssize_t m,
    const floating* ct_lane,      # IN  one center: a tile plus its lane (stride KT)
    floating hn,
    double* dot,                  # OUT x.c in float64
) noexcept nogil:
    # row_values' value for one center, bit for bit, and x.c in float64
    if floating is float:
        return fastkm_lane_f(x, ind, m, ct_lane, hn, dot)
    else:
        return fastkm_lane_d(x, ind, m, ct_lane, hn, dot)


cdef inline void lanes_values(
    const floating* x, const int* ind, Py_ssize_t m,
    const floating* const* lane_ptr,   # IN  (count,) each center's tile + lane
    const floating* hn,                # IN  (count,) their 0.5 ||c||^2
    int count,                         # <= FASTKM_GATHER
    floating* vals,                    # OUT (count,) lane_value of each, bit for bit
    double* dots,                      # OUT (count,) x.c in float64
) noexcept nogil:
    # up to FASTKM_GATHER centers of one row at once (independent chains)
    if floating is float:
        fastkm_lanes_f(x, ind, m, lane_ptr, hn, count, vals, dots)
    else:
        fastkm_lanes_d(x, ind, m, lane_ptr, hn, count, vals, dots)


cdef inline double dot_lane(const floating* x, const int* ind, Py_ssize_t m,
                            const floating* ct_lane) noexcept nogil:
    # x.c in float64, for distance bounds only (not Lloyd's rounding order)
    if floating is float:
        return fastkm_dot_lane_f(x, ind, m, ct_lane)
    else:
        return fastkm_dot_lane_d(x, ind, m, ct_lane)


cdef inline double value_error(Py_ssize_t m, Py_ssize_t d, bint single, double xx,
                               double cmax) noexcept nogil:
    # A bound on |(||x||^2 + 2 v) - ||x - c||^2| for a row of m nonzeros and
    # any center with ||c||^2 <= cmax, v its comparison value. v starts from
    # hn = fl(0.5 fl64(||c||^2)) (rounding u, plus float64's d-term norm) and
    # adds m products with one rounding each: |v - (0.5||c||^2 - x.c)| <=
    # (gamma_m + u) (0.5||c||^2 + sum|x_p c_p|) + gamma64_d ||c||^2 / 2, and
    # sum|x_p c_p| <= (||x||^2 + ||c||^2) / 2. Doubled, that is at most
    # (m + 2) eps (xx + cmax) + d eps64 cmax; rounding_bound's 8 (m + 4) eps
    # leaves room for the float64 arithmetic on the bounds themselves.
    # The error is absolute: the expansion cancels, so it does not shrink with
    # the distance (docs/design.md, "Sparse input").
    return rounding_bound(m, single) * (xx + cmax) + rounding_bound(d, False) * cmax


cdef inline double dist_error(Py_ssize_t m, Py_ssize_t d, double xx, double cn) noexcept nogil:
    # A bound on the error of ||x||^2 + ||c||^2 - 2 x.c from the float64 dot of a
    # row of m nonzeros (products of float32 values are exact in float64)
    return rounding_bound(m + 1, False) * (xx + cn) + rounding_bound(d, False) * cn


cdef inline double upper_dist(double xx, double cn, double dot, double err) noexcept nogil:
    # an upper bound on ||x - c|| from the float64 dot
    cdef double v = xx + cn - 2.0 * dot + err
    return sqrt(v) if v > 0.0 else 0.0


cdef inline double lower_dist(double xx, double cn, double dot, double err) noexcept nogil:
    # a lower bound on ||x - c|| from the float64 dot
    cdef double v = xx + cn - 2.0 * dot - err
    return sqrt(v) if v > 0.0 else 0.0


cdef inline double lower_from_value(double v, double xx, double err) noexcept nogil:
    # a lower bound on ||x - c|| from a comparison value (err: value_error)
    cdef double s = 2.0 * v + xx - err
    return sqrt(s) if s > 0.0 else 0.0


cdef inline void _take(
    const floating* vals, Py_ssize_t j0, Py_ssize_t lanes, bint top2,
    floating* best, int* arg, floating* second, int* arg2,   # IN/OUT one row's running top 2
) noexcept nogil:
    # Lloyd's rule: the smallest value, the lowest index among equal ones
    # (strict < in increasing center order)
    cdef Py_ssize_t l
    cdef floating v, b = best[0], s = second[0]
    cdef int a = arg[0], a2 = arg2[0]
    for l in range(lanes):
        v = vals[l]
        if v < b:
            if top2:
                s = b
                a2 = a
            b = v
            a = <int>(j0 + l)
        elif top2 and v < s:
            s = v
            a2 = <int>(j0 + l)
    best[0] = b
    arg[0] = a
    second[0] = s
    arg2[0] = a2


cdef inline void init_best(Py_ssize_t count, floating* best, int* arg, floating* second,
                           int* arg2) noexcept nogil:
    cdef Py_ssize_t q
    for q in range(count):
        best[q] = INFINITY
        second[q] = INFINITY
        arg[q] = 0
        arg2[q] = -1


cdef inline void scan_tile(
    const floating* data, const int* indices, const Py_ssize_t* indptr,
    const int* rows, Py_ssize_t count,     # IN  the rows to search (NULL: rows r0 .. r0 + count)
    Py_ssize_t r0,
    const floating* tile,                  # IN  (d, KT) one tile of centers
    const floating* hn,                    # IN  (KT,) its 0.5 ||c||^2, the dtype's max for padding
    Py_ssize_t j0, Py_ssize_t lanes,       # its first center, and how many lanes are centers
    bint top2,
    floating* best, int* arg,              # IN/OUT (count,) smallest value so far and its center
    floating* second, int* arg2,           # IN/OUT (count,) the runner-up (top2)
    floating* vals,                        # scratch (2 * KT,)
) noexcept nogil:
    # one tile's centers for a group of rows, two rows at a time
    cdef Py_ssize_t kt = FASTKM_SKT_F if floating is float else FASTKM_SKT_D
    cdef Py_ssize_t q = 0, i0, i1
    while q + 1 < count:
        i0 = rows[q] if rows != NULL else r0 + q
        i1 = rows[q + 1] if rows != NULL else r0 + q + 1
        if floating is float:
            fastkm_row_tile2_f(data + indptr[i0], indices + indptr[i0], indptr[i0 + 1] - indptr[i0],
                               data + indptr[i1], indices + indptr[i1], indptr[i1 + 1] - indptr[i1],
                               tile, hn, vals, vals + kt)
        else:
            fastkm_row_tile2_d(data + indptr[i0], indices + indptr[i0], indptr[i0 + 1] - indptr[i0],
                               data + indptr[i1], indices + indptr[i1], indptr[i1 + 1] - indptr[i1],
                               tile, hn, vals, vals + kt)
        _take(vals, j0, lanes, top2, best + q, arg + q, second + q, arg2 + q)
        _take(vals + kt, j0, lanes, top2, best + q + 1, arg + q + 1, second + q + 1, arg2 + q + 1)
        q += 2
    if q < count:
        i0 = rows[q] if rows != NULL else r0 + q
        row_values(data + indptr[i0], indices + indptr[i0], indptr[i0 + 1] - indptr[i0],
                   tile, hn, vals)
        _take(vals, j0, lanes, top2, best + q, arg + q, second + q, arg2 + q)


cdef inline void scan_rows(
    const floating* data, const int* indices, const Py_ssize_t* indptr,
    const int* rows, Py_ssize_t count,     # IN  the rows to search (NULL: rows r0 .. r0 + count)
    Py_ssize_t r0,
    const floating* ct,                    # IN  (n_tiles, d, KT) the center tiles
    const floating* hn,                    # IN  (n_tiles * KT,) 0.5 ||c||^2, the dtype's max when padding
    Py_ssize_t n_tiles, Py_ssize_t d, Py_ssize_t k, bint top2,
    floating* best, int* arg,              # OUT (count,) smallest value and its center
    floating* second, int* arg2,           # OUT (count,) the runner-up (top2; arg2 -1 if none)
    floating* vals,                        # scratch (2 * KT,)
) noexcept nogil:
    # Every center for a group of rows, one tile at a time (the tile's rows of
    # centers stay in cache across the group).
    cdef Py_ssize_t kt = FASTKM_SKT_F if floating is float else FASTKM_SKT_D
    cdef Py_ssize_t t
    init_best(count, best, arg, second, arg2)
    for t in range(n_tiles):
        scan_tile(data, indices, indptr, rows, count, r0, ct + t * d * kt, hn + t * kt, t * kt,
                  min(kt, k - t * kt), top2, best, arg, second, arg2, vals)
