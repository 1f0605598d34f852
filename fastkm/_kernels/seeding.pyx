"""k-means++ seeding kernels for few features (d <= layout.DIRECT_MAX_D), and the
D^2 draws that every seeding shares.

The Python layer (``fastkm.kmeans._seeding``) draws the random numbers; these
kernels do the O(n) work of each step in parallel: distances to candidate
centers, the potential each candidate would give, and the inverse-CDF lookup
of D^2 sampling. Potentials are summed per fixed row block, in LANES partial
sums of a fixed order, and merged in block order (thread-count independent).
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.numerics cimport FASTKM_MADD, rounding_bound
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


cdef struct DirectCtx:
    # read-only for a kernel call (but closest and the chunk state, updated in place)
    const void* X              # (n, d)
    const void* sw             # (n,)
    double* closest            # (n,) current D^2
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t rows_per_block
    const void* xt_all         # (n_chunks, d, CHUNK) X in tile layout, or NULL
    # chunk pruning (rows in spatial order; all NULL when off):
    const double* box          # (n_chunks, d, 2) each chunk's bounding box: lo, hi
    double* chunk_pot          # (n_chunks,) sum of w D^2 over the chunk, lane-ordered
    double* chunk_max          # (n_chunks,) largest D^2 of the chunk (inf: not known)
    double margin              # relative, covers the rounding of the squared distances


cdef inline bint _out_of_reach(const DirectCtx* c, Py_ssize_t ch, const floating* center) noexcept nogil:
    # True when no row of chunk ch can get nearer to ``center`` than its D^2: the
    # squared distance from the center to the chunk's box, less the rounding
    # margin, exceeds the chunk's largest D^2. Then every computed distance is
    # >= the row's D^2, min(D^2, distance) is D^2 bit for bit, and the chunk adds
    # exactly its cached potential (docs/design.md, "Exact pruning in the seeding").
    cdef const double* box = c.box + ch * c.d * 2
    cdef double t, lo, hi, v, s = 0.0
    cdef Py_ssize_t f
    if c.box == NULL:
        return False
    for f in range(c.d):
        v = <double>center[f]
        lo = box[2 * f]
        hi = box[2 * f + 1]
        t = lo - v if lo > v else (v - hi if v > hi else 0.0)
        s += t * t
    return s * (1.0 - c.margin) > c.chunk_max[ch]


cdef void _candidates_block(
    const floating* X, const DirectCtx* c, Py_ssize_t b,
    const floating* candidates, Py_ssize_t m,
    double* pot,          # OUT (m,) this block's potential for each candidate (stride)
    Py_ssize_t stride,
    floating* xt, floating* acc,   # scratch
) noexcept nogil:
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(c.n, start + c.rows_per_block)
    cdef Py_ssize_t c0, rows, t, ch, d = c.d
    cdef const floating* sw = <const floating*>c.sw
    cdef floating* tile
    for t in range(m):
        pot[t * stride] = 0.0
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        ch = c0 // CHUNK
        tile = NULL
        for t in range(m):
            if _out_of_reach(c, ch, candidates + t * d):
                pot[t * stride] += c.chunk_pot[ch]
                continue
            if tile == NULL:
                tile = _chunk_t(X, <const floating*>c.xt_all, c0, rows, d, xt)
            pot[t * stride] += _potential_dispatch(tile, rows, d, candidates + t * d,
                                                   c.closest + c0, sw + c0, acc)
        c0 += rows


cdef class ChunkBounds:
    """Per-chunk state that lets the few-feature seeding skip the chunks a center
    cannot reach: each chunk's bounding box, and its current potential and
    largest D^2 (kept up to date by ``update_closest``). Made by
    ``chunk_bounds`` for X in tile layout; worth it when rows are in spatial
    order (then chunks span small boxes)."""

    cdef double[:, :, ::1] box    # (n_chunks, d, 2)
    cdef double[::1] pot          # (n_chunks,)
    cdef double[::1] dmax         # (n_chunks,)
    cdef double margin

    @property
    def n_chunks(self):
        return self.pot.shape[0]

    def out_of_reach(self, center):
        """How many chunks ``center`` (float64, n_features) cannot bring nearer:
        the chunks a step with it skips."""
        cdef double[::1] c = np.ascontiguousarray(center, dtype=np.float64)
        cdef DirectCtx ctx
        cdef Py_ssize_t ch, count = 0
        ctx.d = self.box.shape[1]
        ctx.box = &self.box[0, 0, 0]
        ctx.chunk_max = &self.dmax[0]
        ctx.margin = self.margin
        for ch in range(self.pot.shape[0]):
            count += _out_of_reach(&ctx, ch, &c[0])
        return count


cdef void _direct_ctx(DirectCtx* c, const void* X, const void* sw, double* closest,
                      Py_ssize_t n, Py_ssize_t d, Py_ssize_t rows_per_block,
                      const void* xt_all, ChunkBounds bounds):
    c.X = X
    c.sw = sw
    c.closest = closest
    c.n = n
    c.d = d
    c.rows_per_block = rows_per_block
    c.xt_all = xt_all
    c.box = NULL
    c.chunk_pot = NULL
    c.chunk_max = NULL
    c.margin = 0.0
    if bounds is not None:
        c.box = &bounds.box[0, 0, 0]
        c.chunk_pot = &bounds.pot[0]
        c.chunk_max = &bounds.dmax[0]
        c.margin = bounds.margin


def chunk_bounds(
    const floating[:, :, ::1] xt_all,      # IN  (n_chunks, d, CHUNK) X in tile layout
    Py_ssize_t n_samples,
):
    """A ``ChunkBounds`` for X in tile layout (``layout.transpose_chunks``)."""
    cdef Py_ssize_t n_chunks = xt_all.shape[0], d = xt_all.shape[1], ch, f, i, rows
    cdef ChunkBounds cb = ChunkBounds()
    cdef double lo, hi, v
    cb.box = np.empty((n_chunks, d, 2))
    cb.pot = np.zeros(n_chunks)
    cb.dmax = np.full(n_chunks, np.inf)
    cb.margin = 2.0 * rounding_bound(d, floating is float)
    with nogil:
        for ch in range(n_chunks):
            rows = min(<Py_ssize_t>CHUNK, n_samples - ch * CHUNK)
            for f in range(d):
                lo = xt_all[ch, f, 0]
                hi = lo
                for i in range(1, rows):
                    v = xt_all[ch, f, i]
                    lo = v if v < lo else lo
                    hi = v if v > hi else hi
                cb.box[ch, f, 0] = lo
                cb.box[ch, f, 1] = hi
    return cb


def candidate_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    double[::1] closest,                   # IN  (n_samples,) current D^2
    const floating[:, ::1] candidates,     # IN  (n_candidates, n_features)
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
    const floating[:, :, ::1] xt_all=None,  # IN  optional ``layout.transpose_chunks(X)``
    ChunkBounds bounds=None,               # IN  optional ``chunk_bounds(xt_all)``
):
    """Per-block potential sum_i w_i min(D_i^2, ||x_i - c_t||^2) for each candidate t.

    With ``bounds`` (and ``xt_all``), a chunk that a candidate cannot reach adds
    its cached potential instead of being computed: the same bits.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], b
    cdef floating* xt
    cdef floating* acc
    cdef DirectCtx c
    cdef RegionClock* rc = &region.clock
    cdef double t0
    _direct_ctx(&c, &X[0, 0], &sample_weight[0], &closest[0], n, d, rows_per_block,
                NULL if xt_all is None else &xt_all[0, 0, 0], bounds)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            _candidates_block(&X[0, 0], &c, b, &candidates[0, 0], m, &block_pot[0, b],
                              n_blocks, xt, acc)
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
    const floating* X, const DirectCtx* c, Py_ssize_t b, const floating* center,
    floating* xt, floating* acc,   # scratch
) noexcept nogil:
    cdef Py_ssize_t start = b * c.rows_per_block, end = min(c.n, start + c.rows_per_block)
    cdef Py_ssize_t c0, rows, ch, i, d = c.d
    cdef const floating* sw = <const floating*>c.sw
    cdef double s = 0.0, v, mx
    cdef double* closest
    cdef floating* tile
    c0 = start
    while c0 < end:
        rows = min(<Py_ssize_t>CHUNK, end - c0)
        ch = c0 // CHUNK
        closest = c.closest + c0
        if _out_of_reach(c, ch, center):
            s += c.chunk_pot[ch]   # no D^2 changes: what the full pass would add
            c0 += rows
            continue
        tile = _chunk_t(X, <const floating*>c.xt_all, c0, rows, d, xt)
        # the same lane-ordered sum as the candidates' potentials, so that the
        # chosen candidate's potential and the new total agree bit for bit
        v = _potential_dispatch(tile, rows, d, center, closest, sw + c0, acc)
        s += v
        if d == 1:
            _lower_fused(tile, rows, 1, center, closest)
        elif d == 2:
            _lower_fused(tile, rows, 2, center, closest)
        elif d == 3:
            _lower_fused(tile, rows, 3, center, closest)
        elif d == 4:
            _lower_fused(tile, rows, 4, center, closest)
        else:
            _lower_fused(tile, rows, d, center, closest)
        if c.box != NULL:
            c.chunk_pot[ch] = v
            mx = closest[0]
            for i in range(1, rows):
                mx = closest[i] if closest[i] > mx else mx
            c.chunk_max[ch] = mx
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
    ChunkBounds bounds=None,               # IN/OUT optional ``chunk_bounds(xt_all)``
):
    """Lower D^2 to the new center; return the total potential (block-ordered sum).

    With ``bounds`` (and ``xt_all``), chunks the center cannot reach are skipped
    (their D^2 and potential stay as they are: the same bits as a full pass), and
    the others' potentials and largest D^2 are recorded for the next step.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_pot.shape[0], b
    cdef floating* xt
    cdef floating* acc
    cdef double total = 0.0
    cdef DirectCtx c
    cdef RegionClock* rc = &region.clock
    cdef double t0
    _direct_ctx(&c, &X[0, 0], &sample_weight[0], &closest[0], n, d, rows_per_block,
                NULL if xt_all is None else &xt_all[0, 0, 0], bounds)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        acc = <floating*> malloc(CHUNK * sizeof(floating))
        for b in prange(n_blocks, schedule="dynamic"):
            block_pot[b] = _update_block(&X[0, 0], &c, b, &center[0], xt, acc)
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
