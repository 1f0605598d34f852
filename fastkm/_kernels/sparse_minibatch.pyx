"""One mini-batch K-Means step on CSR rows: the batch's labels and inertia
(``assign_batch``), its rows grouped by label (``group_batch``), the center
update (``update_centers``) and random reassignment (``reassign_lanes``: a
center's lane becomes a CSR row), on centers kept in the tile layout of
``sparse_centers`` (n_tiles, d, KT) from step to step.

The batch is a list of rows of the CSR matrix (or the whole matrix): nothing is
gathered or densified. Its labels are the tile kernels' (``csr_tiles.scan_tile``,
tiles outer as in ``sparse_lloyd.assign``: every batch row meets one tile before
the next), each row's by one thread in a fixed order; its inertia is the
weighted float64 squared distances per fixed chunk of CHUNK rows, the chunks
added in order. The update takes each center's rows in batch order (a counting
sort), scatter-adds ``w_i x_i`` into a float64 row of ``sums`` (one thread per
center), then writes the new centers into the tiles per (tile, feature block)
work item in the dense kernel's form (``minibatch._update_centers``):

    counts:   c' = (c W + sum_i w_i x_i) / (W + w_j)
    adaptive: c' = (1 - a) c + a (sum_i w_i x_i) / w_j,  a = sqrt(w_j / w_batch)

over every feature (a feature no batch row of the center has adds 0.0, as the
dense kernel's zeros do), so that from the same labels the new centers are the
dense kernel's bits. Everything is the same bits for any thread count; no
random number is drawn here.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport init_best, scan_tile, tile_width
from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.numerics cimport FASTKM_MADD
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave


cdef inline double _sq_to_lane(
    CSR X, const floating* x, Py_ssize_t i,
    const floating* lane,         # IN  one center: its tile plus its lane (stride KT)
    Py_ssize_t kt, double cn,     # ||c||^2
) noexcept nogil:
    # ||x_i - c||^2 = ||x||^2 + ||c||^2 - 2 x.c in float64, clipped at 0
    cdef Py_ssize_t p
    cdef double dot = 0.0, v
    for p in range(X.indptr[i], X.indptr[i + 1]):
        dot = FASTKM_MADD(<double>x[p], <double>lane[X.indices[p] * kt], dot)
    v = X.sq_norms[i] + cn - 2.0 * dot
    return v if v > 0.0 else 0.0


def assign_batch(
    CSR X,
    const int[::1] rows,                   # IN  (b,) the batch's rows of X; None: all of X
    const floating[::1] sample_weight,     # IN  (b,) weight of each batch row, batch order
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const floating[::1] hn,                # IN  (n_tiles * KT,) 0.5 ||c||^2, the dtype's max for padding
    const double[::1] cnorm,               # IN  (k,) ||c||^2
    int[::1] labels,                       # OUT (b,) nearest center of each batch row
    double[::1] chunk_inertia,             # scratch (ceil(b / CHUNK),)
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """Nearest center of every batch row (Lloyd's rule on the tile kernels'
    values, the lowest index on ties) and the batch's weighted inertia on
    these centers (float64, per chunk of rows, chunks in order)."""
    cdef Py_ssize_t b = labels.shape[0], k = cnorm.shape[0], d = X.n_cols
    cdef Py_ssize_t kt = ct.shape[2], n_tiles = ct.shape[0]
    cdef Py_ssize_t n_chunks = (b + CHUNK - 1) // CHUNK, ch, r0, cnt, q, t, i
    cdef int a
    cdef double s
    if X.single != (sizeof(floating) == 4) or kt != tile_width(X.single) or ct.shape[1] != d:
        raise ValueError("ct must be X's dtype in the tile layout of sparse_centers.to_tiles")
    if sample_weight.shape[0] != b or chunk_inertia.shape[0] < n_chunks or \
            (rows is not None and rows.shape[0] != b) or (rows is None and X.n_rows != b):
        raise ValueError("assign_batch: rows, weights, labels or scratch do not fit the batch")
    if b == 0:
        return 0.0
    cdef floating[::1] best = np.empty(b, dtype=np.float32 if X.single else np.float64)
    cdef floating[::1] second = np.empty(b, dtype=np.float32 if X.single else np.float64)
    cdef int[::1] arg2 = np.empty(b, dtype=np.int32)
    cdef const int* rp = &rows[0] if rows is not None else NULL
    cdef const floating* x = <const floating*>X.data
    cdef floating* vals
    cdef RegionClock* rc = &region.clock
    cdef double t0, total = 0.0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        vals = <floating*> malloc(2 * kt * sizeof(floating))
        for t in range(n_tiles):
            for ch in prange(n_chunks, schedule="dynamic"):
                r0 = ch * CHUNK
                cnt = min(<Py_ssize_t>CHUNK, b - r0)
                if t == 0:
                    init_best(cnt, &best[r0], &labels[r0], &second[r0], &arg2[r0])
                scan_tile(x, X.indices, X.indptr, (rp + r0) if rp != NULL else NULL, cnt, r0,
                          &ct[t, 0, 0], &hn[t * kt], t * kt, min(kt, k - t * kt), False,
                          &best[r0], &labels[r0], &second[r0], &arg2[r0], vals)
        free(vals)
        for ch in prange(n_chunks, schedule="dynamic"):
            r0 = ch * CHUNK
            s = 0.0
            for q in range(r0, min(b, r0 + CHUNK)):
                i = rp[q] if rp != NULL else q
                a = labels[q]
                s = s + <double>sample_weight[q] * _sq_to_lane(
                    X, x, i, &ct[a // kt, 0, a % kt], kt, cnorm[a])
            chunk_inertia[ch] = s
        region_leave(rc, t0)
    for ch in range(n_chunks):
        total += chunk_inertia[ch]
    return total


def group_batch(
    const int[::1] labels,                 # IN  (b,) the batch's labels
    const floating[::1] sample_weight,     # IN  (b,)
    const double[::1] counts,              # IN  (k,) cumulative weight of each center
    Py_ssize_t[::1] starts,                # OUT (k + 1,) center j's rows are order[starts[j]:starts[j + 1]]
    int[::1] order,                        # OUT (b,) batch positions by label, batch order within
    double[::1] batch_weight,              # OUT (k,) each center's batch weight (batch order)
    double[::1] counts_new,                # OUT (k,) counts + batch weight where it is > 0
):
    """Counting sort of the batch by label (stable), each center's batch weight
    and its cumulative weight after the step. Returns the batch's total weight
    (float64, batch order; the adaptive rate's denominator)."""
    cdef Py_ssize_t b = labels.shape[0], k = counts.shape[0], i, j
    cdef double total = 0.0
    cdef int a
    with nogil:
        for j in range(k + 1):
            starts[j] = 0
        for j in range(k):
            batch_weight[j] = 0.0
        for i in range(b):
            a = labels[i]
            starts[a + 1] += 1
            # the dense kernel's wj: the center's weights in batch order from 0.0
            batch_weight[a] += sample_weight[i]
            total += sample_weight[i]
        for j in range(k):
            starts[j + 1] += starts[j]
            counts_new[j] = counts[j] + batch_weight[j] if batch_weight[j] > 0.0 else counts[j]
        for i in range(b):
            a = labels[i]
            order[starts[a]] = <int>i
            starts[a] += 1
        for j in range(k, 0, -1):
            starts[j] = starts[j - 1]
        starts[0] = 0
    return total


cdef void _scatter(
    CSR X, const floating* x, const int* rp, const floating* sw, const int* order,
    Py_ssize_t q0, Py_ssize_t q1,
    double* sums,                 # IN/OUT (d,) the center's float64 sums, zero on entry
) noexcept nogil:
    # the center's batch rows in batch order: sums[f] += w_i x_if over their nonzeros
    cdef Py_ssize_t q, i, r, p
    cdef double w
    for q in range(q0, q1):
        i = order[q]
        r = rp[i] if rp != NULL else i
        w = sw[i]
        for p in range(X.indptr[r], X.indptr[r + 1]):
            sums[X.indices[p]] += w * x[p]


cdef void _update_block(
    double* sums, Py_ssize_t d, const double* counts, const double* bw, double total,
    const unsigned char* updated, bint adaptive,
    floating* tile,               # IN/OUT (d, KT) the tile's centers
    Py_ssize_t t, Py_ssize_t kt, Py_ssize_t k, Py_ssize_t b, Py_ssize_t f0, Py_ssize_t f1,
    double* shift_part, double* norm_part, Py_ssize_t nb,
) noexcept nogil:
    # the new centers of the tile's updated lanes over features [f0, f1), in the
    # dense kernel's form; the sums read are reset to zero for the next step
    cdef Py_ssize_t l, j, f
    cdef double W, wj, alpha, s, sh, nq, c, diff
    cdef floating old, new
    cdef double* row
    for l in range(kt):
        j = t * kt + l
        if j >= k or not updated[j]:
            continue
        W = counts[j]
        wj = bw[j]
        alpha = sqrt(wj / total) if adaptive else 0.0
        row = sums + j * d
        sh = 0.0
        nq = 0.0
        for f in range(f0, f1):
            old = tile[f * kt + l]
            s = row[f]
            row[f] = 0.0
            if adaptive:
                new = <floating>((1.0 - alpha) * old + alpha * (s / wj))
            else:
                new = <floating>((old * W + s) / (W + wj))
            c = new
            diff = c - <double>old
            sh = sh + diff * diff
            nq = nq + c * c
            tile[f * kt + l] = new
        shift_part[j * nb + b] = sh
        norm_part[j * nb + b] = nq


def update_centers(
    CSR X,
    const int[::1] rows,                   # IN  (b,) the batch's rows of X; None: all of X
    const floating[::1] sample_weight,     # IN  (b,)
    const Py_ssize_t[::1] starts,          # IN  (k + 1,) group_batch's
    const int[::1] order,                  # IN  (b,) group_batch's
    const int[::1] todo,                   # IN  (m,) centers with batch weight > 0
    const unsigned char[::1] updated,      # IN  (k,) 1 for the centers in ``todo``
    const int[::1] tiles,                  # IN  (m_tiles,) tiles holding a center of ``todo``
    const double[::1] counts,              # IN  (k,) cumulative weights before the step
    const double[::1] batch_weight,        # IN  (k,) group_batch's
    double total,                          # IN  group_batch's total batch weight
    bint adaptive,                         # IN  the adaptive learning rate instead of counts
    double[:, ::1] sums,                   # scratch (k, d) float64, zero on entry and on exit
    floating[:, :, ::1] ct,                # IN/OUT (n_tiles, d, KT) the centers
    double[:, ::1] shift_part,             # OUT (k, n_blocks) squared shift per feature block
    double[:, ::1] norm_part,              # OUT (k, n_blocks) squared norm per feature block
    Py_ssize_t block,                      # features per block (sparse_centers.feature_blocks)
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """The centers in ``todo`` moved towards their batch rows, in the tiles, with
    their squared shift and squared norm per feature block (float64, features
    in order; the other centers' entries are left as they are). One parallel
    region: the sums (one thread per center), a barrier, the tiles (one thread
    per (tile, feature block))."""
    cdef Py_ssize_t d = X.n_cols, k = counts.shape[0], kt = ct.shape[2]
    cdef Py_ssize_t nb = shift_part.shape[1], m = todo.shape[0], mt = tiles.shape[0]
    cdef Py_ssize_t q, item, t, bl, f0
    cdef int j
    cdef const int* rp = &rows[0] if rows is not None else NULL
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4) or kt != tile_width(X.single) or ct.shape[1] != d \
            or sums.shape[0] != k or sums.shape[1] != d or nb * block < d:
        raise ValueError("update_centers: tiles, sums or feature blocks do not fit the centers")
    if m == 0:
        return
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for q in prange(m, schedule="dynamic"):
            j = todo[q]
            _scatter(X, <const floating*>X.data, rp, &sample_weight[0], &order[0], starts[j],
                     starts[j + 1], &sums[j, 0])
        for item in prange(mt * nb, schedule="dynamic"):
            t = tiles[item // nb]
            bl = item % nb
            f0 = bl * block
            _update_block(&sums[0, 0], d, &counts[0], &batch_weight[0], total, &updated[0],
                          adaptive, &ct[t, 0, 0], t, kt, k, bl, f0, min(d, f0 + block),
                          &shift_part[0, 0], &norm_part[0, 0], nb)
        region_leave(rc, t0)


cdef inline Py_ssize_t _first_at_or_after(const int* ind, Py_ssize_t lo, Py_ssize_t hi,
                                          Py_ssize_t f) noexcept nogil:
    # the first position in [lo, hi) whose column is >= f (columns increase)
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if ind[mid] < f:
            lo = mid + 1
        else:
            hi = mid
    return lo


def reassign_lanes(
    CSR X,
    const Py_ssize_t[::1] rows,            # IN  (m,) the rows of X the centers move to
    const int[::1] centers,                # IN  (m,) the centers that move, increasing
    const int[::1] tiles,                  # IN  (m_tiles,) the tiles holding them
    floating[:, :, ::1] ct,                # IN/OUT (n_tiles, d, KT) the centers
    double[:, ::1] norm_part,              # OUT (k, n_blocks) the moved centers' rows
    double[:, ::1] shift_part,             # OUT (m, n_blocks) squared movement per feature block
    Py_ssize_t block,                      # features per block (sparse_centers.feature_blocks)
    int n_threads,
):
    """Random reassignment: each moving center's tile lane becomes a CSR row
    (densified in place), with its squared norm per feature block (as
    ``update_centers`` computes them) and the squared distance it moved per
    block (float64, features in order). One thread per (tile, feature block):
    the tile's block stays in cache across its lanes."""
    cdef Py_ssize_t m = centers.shape[0], d = X.n_cols, kt = ct.shape[2]
    cdef Py_ssize_t nb = norm_part.shape[1], mt = tiles.shape[0], item, t, q, i, p, pend
    cdef Py_ssize_t f, f0, f1, bl
    cdef int j
    cdef double sh, nq, c, diff
    cdef floating v
    cdef floating* lane
    cdef const floating* x = <const floating*>X.data
    if X.single != (sizeof(floating) == 4) or kt != tile_width(X.single) or ct.shape[1] != d \
            or rows.shape[0] != m or shift_part.shape[0] != m or shift_part.shape[1] != nb \
            or nb * block < d:
        raise ValueError("reassign_lanes: rows, tiles or feature blocks do not fit the centers")
    for item in prange(mt * nb, nogil=True, schedule="dynamic", num_threads=n_threads):
        t = tiles[item // nb]
        bl = item % nb
        f0 = bl * block
        f1 = min(d, f0 + block)
        for q in range(m):
            j = centers[q]
            if j // kt != t:
                continue
            lane = &ct[t, 0, j % kt]
            i = rows[q]
            pend = X.indptr[i + 1]
            p = _first_at_or_after(X.indices, X.indptr[i], pend, f0)
            sh = 0.0
            nq = 0.0
            for f in range(f0, f1):
                # the row's columns increase: its next nonzero or a zero
                if p < pend and X.indices[p] == f:
                    v = x[p]
                    p = p + 1
                else:
                    v = 0
                c = v
                diff = c - <double>lane[f * kt]
                sh = sh + diff * diff
                nq = nq + c * c
                lane[f * kt] = v
            norm_part[j, bl] = nq
            shift_part[q, bl] = sh
