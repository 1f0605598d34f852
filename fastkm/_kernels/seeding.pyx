"""k-means++ seeding kernels for few features (d <= layout.DIRECT_MAX_D), and the
D^2 draws that every seeding shares.

The Python layer (``fastkm.kmeans._seeding``) draws the random numbers; these
kernels do the O(n) work of each step in parallel: distances to candidate
centers, the potential each candidate would give, and the inverse-CDF lookup
of D^2 sampling. Potentials are summed per fixed row block, in LANES partial
sums of a fixed order, and merged in block order (thread-count independent).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.numerics cimport FASTKM_MADD
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport sq_dist_chunk_to_center, transpose_chunk


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
    Region region,                         # IN  thread count; OUT the threads' CPU time
    const floating[:, :, ::1] xt_all=None,  # IN  optional ``layout.transpose_chunks(X)``
):
    """Per-block potential sum_i w_i min(D_i^2, ||x_i - c_t||^2) for each candidate t."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b, start, end
    cdef floating* xt
    cdef floating* acc
    cdef const floating* pre = NULL
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if xt_all is not None:
        pre = &xt_all[0, 0, 0]
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            _candidates_block(&X[0, 0], &sample_weight[0], &closest[0], start, end, d,
                              &candidates[0, 0], m, &block_pot[0, b], n_blocks, pre, xt, acc)
        free(xt)
        free(acc)
        region_leave(rc, t0)


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
    cdef Py_ssize_t c0, rows
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
    Region region,                         # IN  thread count; OUT the threads' CPU time
    const floating[:, :, ::1] xt_all=None,  # IN  optional ``layout.transpose_chunks(X)``
):
    """Lower D^2 to the new center; return the total potential (block-ordered sum)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t b, start, end
    cdef floating* xt
    cdef floating* acc
    cdef double total = 0.0
    cdef const floating* pre = NULL
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if xt_all is not None:
        pre = &xt_all[0, 0, 0]
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            block_pot[b] = _update_block(&X[0, 0], &sample_weight[0], &closest[0],
                                         start, end, d, &center[0], pre, xt, acc)
        free(xt)
        free(acc)
        region_leave(rc, t0)
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
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """sum_i w_i D^2[inverse[i]] per row block of the full data, and the total:
    the block totals ``sample_d2`` needs to draw as it would without
    deduplication."""
    cdef Py_ssize_t n = inverse.shape[0], n_blocks = block_pot.shape[0], b, start, end
    cdef double total = 0.0
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            block_pot[b] = _mapped_block(&sample_weight[0], &inverse[0], &closest[0], start, end)
        region_leave(rc, t0)
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
