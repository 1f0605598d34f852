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


cdef inline void argmin_chunk_pruned(
    const floating* xt,        # IN  (d, CHUNK) transposed chunk
    Py_ssize_t rows,
    Py_ssize_t d,              # <= DIRECT_MAX_D
    const floating* centers,   # IN  (k, d)
    const double* centers_t,   # IN  (d, k) the same centers, transposed, in float64
    Py_ssize_t k,
    floating* best,            # scratch (CHUNK,)
    int* labels,               # OUT (rows,) exactly argmin_chunk_direct's labels
    floating* acc,             # scratch (CHUNK,)
    floating* cand,            # scratch (k, d) the candidate centers
    int* cand_ids,             # scratch (k,)
    double* dmin,              # scratch (k,)
    double* dmax,              # scratch (k,)
    double margin,             # relative, covers the rounding of the squared distances
) noexcept nogil:
    # Centers that cannot be nearest to any row of the chunk are dropped first:
    # with the chunk's bounding box, a center whose smallest possible squared
    # distance to the box exceeds the largest possible one of some other center
    # is strictly farther from every row. The search over the remaining centers
    # (in index order, the same distances) then returns Lloyd's labels bit for
    # bit. Pays when the rows of a chunk are close together (sorted data).
    cdef double lo, hi, thr = DBL_MAX, a, b, t, u
    cdef floating vlo[8]
    cdef floating vhi[8]
    cdef floating v
    cdef Py_ssize_t i, j, f, l, nc = 0
    cdef const floating* xf
    cdef const double* cf
    for j in range(k):
        dmin[j] = 0.0
        dmax[j] = 0.0
    for f in range(d):
        xf = xt + f * CHUNK
        # bounding box in 8 independent lanes (vectorises; no reassociation)
        for l in range(8):
            vlo[l] = xf[0]
            vhi[l] = xf[0]
        i = 0
        while i + 8 <= rows:
            for l in range(8):
                v = xf[i + l]
                vlo[l] = v if v < vlo[l] else vlo[l]
                vhi[l] = v if v > vhi[l] else vhi[l]
            i += 8
        for l in range(rows - i):
            v = xf[i + l]
            vlo[l] = v if v < vlo[l] else vlo[l]
            vhi[l] = v if v > vhi[l] else vhi[l]
        lo = vlo[0]
        hi = vhi[0]
        for l in range(1, 8):
            lo = vlo[l] if vlo[l] < lo else lo
            hi = vhi[l] if vhi[l] > hi else hi
        cf = centers_t + f * k
        # distance to the box along f: max(lo - c, c - hi, 0); to its far
        # side: max(|c - lo|, |hi - c|) = max(a, b) as a + b = hi - lo >= 0
        for j in range(k):
            a = cf[j] - lo
            b = hi - cf[j]
            t = -a if -a > -b else -b
            t = t if t > 0.0 else 0.0
            dmin[j] = dmin[j] + t * t
        for j in range(k):
            a = cf[j] - lo
            b = hi - cf[j]
            u = a if a > b else b
            dmax[j] = dmax[j] + u * u
    for j in range(k):
        thr = dmax[j] if dmax[j] < thr else thr
    thr = thr * (1.0 + margin)
    for j in range(k):
        if dmin[j] <= thr:
            cand_ids[nc] = <int>j
            for f in range(d):
                cand[nc * d + f] = centers[j * d + f]
            nc += 1
    if nc == 1:
        for i in range(rows):
            labels[i] = cand_ids[0]
        return
    argmin_chunk_direct(xt, rows, d, cand, nc, best, labels, acc)
    for i in range(rows):
        labels[i] = cand_ids[labels[i]]


cdef inline void _top2_4_d3(
    const floating* x0, const floating* x1, const floating* x2, Py_ssize_t rows,
    const floating* c,        # IN (4, 3) four consecutive centers
    int j0, floating* best, floating* second, int* labels,
) noexcept nogil:
    # _argmin4_d3 that also keeps the second smallest value:
    # second = min(second, max(d, best)) before best = min(best, d)
    cdef Py_ssize_t i, q
    cdef floating u, v, w, dd, bv, sv, hi
    cdef int lv
    for i in range(rows):
        u = x0[i]
        v = x1[i]
        w = x2[i]
        bv = best[i]
        sv = second[i]
        lv = labels[i]
        for q in range(4):
            dd = <floating>FASTKM_MADD(w - c[3 * q + 2], w - c[3 * q + 2],
                                       FASTKM_MADD(v - c[3 * q + 1], v - c[3 * q + 1],
                                                   (u - c[3 * q]) * (u - c[3 * q])))
            hi = dd if dd > bv else bv
            sv = hi if hi < sv else sv
            lv = j0 + <int>q if dd < bv else lv
            bv = dd if dd < bv else bv
        best[i] = bv
        second[i] = sv
        labels[i] = lv


cdef inline void top2_chunk_direct(
    const floating* xt,        # IN  (d, CHUNK) transposed chunk
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* centers,   # IN  (k, d)
    Py_ssize_t k,
    floating* best,            # OUT (rows,) squared distance to the nearest center
    floating* second,          # OUT (rows,) squared distance to the second nearest
    int* labels,               # OUT (rows,) as argmin_chunk_direct (lowest index on ties)
    floating* acc,             # scratch (CHUNK,)
) noexcept nogil:
    # The distances are those of argmin_chunk_direct (same operations, same
    # order), so the labels are Lloyd's bit for bit.
    cdef Py_ssize_t i, j
    cdef floating dd, bv, sv, hi
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    cdef int jj, lv
    for i in range(rows):
        best[i] = big
        second[i] = big
        labels[i] = 0
    j = 0
    if d == 3:
        while j + 4 <= k:
            _top2_4_d3(xt, xt + CHUNK, xt + 2 * CHUNK, rows, centers + 3 * j, <int>j,
                       best, second, labels)
            j += 4
    for j in range(j, k):
        sq_dist_chunk_to_center(xt, rows, d, centers + j * d, acc)
        jj = <int>j
        for i in range(rows):
            dd = acc[i]
            bv = best[i]
            sv = second[i]
            hi = dd if dd > bv else bv
            second[i] = hi if hi < sv else sv
            labels[i] = jj if dd < bv else labels[i]
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


cdef inline void _accumulate_runs(
    const floating* X, const floating* sw, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d, double* sums, double* weights,
) noexcept nogil:
    # called with a literal d: the feature loops unroll and acc stays in registers
    cdef double acc[8]
    cdef double w, wi
    cdef Py_ssize_t i, f
    cdef int a
    cdef const floating* x
    i = start
    while i < end:
        a = labels[i]
        for f in range(d):
            acc[f] = 0.0
        w = 0.0
        while True:
            wi = sw[i]
            x = X + i * d
            w += wi
            for f in range(d):
                acc[f] += wi * x[f]
            i += 1
            if i >= end or labels[i] != a:
                break
        weights[a] += w
        for f in range(d):
            sums[a * d + f] += acc[f]


cdef inline void accumulate_rows(
    const floating* X, const floating* sw, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    double* sums,                 # IN/OUT (k, d)
    double* weights,              # IN/OUT (k,)
) noexcept nogil:
    # Weighted row sums per label, in row order. With few features a run of
    # rows with the same label is summed in registers and added once (sorted
    # data has long runs; the per-row read-modify-write of the center's sums
    # is a store-to-load chain). Every algorithm accumulates through this one
    # routine, so equal labels give bitwise equal sums.
    cdef Py_ssize_t i
    cdef int a
    if d == 1:
        _accumulate_runs(X, sw, labels, start, end, 1, sums, weights)
    elif d == 2:
        _accumulate_runs(X, sw, labels, start, end, 2, sums, weights)
    elif d == 3:
        _accumulate_runs(X, sw, labels, start, end, 3, sums, weights)
    elif d == 4:
        _accumulate_runs(X, sw, labels, start, end, 4, sums, weights)
    elif d <= 8:
        _accumulate_runs(X, sw, labels, start, end, d, sums, weights)
    else:
        for i in range(start, end):
            a = labels[i]
            add_weighted_row(X + i * d, sw[i], d, sums + a * d, weights + a)


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
