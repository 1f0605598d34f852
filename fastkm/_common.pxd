# Tile routines shared by the kernels. They are ``inline`` so that each kernel
# module gets its own copy that the C compiler can specialise and vectorise.
#
# A "chunk" is at most CHUNK consecutive rows of X. Scratch buffers are owned by
# the calling thread; nothing here allocates, validates or touches the GIL.
from cython cimport floating
from libc.float cimport FLT_MAX, DBL_MAX
from libc.math cimport sqrt

cdef extern from *:
    """
    /* One rounding order for every squared distance: t0*t0, then one fused
       multiply-add per further feature where the target has FMA. Written out
       explicitly so that the compiler's own contraction choices cannot make two
       code paths (Lloyd tiles, Hamerly scans) round the same distance differently. */
    #if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    #define FASTKM_MADD(a, b, c) _Generic((a), float: __builtin_fmaf, default: __builtin_fma)((a), (b), (c))
    #else
    #define FASTKM_MADD(a, b, c) ((a) * (b) + (c))
    #endif
    """
    double FASTKM_MADD(double a, double b, double c) noexcept nogil

cdef enum:
    CHUNK = 256        # rows per tile: the transposed tile and its distances stay in L1/L2
    DIRECT_MAX_D = 8   # up to this many features, distances are sums of (x - c)^2


cdef inline void transpose_chunk(
    const floating* X,      # IN  (rows, d) row-major
    Py_ssize_t rows,
    Py_ssize_t d,
    floating* xt,           # OUT (d, CHUNK)
) noexcept nogil:
    cdef Py_ssize_t i, f
    for i in range(rows):
        for f in range(d):
            xt[f * CHUNK + i] = X[i * d + f]


cdef inline void sq_dist_chunk_to_center(
    const floating* xt,     # IN  (d, CHUNK) transposed chunk
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* c,      # IN  (d,)
    floating* acc,          # OUT (rows,) squared distances
) noexcept nogil:
    # Loops run over rows (independent lanes), so the compiler vectorises them
    # without reassociating any sum: results are exact IEEE sums in f order.
    cdef Py_ssize_t i, f
    cdef floating t, cf
    cdef const floating* xf
    cf = c[0]
    for i in range(rows):
        t = xt[i] - cf
        acc[i] = t * t
    for f in range(1, d):
        cf = c[f]
        xf = xt + f * CHUNK
        for i in range(rows):
            t = xf[i] - cf
            acc[i] = <floating>FASTKM_MADD(t, t, acc[i])


cdef inline void _argmin4_d3(
    const floating* x0, const floating* x1, const floating* x2, Py_ssize_t rows,
    const floating* c,        # IN (4, 3) four consecutive centers
    int j0, floating* best, int* labels,
) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating a0 = c[0], a1 = c[1], a2 = c[2], b0 = c[3], b1 = c[4], b2 = c[5]
    cdef floating e0 = c[6], e1 = c[7], e2 = c[8], g0 = c[9], g1 = c[10], g2 = c[11]
    cdef floating u, v, w, dd, bv
    cdef int lv
    for i in range(rows):
        u = x0[i]
        v = x1[i]
        w = x2[i]
        bv = best[i]
        lv = labels[i]
        # strict '<' in increasing center order keeps the lowest index on ties
        dd = <floating>FASTKM_MADD(w - a2, w - a2, FASTKM_MADD(v - a1, v - a1, (u - a0) * (u - a0)))
        lv = j0 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = <floating>FASTKM_MADD(w - b2, w - b2, FASTKM_MADD(v - b1, v - b1, (u - b0) * (u - b0)))
        lv = j0 + 1 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = <floating>FASTKM_MADD(w - e2, w - e2, FASTKM_MADD(v - e1, v - e1, (u - e0) * (u - e0)))
        lv = j0 + 2 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = <floating>FASTKM_MADD(w - g2, w - g2, FASTKM_MADD(v - g1, v - g1, (u - g0) * (u - g0)))
        lv = j0 + 3 if dd < bv else lv
        bv = dd if dd < bv else bv
        best[i] = bv
        labels[i] = lv


cdef inline void argmin_chunk_direct(
    const floating* xt,        # IN  (d, CHUNK) transposed chunk
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* centers,   # IN  (k, d)
    Py_ssize_t k,
    floating* best,            # OUT (rows,) squared distance to the nearest center
    int* labels,               # OUT (rows,) index of the nearest center (lowest on ties)
    floating* acc,             # scratch (CHUNK,)
) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating t0, t1, t2, dd, bv, c0, c1, c2
    cdef const floating* x0 = xt
    cdef const floating* x1 = xt + CHUNK
    cdef const floating* x2 = xt + 2 * CHUNK
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    cdef int jj, lv
    for i in range(rows):
        best[i] = big
        labels[i] = 0
    # The selects are written as conditional expressions so that they become
    # vector blends: the argmin vectorises across rows.
    if d == 1:
        for j in range(k):
            c0 = centers[j]
            jj = <int>j
            for i in range(rows):
                t0 = x0[i] - c0
                dd = t0 * t0
                bv = best[i]
                lv = labels[i]
                labels[i] = jj if dd < bv else lv
                best[i] = dd if dd < bv else bv
    elif d == 2:
        for j in range(k):
            c0 = centers[2 * j]
            c1 = centers[2 * j + 1]
            jj = <int>j
            for i in range(rows):
                t0 = x0[i] - c0
                t1 = x1[i] - c1
                dd = <floating>FASTKM_MADD(t1, t1, t0 * t0)
                bv = best[i]
                lv = labels[i]
                labels[i] = jj if dd < bv else lv
                best[i] = dd if dd < bv else bv
    elif d == 3:
        # colors: four centers per pass over the rows, best/label kept in registers
        j = 0
        while j + 4 <= k:
            _argmin4_d3(x0, x1, x2, rows, centers + 3 * j, <int>j, best, labels)
            j += 4
        for j in range(j, k):
            c0 = centers[3 * j]
            c1 = centers[3 * j + 1]
            c2 = centers[3 * j + 2]
            jj = <int>j
            for i in range(rows):
                t0 = x0[i] - c0
                t1 = x1[i] - c1
                t2 = x2[i] - c2
                dd = <floating>FASTKM_MADD(t2, t2, FASTKM_MADD(t1, t1, t0 * t0))
                bv = best[i]
                lv = labels[i]
                labels[i] = jj if dd < bv else lv
                best[i] = dd if dd < bv else bv
    else:
        for j in range(k):
            sq_dist_chunk_to_center(xt, rows, d, centers + j * d, acc)
            jj = <int>j
            for i in range(rows):
                dd = acc[i]
                bv = best[i]
                lv = labels[i]
                labels[i] = jj if dd < bv else lv
                best[i] = dd if dd < bv else bv


cdef enum:
    DOT_TILE_J = 16    # centers per register tile (padded count of centers is a multiple)


cdef inline floating _min2(floating a, floating b) noexcept nogil:
    return a if a < b else b


cdef inline floating _tile_min(const floating* a) noexcept nogil:
    # pairwise tree over the 16 (float) or 8 (double) lanes of one tile, written
    # out with constant indices: shuffles and min instructions, no branches
    cdef floating m0, m1, m2, m3, m4, m5, m6, m7
    if floating is float:
        m0 = _min2(a[0], a[8])
        m1 = _min2(a[1], a[9])
        m2 = _min2(a[2], a[10])
        m3 = _min2(a[3], a[11])
        m4 = _min2(a[4], a[12])
        m5 = _min2(a[5], a[13])
        m6 = _min2(a[6], a[14])
        m7 = _min2(a[7], a[15])
    else:
        m0 = a[0]
        m1 = a[1]
        m2 = a[2]
        m3 = a[3]
        m4 = a[4]
        m5 = a[5]
        m6 = a[6]
        m7 = a[7]
    m0 = _min2(m0, m4)
    m1 = _min2(m1, m5)
    m2 = _min2(m2, m6)
    m3 = _min2(m3, m7)
    m0 = _min2(m0, m2)
    m1 = _min2(m1, m3)
    return _min2(m0, m1)


cdef inline Py_ssize_t _first_equal(const floating* a, floating v) noexcept nogil:
    cdef Py_ssize_t l = 0
    while a[l] != v:
        l += 1
    return l


cdef inline void argmin_chunk_dot(
    const floating* X,            # IN  (rows, d) row-major chunk
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* centers_t,    # IN  (d, k_pad) centers, transposed, zero-padded
    const floating* half_cnorm,   # IN  (k_pad,) 0.5 * ||c||^2, +max for padding
    Py_ssize_t k_pad,             # multiple of DOT_TILE_J
    int* labels,                  # OUT (rows,)
) noexcept nogil:
    # argmin_j ||x - c_j||^2 = argmin_j (0.5 ||c_j||^2 - x.c_j): ||x||^2 is skipped.
    # Register blocking: 4 rows x (16 float | 8 double) centers stay in
    # accumulators for the whole pass over the features (one load of centers
    # feeds four FMAs), the way a GEMM micro-kernel does.
    cdef floating a0[16]
    cdef floating a1[16]
    cdef floating a2[16]
    cdef floating a3[16]
    cdef floating bv0, bv1, bv2, bv3, x0, x1, x2, x3, t0, t1, t2, t3
    cdef int bj0, bj1, bj2, bj3
    cdef Py_ssize_t i0, jb, f, l, r1, r2, r3
    cdef const floating* ct
    cdef const floating* p0
    cdef const floating* p1
    cdef const floating* p2
    cdef const floating* p3
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    i0 = 0
    while i0 < rows:
        # a short last group re-reads its last row; only real rows are stored
        r1 = min(i0 + 1, rows - 1)
        r2 = min(i0 + 2, rows - 1)
        r3 = min(i0 + 3, rows - 1)
        p0 = X + i0 * d
        p1 = X + r1 * d
        p2 = X + r2 * d
        p3 = X + r3 * d
        bv0 = bv1 = bv2 = bv3 = big
        bj0 = bj1 = bj2 = bj3 = 0
        jb = 0
        while jb < k_pad:
            for l in range(16 if floating is float else 8):
                a0[l] = half_cnorm[jb + l]
                a1[l] = half_cnorm[jb + l]
                a2[l] = half_cnorm[jb + l]
                a3[l] = half_cnorm[jb + l]
            for f in range(d):
                ct = centers_t + f * k_pad + jb
                x0 = p0[f]
                x1 = p1[f]
                x2 = p2[f]
                x3 = p3[f]
                for l in range(16 if floating is float else 8):
                    a0[l] = <floating>FASTKM_MADD(-x0, ct[l], a0[l])
                    a1[l] = <floating>FASTKM_MADD(-x1, ct[l], a1[l])
                    a2[l] = <floating>FASTKM_MADD(-x2, ct[l], a2[l])
                    a3[l] = <floating>FASTKM_MADD(-x3, ct[l], a3[l])
            # Tile minimum without branches; the (rare) improving tile is then
            # scanned for its first minimal lane: lowest index on ties.
            t0 = _tile_min(a0)
            t1 = _tile_min(a1)
            t2 = _tile_min(a2)
            t3 = _tile_min(a3)
            if t0 < bv0:
                bv0 = t0
                bj0 = <int>(jb + _first_equal(a0, t0))
            if t1 < bv1:
                bv1 = t1
                bj1 = <int>(jb + _first_equal(a1, t1))
            if t2 < bv2:
                bv2 = t2
                bj2 = <int>(jb + _first_equal(a2, t2))
            if t3 < bv3:
                bv3 = t3
                bj3 = <int>(jb + _first_equal(a3, t3))
            jb = jb + (16 if floating is float else 8)
        labels[i0] = bj0
        if i0 + 1 < rows:
            labels[i0 + 1] = bj1
        if i0 + 2 < rows:
            labels[i0 + 2] = bj2
        if i0 + 3 < rows:
            labels[i0 + 3] = bj3
        i0 = i0 + 4


cdef inline floating sq_dist(
    const floating* a,
    const floating* b,
    Py_ssize_t d,
) noexcept nogil:
    cdef Py_ssize_t f
    cdef floating t, s = 0
    for f in range(d):
        t = a[f] - b[f]
        s = s + t * t
    return s


cdef inline void add_weighted_row(
    const floating* x, double w, Py_ssize_t d,
    double* sums_row,             # IN/OUT (d,)
    double* weight,               # IN/OUT scalar
) noexcept nogil:
    cdef Py_ssize_t f
    weight[0] += w
    for f in range(d):
        sums_row[f] += w * x[f]


cdef inline double pair_value(
    const floating* x, const floating* c, Py_ssize_t d, bint use_dot, floating half_cnorm,
) noexcept nogil:
    """Lloyd's comparison value for (x, c): ||x - c||^2 (d <= 8) or 0.5||c||^2 - x.c,
    with the same operations in the same order as the tile kernels."""
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
    if use_dot:
        v = 2.0 * v + xx - err
    return sqrt(v) if v > 0.0 else 0.0
