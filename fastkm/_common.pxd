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
    DOT_TILE_J = 16    # the padded count of centers (dot_operands) is a multiple of this

cdef extern from *:
    """
    /* Register tile of the dot kernel: DOT_ROWS rows (vector lanes) x DOT_CT
       centers (broadcast), sized so that the DOT_CT x DOT_ROWS accumulators,
       the row vectors and one broadcast fit the target's vector registers. */
    #if defined(__AVX512F__)
    #define FASTKM_DOT_ROWS_F 64
    #define FASTKM_DOT_ROWS_D 32
    #define FASTKM_DOT_CT 6
    #elif defined(__AVX__)
    #define FASTKM_DOT_ROWS_F 16
    #define FASTKM_DOT_ROWS_D 8
    #define FASTKM_DOT_CT 6
    #else
    #define FASTKM_DOT_ROWS_F 8
    #define FASTKM_DOT_ROWS_D 4
    #define FASTKM_DOT_CT 6
    #endif
    #define FASTKM_DOT_ROWS_MAX 64
    """
    enum:
        DOT_ROWS_F "FASTKM_DOT_ROWS_F"
        DOT_ROWS_D "FASTKM_DOT_ROWS_D"
        DOT_CT "FASTKM_DOT_CT"
        DOT_ROWS_MAX "FASTKM_DOT_ROWS_MAX"


cdef inline void pack_neg_chunk(
    const floating* X,      # IN  (rows, d) row-major
    Py_ssize_t rows,
    Py_ssize_t d,
    floating* xt,           # OUT (d, CHUNK): -X transposed, rows padded with zeros
) noexcept nogil:
    # -x is exact, so fma(xt, c, acc) is bit-for-bit fma(-x, c, acc)
    cdef Py_ssize_t i, f, rows_pad
    cdef Py_ssize_t R = DOT_ROWS_F if floating is float else DOT_ROWS_D
    rows_pad = (rows + R - 1) // R * R
    for i in range(rows):
        for f in range(d):
            xt[f * CHUNK + i] = -X[i * d + f]
    for f in range(d):
        for i in range(rows, rows_pad):
            xt[f * CHUNK + i] = 0


cdef inline void _improve(floating v, int j, floating* best, int* lab) noexcept nogil:
    # strict '<': a later center replaces the best only when strictly smaller
    lab[0] = j if v < best[0] else lab[0]
    best[0] = v if v < best[0] else best[0]


cdef inline void argmin_chunk_dot(
    const floating* xt,           # IN  (d, CHUNK) -X transposed (pack_neg_chunk)
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* cpack,        # IN  (n_tiles, d, DOT_CT) centers in tiles (pack_center_tiles)
    const floating* half_cnorm,   # IN  (n_tiles * DOT_CT,) 0.5 * ||c||^2, +max for padding
    Py_ssize_t n_tiles,
    int* labels,                  # OUT (rows,)
) noexcept nogil:
    # argmin_j ||x - c_j||^2 = argmin_j (0.5 ||c_j||^2 - x.c_j): ||x||^2 is skipped.
    # Register blocking: DOT_ROWS rows (vector lanes) x DOT_CT centers (broadcasts)
    # stay in accumulators for the whole pass over the features, the way a GEMM
    # micro-kernel does. Each value is half_cnorm[j], then one FMA per feature in
    # feature order, as in pair_value. The minimum is taken across accumulators
    # (lane-wise compares and blends, no horizontal reduction); centers are visited
    # in increasing order with a strict '<', so ties keep the lowest index.
    # six accumulator rows written out (not a 2-D array indexed by a loop
    # variable): gcc then keeps each one in vector registers
    cdef floating a0[DOT_ROWS_MAX]
    cdef floating a1[DOT_ROWS_MAX]
    cdef floating a2[DOT_ROWS_MAX]
    cdef floating a3[DOT_ROWS_MAX]
    cdef floating a4[DOT_ROWS_MAX]
    cdef floating a5[DOT_ROWS_MAX]
    cdef floating best[DOT_ROWS_MAX]
    cdef int lab[DOT_ROWS_MAX]
    cdef floating v, h0, h1, h2, h3, h4, h5, c0, c1, c2, c3, c4, c5, xv
    cdef Py_ssize_t i0, jt, f, l
    cdef int j0
    cdef const floating* xf
    cdef const floating* cp
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    cdef Py_ssize_t R = DOT_ROWS_F if floating is float else DOT_ROWS_D
    i0 = 0
    while i0 < rows:
        for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
            best[l] = big
            lab[l] = 0
        for jt in range(n_tiles):
            h0 = half_cnorm[jt * DOT_CT]
            h1 = half_cnorm[jt * DOT_CT + 1]
            h2 = half_cnorm[jt * DOT_CT + 2]
            h3 = half_cnorm[jt * DOT_CT + 3]
            h4 = half_cnorm[jt * DOT_CT + 4]
            h5 = half_cnorm[jt * DOT_CT + 5]
            for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                a0[l] = h0
                a1[l] = h1
                a2[l] = h2
                a3[l] = h3
                a4[l] = h4
                a5[l] = h5
            cp = cpack + jt * DOT_CT * d
            for f in range(d):
                xf = xt + f * CHUNK + i0
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a0[l] = <floating>FASTKM_MADD(xf[l], cp[0], a0[l])
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a1[l] = <floating>FASTKM_MADD(xf[l], cp[1], a1[l])
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a2[l] = <floating>FASTKM_MADD(xf[l], cp[2], a2[l])
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a3[l] = <floating>FASTKM_MADD(xf[l], cp[3], a3[l])
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a4[l] = <floating>FASTKM_MADD(xf[l], cp[4], a4[l])
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    a5[l] = <floating>FASTKM_MADD(xf[l], cp[5], a5[l])
                cp = cp + DOT_CT
            j0 = <int>(jt * DOT_CT)
            for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                _improve(a0[l], j0, &best[l], &lab[l])
                _improve(a1[l], j0 + 1, &best[l], &lab[l])
                _improve(a2[l], j0 + 2, &best[l], &lab[l])
                _improve(a3[l], j0 + 3, &best[l], &lab[l])
                _improve(a4[l], j0 + 4, &best[l], &lab[l])
                _improve(a5[l], j0 + 5, &best[l], &lab[l])
        for l in range(min(R, rows - i0)):
            labels[i0 + l] = lab[l]
        i0 = i0 + R


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
