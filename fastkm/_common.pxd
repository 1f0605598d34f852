# Tile routines shared by the kernels. They are ``inline`` so that each kernel
# module gets its own copy that the C compiler can specialise and vectorise.
#
# A "chunk" is at most CHUNK consecutive rows of X. Scratch buffers are owned by
# the calling thread; nothing here allocates, validates or touches the GIL.
from cython cimport floating
from libc.float cimport FLT_MAX, DBL_MAX

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
            acc[i] = acc[i] + t * t


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
        dd = (u - a0) * (u - a0) + (v - a1) * (v - a1) + (w - a2) * (w - a2)
        lv = j0 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = (u - b0) * (u - b0) + (v - b1) * (v - b1) + (w - b2) * (w - b2)
        lv = j0 + 1 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = (u - e0) * (u - e0) + (v - e1) * (v - e1) + (w - e2) * (w - e2)
        lv = j0 + 2 if dd < bv else lv
        bv = dd if dd < bv else bv
        dd = (u - g0) * (u - g0) + (v - g1) * (v - g1) + (w - g2) * (w - g2)
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
                dd = t0 * t0 + t1 * t1
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
                dd = t0 * t0 + t1 * t1 + t2 * t2
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


cdef inline void argmin_chunk_dot(
    const floating* X,            # IN  (rows, d) row-major chunk
    Py_ssize_t rows,
    Py_ssize_t d,
    const floating* centers_t,    # IN  (d, k) centers, transposed
    const floating* half_cnorm,   # IN  (k,) 0.5 * ||c||^2
    Py_ssize_t k,
    int* labels,                  # OUT (rows,)
    floating* acc,                # scratch (k,)
) noexcept nogil:
    # argmin_j ||x - c_j||^2 = argmin_j (0.5 ||c_j||^2 - x.c_j): ||x||^2 is skipped.
    # The inner loop runs across centers (independent lanes) and vectorises.
    cdef Py_ssize_t i, j, f
    cdef floating xf, bv
    cdef const floating* x
    cdef const floating* ct
    cdef int bj
    for i in range(rows):
        x = X + i * d
        for j in range(k):
            acc[j] = half_cnorm[j]
        for f in range(d):
            xf = x[f]
            ct = centers_t + f * k
            for j in range(k):
                acc[j] = acc[j] - xf * ct[j]
        bj = 0
        bv = acc[0]
        for j in range(1, k):
            if acc[j] < bv:
                bv = acc[j]
                bj = <int>j
        labels[i] = bj


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
