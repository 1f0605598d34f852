# The tile kernels: nearest (and second nearest) center of every row of a chunk
# of at most CHUNK rows, in vector-friendly loops. Inline, so that each kernel
# module gets its own copy that the compiler specialises for its instruction set.
#
# Every distance is computed with numerics.FASTKM_MADD in one fixed order, and
# centers are visited in increasing index with a strict '<': a label decided
# here is the same whichever kernel (Lloyd, Hamerly, Exponion, Elkan) decides it.
# Scratch buffers are the calling thread's; nothing here allocates, validates or
# touches the GIL.
from cython cimport floating
from libc.float cimport FLT_MAX, DBL_MAX

from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.numerics cimport FASTKM_MADD

cdef extern from "dot_tile.h":
    enum:
        DOT_ROWS_F "FASTKM_DOT_ROWS_F"
        DOT_ROWS_D "FASTKM_DOT_ROWS_D"
        DOT_CT "FASTKM_DOT_CT"
        DOT_ROWS_MAX "FASTKM_DOT_ROWS_MAX"


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
    cdef int jj
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


cdef inline void _improve2(floating v, int j, floating* best, floating* second,
                           int* lab) noexcept nogil:
    # _improve that also keeps the second smallest: second = min(second, max(v, best))
    cdef floating hi = v if v > best[0] else best[0]
    second[0] = hi if hi < second[0] else second[0]
    lab[0] = j if v < best[0] else lab[0]
    best[0] = v if v < best[0] else best[0]


cdef inline void _improve(floating v, int j, floating* best, int* lab) noexcept nogil:
    # strict '<': a later center replaces the best only when strictly smaller
    lab[0] = j if v < best[0] else lab[0]
    best[0] = v if v < best[0] else best[0]


cdef inline void _chunk_dot(
    const floating* xt,           # IN  (d, CHUNK) -X transposed (pack_neg_chunk)
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* cpack,        # IN  (n_tiles, d, DOT_CT) centers in tiles (pack_center_tiles)
    const floating* half_cnorm,   # IN  (n_tiles * DOT_CT,) 0.5 * ||c||^2, +max for padding
    Py_ssize_t n_tiles,
    int* labels,                  # OUT (rows,)
    floating* best_out,           # OUT (rows,) the smallest value (top2 only)
    floating* second_out,         # OUT (rows,) the second smallest value (top2 only)
    bint top2,                    # a literal at each call: the unused branch compiles away
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
    cdef floating second[DOT_ROWS_MAX]
    cdef int lab[DOT_ROWS_MAX]
    cdef floating h0, h1, h2, h3, h4, h5
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
            second[l] = big
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
            if top2:
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    _improve2(a0[l], j0, &best[l], &second[l], &lab[l])
                    _improve2(a1[l], j0 + 1, &best[l], &second[l], &lab[l])
                    _improve2(a2[l], j0 + 2, &best[l], &second[l], &lab[l])
                    _improve2(a3[l], j0 + 3, &best[l], &second[l], &lab[l])
                    _improve2(a4[l], j0 + 4, &best[l], &second[l], &lab[l])
                    _improve2(a5[l], j0 + 5, &best[l], &second[l], &lab[l])
            else:
                for l in range(DOT_ROWS_F if floating is float else DOT_ROWS_D):
                    _improve(a0[l], j0, &best[l], &lab[l])
                    _improve(a1[l], j0 + 1, &best[l], &lab[l])
                    _improve(a2[l], j0 + 2, &best[l], &lab[l])
                    _improve(a3[l], j0 + 3, &best[l], &lab[l])
                    _improve(a4[l], j0 + 4, &best[l], &lab[l])
                    _improve(a5[l], j0 + 5, &best[l], &lab[l])
        for l in range(min(R, rows - i0)):
            labels[i0 + l] = lab[l]
            if top2:
                best_out[i0 + l] = best[l]
                second_out[i0 + l] = second[l]
        i0 = i0 + R


cdef inline void argmin_chunk_dot(
    const floating* xt,           # IN  (d, CHUNK) -X transposed (pack_neg_chunk)
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* cpack,        # IN  (n_tiles, d, DOT_CT) centers in tiles
    const floating* half_cnorm,   # IN  (n_tiles * DOT_CT,)
    Py_ssize_t n_tiles,
    int* labels,                  # OUT (rows,)
) noexcept nogil:
    _chunk_dot(xt, rows, d, cpack, half_cnorm, n_tiles, labels, NULL, NULL, False)


cdef inline void top2_chunk_dot(
    const floating* xt, Py_ssize_t rows, Py_ssize_t d,
    const floating* cpack, const floating* half_cnorm, Py_ssize_t n_tiles,
    int* labels,                  # OUT (rows,) argmin_chunk_dot's labels, bit for bit
    floating* best,               # OUT (rows,) 0.5||c||^2 - x.c of the nearest center
    floating* second,             # OUT (rows,) the same for the second nearest
) noexcept nogil:
    _chunk_dot(xt, rows, d, cpack, half_cnorm, n_tiles, labels, best, second, True)


cdef inline void pack_neg_rows(
    const floating* X, const int* idx, Py_ssize_t m, Py_ssize_t d,
    floating* xt,                 # OUT (d, CHUNK): -X[idx] transposed, padded with zeros
) noexcept nogil:
    cdef Py_ssize_t q, f, rows_pad
    cdef Py_ssize_t R = DOT_ROWS_F if floating is float else DOT_ROWS_D
    cdef const floating* x
    rows_pad = (m + R - 1) // R * R
    for q in range(m):
        x = X + <Py_ssize_t>idx[q] * d
        for f in range(d):
            xt[f * CHUNK + q] = -x[f]
    for f in range(d):
        for q in range(m, rows_pad):
            xt[f * CHUNK + q] = 0
