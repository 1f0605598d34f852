# Numerical policy of every kernel: the one rounding order of a squared
# distance, distance bounds from comparison values, and the one rounding
# margin (rounding_bound) that every exact pruning test is built on.
from libc.math cimport sqrt

from cython cimport floating

cdef extern from "numerics.h":
    double FASTKM_MADD(double a, double b, double c) noexcept nogil
    void FASTKM_PREFETCH(const void* p) noexcept nogil


cdef inline double rounding_scale(Py_ssize_t d) noexcept nogil:
    # 8 (d + 4): rounding_bound in units of eps (layout.rounding_scale for Python)
    return 8.0 * (d + 4)


cdef inline double rounding_bound(Py_ssize_t d, bint single) noexcept nogil:
    # A relative bound, with room to spare, on the rounding error of a squared
    # distance (or a 0.5||c||^2 - x.c value) of d terms accumulated in float32
    # (single) or float64: the classic dot-product bound is (d + 2) u; this is
    # 8 (d + 4) eps. Bounds are compared against distances shrunk or grown by
    # it, so a pruning test never rules out a center the arithmetic could pick.
    # The proofs are in docs/design.md ("Why the bounds are exact").
    cdef double eps = 1.1920929e-07 if single else 2.220446049250313e-16
    return rounding_scale(d) * eps


cdef inline floating sq_dist(const floating* a, const floating* b, Py_ssize_t d) noexcept nogil:
    # plain sum of squared differences (inertia, relocation): not a label decider
    cdef Py_ssize_t f
    cdef floating t, s = 0
    for f in range(d):
        t = a[f] - b[f]
        s = s + t * t
    return s


cdef inline double exact_sq_dist(
    const floating* x, const floating* c, Py_ssize_t d,
    double* xx,                   # OUT ||x||^2 in float64 (NULL: not wanted)
) noexcept nogil:
    # ||x - c||^2 in float64 from float64 differences, 8 partial sums: the
    # bounds' "exact" distance (accurate to a few ulps of float64; used only
    # as a bound, never compared against a tile kernel's value)
    cdef double s[8]
    cdef double q[8]
    cdef double t, y
    cdef Py_ssize_t f, l
    for l in range(8):
        s[l] = 0.0
        q[l] = 0.0
    f = 0
    while f + 8 <= d:
        for l in range(8):
            y = <double>x[f + l]
            t = y - <double>c[f + l]
            s[l] += t * t
            q[l] += y * y
        f += 8
    for l in range(d - f):
        y = <double>x[f + l]
        t = y - <double>c[f + l]
        s[l] += t * t
        q[l] += y * y
    if xx != NULL:
        xx[0] = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]))
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef inline double pair_value(
    const floating* x, const floating* c, Py_ssize_t d, bint use_dot, floating half_cnorm,
) noexcept nogil:
    # Lloyd's comparison value for (x, c): ||x - c||^2 (few features) or
    # 0.5||c||^2 - x.c, with the same operations in the same order as the tile
    # kernels (tiles.pxd), so a value computed here equals theirs bit for bit
    cdef Py_ssize_t f
    cdef floating s, t
    if use_dot:
        s = half_cnorm
        for f in range(d):
            s = <floating>FASTKM_MADD(-x[f], c[f], s)
        return s
    t = x[0] - c[0]
    s = t * t
    for f in range(1, d):
        t = x[f] - c[f]
        s = <floating>FASTKM_MADD(t, t, s)
    return s


cdef inline double upper_from(double v, bint use_dot, double xx, double err) noexcept nogil:
    # an upper bound on the distance whose comparison value is v
    if use_dot:
        v = 2.0 * v + xx + err
    return sqrt(v) if v > 0.0 else 0.0


cdef inline double lower_from(double v, bint use_dot, double xx, double err) noexcept nogil:
    # a lower bound on the distance whose comparison value is v
    if use_dot:
        v = 2.0 * v + xx - err
    return sqrt(v) if v > 0.0 else 0.0


cdef inline void prefetch_row(const floating* x, Py_ssize_t d) noexcept nogil:
    # every cache line of one row
    cdef Py_ssize_t off = 0, n = d * sizeof(floating)
    while off < n:
        FASTKM_PREFETCH(<const char*>x + off)
        off += 64
    FASTKM_PREFETCH(<const char*>x + n - 1)
