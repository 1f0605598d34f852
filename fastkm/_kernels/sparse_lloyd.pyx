"""Lloyd's assignment for CSR rows against dense centers (``assign``: labels of
a fit's iteration and of ``predict``), the distances of ``transform``, and the
Gram matrix of the centers (the bounded algorithms' center-center distances).

The centers are transposed into tiles of KT centers (``sparse_centers``): a
row's nonzero in column f reads the KT contiguous values of row f of a tile,
and a group of CHUNK rows is scanned one tile at a time, so the tile's rows
stay in cache across the group (``csr_tiles.scan_rows``). Rows are handed out
in chunks dynamically; each row's label is computed by one thread in a fixed
order, so labels are the same for any thread count.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastkm._kernels.csr cimport CSR
from fastkm._kernels.csr_tiles cimport (
    fastkm_gram_4x8, init_best, row_values, scan_tile, tile_width,
)
from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave


def assign(
    CSR X,
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers (sparse_centers.to_tiles)
    const floating[::1] hn,                # IN  (n_tiles * KT,) 0.5 ||c||^2, the dtype's max for padding
    Py_ssize_t n_clusters,
    int[::1] labels,                       # IN/OUT (n,) previous labels on entry, nearest center on exit
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """Nearest center of every row: the smallest comparison value
    0.5||c||^2 - x.c (``csr_tiles.pxd``), the lowest index on ties.

    Tiles are the outer loop: all rows meet one tile of centers before the
    next, so that the tile (d x KT values) stays in the last-level cache while
    every row reads it.

    Returns
    -------
    n_changed : int
        Rows whose label differs from the one on entry.
    """
    cdef Py_ssize_t n = X.n_rows, d = X.n_cols, kt = ct.shape[2], n_tiles = ct.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, ch, r0, rows, q, t, changed = 0
    if X.single != (sizeof(floating) == 4) or kt != tile_width(X.single) or ct.shape[1] != d:
        raise ValueError("ct must be X's dtype in the tile layout of sparse_centers.to_tiles")
    if n == 0:
        return 0
    cdef floating[::1] best = np.empty(n, dtype=np.float32 if X.single else np.float64)
    cdef floating[::1] second = np.empty(n, dtype=np.float32 if X.single else np.float64)
    cdef int[::1] arg = np.empty(n, dtype=np.int32)
    cdef int[::1] arg2 = np.empty(n, dtype=np.int32)
    cdef floating* vals
    cdef const floating* x = <const floating*>X.data
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        vals = <floating*> malloc(2 * kt * sizeof(floating))
        for t in range(n_tiles):
            for ch in prange(n_chunks, schedule="dynamic"):
                r0 = ch * CHUNK
                rows = min(<Py_ssize_t>CHUNK, n - r0)
                if t == 0:
                    init_best(rows, &best[r0], &arg[r0], &second[r0], &arg2[r0])
                scan_tile(x, X.indices, X.indptr, NULL, rows, r0, &ct[t, 0, 0], &hn[t * kt],
                          t * kt, min(kt, n_clusters - t * kt), False, &best[r0], &arg[r0],
                          &second[r0], &arg2[r0], vals)
        free(vals)
        for ch in prange(n_chunks, schedule="static"):
            r0 = ch * CHUNK
            for q in range(r0, min(n, r0 + CHUNK)):
                changed += arg[q] != labels[q]
                labels[q] = arg[q]
        region_leave(rc, t0)
    return changed


def distances(
    CSR X,
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    const floating[::1] hn,                # IN  (n_tiles * KT,)
    floating[:, ::1] out,                  # OUT (n, k) Euclidean distance to every center
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """Euclidean distance of every row to every center (``transform``):
    sqrt(max(0, ||x||^2 + 2 (0.5||c||^2 - x.c))), in the data's dtype."""
    cdef Py_ssize_t n = X.n_rows, d = X.n_cols, k = out.shape[1], kt = ct.shape[2]
    cdef Py_ssize_t n_tiles = ct.shape[0], i, t, l, j, p0, m
    cdef floating* vals
    cdef double v
    cdef const floating* x = <const floating*>X.data
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if X.single != (sizeof(floating) == 4) or kt != tile_width(X.single) or ct.shape[1] != d:
        raise ValueError("ct must be X's dtype in the tile layout of sparse_centers.to_tiles")
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        vals = <floating*> malloc(kt * sizeof(floating))
        for i in prange(n, schedule="static"):
            p0 = X.indptr[i]
            m = X.indptr[i + 1] - p0
            for t in range(n_tiles):
                row_values(x + p0, X.indices + p0, m, &ct[t, 0, 0], &hn[t * kt], vals)
                for l in range(min(kt, k - t * kt)):
                    j = t * kt + l
                    v = X.sq_norms[i] + 2.0 * <double>vals[l]
                    out[i, j] = <floating>(sqrt(v) if v > 0.0 else 0.0)
        free(vals)
        region_leave(rc, t0)


cdef enum:
    PANEL = 256   # features per panel of the Gram kernel (kp float64 values each)


def gram_blocks(Py_ssize_t n_clusters, Py_ssize_t n_features):
    """(n_blocks, features_per_block) of ``center_gram``: fixed by the shape.
    Blocks have at least 1024 features, and the partial Gram matrices
    (n_blocks x kp x kp float64) stay within about 16 MiB."""
    cdef Py_ssize_t kp = (n_clusters + 8 - 1) // 8 * 8
    cdef Py_ssize_t cap = max(1, (16 << 20) // (8 * kp * kp))
    cdef Py_ssize_t nb = max(1, min(cap, (n_features + 1024 - 1) // 1024))
    cdef Py_ssize_t rows = (n_features + nb - 1) // nb
    return int((n_features + rows - 1) // rows), int(rows)


def center_gram(
    const floating[:, :, ::1] ct,          # IN  (n_tiles, d, KT) the centers
    Py_ssize_t n_clusters,
    double[:, :, ::1] partial,             # OUT (n_blocks, kp, kp) Gram matrix per feature block
    Py_ssize_t rows_per_block,             # gram_blocks(...)[1]
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """Partial Gram matrices c_a . c_b of the centers, one per fixed block of
    features (float64, features in order); ``partial.sum(axis=0)`` (blocks in
    order) is the Gram matrix. kp = n_clusters rounded up to 8; the entries
    with b >= a are filled (in 4 x 8 tiles), the caller mirrors them. Each
    block is computed by one thread: the same bits for any thread count."""
    cdef Py_ssize_t d = ct.shape[1], kt = ct.shape[2], nb = partial.shape[0]
    cdef Py_ssize_t kp = partial.shape[1], b, f0, f1, p0, p1, a0, b0
    cdef double* panel
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        panel = <double*> malloc(PANEL * kp * sizeof(double))
        for b in prange(nb, schedule="dynamic"):
            f0 = b * rows_per_block
            f1 = min(d, f0 + rows_per_block)
            memset(&partial[b, 0, 0], 0, kp * kp * sizeof(double))
            p0 = f0
            while p0 < f1:
                # PANEL features x kp centers in float64, zero padded; each
                # tile's sums go on from where the last panel left them
                p1 = min(f1, p0 + PANEL)
                _fill_panel(&ct[0, 0, 0], d, kt, n_clusters, kp, p0, p1, panel)
                a0 = 0
                while a0 < kp:
                    b0 = (a0 // 8) * 8
                    while b0 < kp:
                        fastkm_gram_4x8(panel, p1 - p0, kp, a0, b0, &partial[b, a0, b0], kp)
                        b0 = b0 + 8
                    a0 = a0 + 4
                p0 = p1
        free(panel)
        region_leave(rc, t0)


cdef inline void _fill_panel(
    const floating* ct, Py_ssize_t d, Py_ssize_t kt, Py_ssize_t k, Py_ssize_t kp,
    Py_ssize_t p0, Py_ssize_t p1,
    double* panel,                # OUT (p1 - p0, kp) features p0 .. p1 of every center, float64
) noexcept nogil:
    cdef Py_ssize_t f, t, l, j
    cdef const floating* row
    for f in range(p0, p1):
        for t in range((kp + kt - 1) // kt):
            row = ct + (t * d + f) * kt
            for l in range(kt):
                j = t * kt + l
                if j >= kp:
                    break
                panel[(f - p0) * kp + j] = <double>row[l] if j < k else 0.0
