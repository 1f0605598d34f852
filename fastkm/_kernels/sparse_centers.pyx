"""The centers of a sparse fit: dense (k, d) centers to and from the tile layout
the sparse kernels read, the center update, and the rows' exact distances to
their centers (relocation, inertia).

The tile layout is (n_tiles, d, KT): tile t holds centers t*KT .. t*KT + KT - 1
transposed, so a row's nonzero in column f reads KT contiguous values
(``csr_tiles.pxd``); padding lanes are zero.

The update (``update_centers``) takes each changed cluster's weighted float64
sum over its rows in row order (one thread per cluster: each element adds its
rows in row order from 0.0, the same bits for any thread count and for every
algorithm given the same labels), then the new centers, their squared shifts
and squared norms in fixed feature blocks (one thread per (tile, block) work
item; the per-block partials are added in block order by the caller).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport tile_width
from fastkm._kernels.numerics cimport FASTKM_MADD
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave

cdef enum:
    FBLOCK = 1024   # features per work item of the tile passes

FEATURE_BLOCK = FBLOCK


def feature_blocks(Py_ssize_t n_features):
    """(n_blocks, features_per_block) of the tile passes: fixed by the shape."""
    return max(1, (n_features + FBLOCK - 1) // FBLOCK), FBLOCK


def tile_shape(Py_ssize_t n_clusters, Py_ssize_t n_features, bint single):
    """Shape of the tile layout of (n_clusters, n_features) centers."""
    cdef Py_ssize_t kt = tile_width(single)
    return ((n_clusters + kt - 1) // kt, n_features, kt)


def to_tiles(
    const floating[:, ::1] centers,        # IN  (k, d)
    floating[:, :, ::1] ct,                # OUT (n_tiles, d, KT) padding lanes zero
    double[:, ::1] norm_part,              # OUT (k, n_blocks) squared norm per feature block
    int n_threads,
):
    """Centers into the tile layout, and their squared norms per feature block
    (float64, features in order; ``norm_part.sum(axis=1)`` is ||c||^2)."""
    cdef Py_ssize_t k = centers.shape[0], d = centers.shape[1], kt = ct.shape[2]
    cdef Py_ssize_t n_tiles = ct.shape[0], nb = norm_part.shape[1]
    cdef Py_ssize_t item, t, b, f, f0, f1, l, j
    cdef double s, v
    for item in prange(n_tiles * nb, nogil=True, schedule="dynamic", num_threads=n_threads):
        t = item // nb
        b = item % nb
        f0 = b * FBLOCK
        f1 = min(d, f0 + FBLOCK)
        for l in range(kt):
            j = t * kt + l
            s = 0.0
            for f in range(f0, f1):
                if j < k:
                    v = centers[j, f]
                    ct[t, f, l] = centers[j, f]
                    s = s + v * v
                else:
                    ct[t, f, l] = 0
            if j < k:
                norm_part[j, b] = s


def from_tiles(
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT)
    floating[:, ::1] out,                  # OUT (k, d)
    int n_threads,
):
    """The (k, d) centers of a tile layout."""
    cdef Py_ssize_t k = out.shape[0], d = out.shape[1], kt = ct.shape[2], j, f, t, l
    cdef const floating* lane
    cdef floating* row
    for j in prange(k, nogil=True, schedule="static", num_threads=n_threads):
        t = j // kt
        l = j - t * kt
        lane = &ct[t, 0, l]
        row = &out[j, 0]
        for f in range(d):
            row[f] = lane[f * kt]


cdef void _accumulate(
    CSR X, const floating* x, const floating* sw, const int* order, Py_ssize_t r0,
    Py_ssize_t r1,
    double* sums,                 # IN/OUT (d,) the cluster's sums, zero on entry
) noexcept nogil:
    cdef Py_ssize_t r, i, p
    cdef double wi
    for r in range(r0, r1):
        i = order[r]
        wi = sw[i]
        for p in range(X.indptr[i], X.indptr[i + 1]):
            sums[X.indices[p]] = FASTKM_MADD(wi, <double>x[p], sums[X.indices[p]])


cdef void _update_block(
    double* sums, Py_ssize_t d, const double* weights, const unsigned char* update,
    floating* tile,               # IN/OUT (d, KT) the tile's centers
    Py_ssize_t t, Py_ssize_t kt, Py_ssize_t k, Py_ssize_t b, Py_ssize_t f0, Py_ssize_t f1,
    double* shift_part, double* norm_part, Py_ssize_t nb,
) noexcept nogil:
    # new centers = sums / weights for the tile's updated lanes over features
    # [f0, f1); the sums read are reset to zero for the next update
    cdef Py_ssize_t l, j, f
    cdef double w, s, q, c, diff
    cdef floating v
    cdef double* row
    for l in range(kt):
        j = t * kt + l
        if j >= k or not update[j]:
            continue
        w = weights[j]
        row = sums + j * d
        s = 0.0
        q = 0.0
        for f in range(f0, f1):
            v = <floating>(row[f] / w)
            row[f] = 0.0
            c = v
            diff = c - <double>tile[f * kt + l]
            s = s + diff * diff
            q = q + c * c
            tile[f * kt + l] = v
        shift_part[j * nb + b] = s
        norm_part[j * nb + b] = q


def update_centers(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    const int[::1] order,                  # IN  (n,) rows by label (csr.group_rows)
    const Py_ssize_t[::1] offsets,         # IN  (k + 1,) each label's range of ``order``
    const int[::1] todo,                   # IN  (m,) clusters to update (changed rows, weight > 0)
    const unsigned char[::1] update,       # IN  (k,) 1 for the clusters in ``todo``
    const int[::1] tiles,                  # IN  (m_tiles,) tiles holding a cluster of ``todo``
    const double[::1] weights,             # IN  (k,) total weight per cluster
    double[:, ::1] sums,                   # scratch (k, d) float64, zero on entry and on exit
    floating[:, :, ::1] ct,                # IN/OUT (n_tiles, d, KT) the centers
    double[:, ::1] shift_part,             # OUT (k, n_blocks) squared shift per feature block
    double[:, ::1] norm_part,              # OUT (k, n_blocks) squared norm per feature block
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """The M-step of the clusters in ``todo``: their sums over their rows, then
    center = sum / weight, written into the tiles, with the squared shift and
    squared norm of each updated center per feature block (the other clusters'
    entries are left as they are). One parallel region: the sums, a barrier,
    the tiles."""
    cdef Py_ssize_t d = X.n_cols, k = weights.shape[0], kt = ct.shape[2]
    cdef Py_ssize_t nb = shift_part.shape[1], m = todo.shape[0], mt = tiles.shape[0]
    cdef Py_ssize_t q, item, t, b, f0
    cdef int j
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4):
        raise TypeError("sample_weight and ct must have X's dtype")
    if m == 0:
        return
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for q in prange(m, schedule="dynamic"):
            j = todo[q]
            _accumulate(X, <const floating*>X.data, &sample_weight[0], &order[0], offsets[j],
                        offsets[j + 1], &sums[j, 0])
        for item in prange(mt * nb, schedule="dynamic"):
            t = tiles[item // nb]
            b = item % nb
            f0 = b * FBLOCK
            _update_block(&sums[0, 0], d, &weights[0], &update[0], &ct[t, 0, 0], t, kt, k,
                          b, f0, min(d, f0 + FBLOCK), &shift_part[0, 0],
                          &norm_part[0, 0], nb)
        region_leave(rc, t0)


cdef inline double _assigned_sq(CSR X, const floating* x, const floating* ct, Py_ssize_t kt,
                                const double* cnorm, Py_ssize_t i, int a) noexcept nogil:
    # ||x_i - c_a||^2 = ||x||^2 + ||c||^2 - 2 x.c in float64, clipped at 0
    cdef const floating* lane = ct + (a // kt) * X.n_cols * kt + a % kt
    cdef Py_ssize_t p
    cdef double dot = 0.0, v
    for p in range(X.indptr[i], X.indptr[i + 1]):
        dot = FASTKM_MADD(<double>x[p], <double>lane[X.indices[p] * kt], dot)
    v = X.sq_norms[i] + cnorm[a] - 2.0 * dot
    return v if v > 0.0 else 0.0


def assigned_sq_distances(
    CSR X,
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const double[::1] cnorm,               # IN  (k,) ||c||^2
    const int[::1] labels,                 # IN  (n,)
    double[::1] out,                       # OUT (n,) squared distance of each row to its center
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """Squared distance of every row to its assigned center, in float64 (empty
    clusters go to the farthest rows)."""
    cdef Py_ssize_t n = X.n_rows, kt = ct.shape[2], i
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for i in prange(n, schedule="static"):
            out[i] = _assigned_sq(X, <const floating*>X.data, &ct[0, 0, 0], kt, &cnorm[0], i,
                                  labels[i])
        region_leave(rc, t0)


def inertia(
    CSR X,
    const floating[::1] sample_weight,     # IN  (n,)
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const double[::1] cnorm,               # IN  (k,) ||c||^2
    const int[::1] labels,                 # IN  (n,)
    double[::1] block_partials,            # scratch (n_blocks,)
    Py_ssize_t rows_per_block,
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """sum_i w_i ||x_i - c_{labels_i}||^2 in float64: per fixed row block, rows in
    order, blocks added in order (the same bits for any thread count, and for
    every algorithm given the same labels and centers)."""
    cdef Py_ssize_t n = X.n_rows, kt = ct.shape[2], nb = block_partials.shape[0]
    cdef Py_ssize_t b, i, end
    cdef double s, total = 0.0
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for b in prange(nb, schedule="dynamic"):
            s = 0.0
            end = min(n, (b + 1) * rows_per_block)
            for i in range(b * rows_per_block, end):
                s = s + <double>sample_weight[i] * _assigned_sq(
                    X, <const floating*>X.data, &ct[0, 0, 0], kt, &cnorm[0], i, labels[i])
            block_partials[b] = s
        region_leave(rc, t0)
    for b in range(nb):
        total += block_partials[b]
    return total
