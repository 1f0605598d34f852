"""Lloyd's algorithm: the fused assignment + center-sum pass (``lloyd_iter``),
and the assignment kernels of ``predict`` (``assign_labels``) and ``transform``
(``pairwise_distances``).

Labels are found one tile of CHUNK rows at a time (``tiles.pxd``), the tiles
handed out dynamically so that threads on slower or busier cores take fewer.
A reduction block's sums are taken, rows in order, by whichever thread labels
the block's last tile (an acquire-release countdown, no barrier), and the
blocks are merged in block order inside the same parallel region
(``reduce.block_done``): the centers' sums are the same bits for any thread
count, and an iteration is one parallel region.

Every buffer is allocated by the caller; the kernels only fill them.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastkm._kernels.layout import dot_tiles
from fastkm._kernels.accumulate cimport accumulate_rows, sum_changed
from fastkm._kernels.layout cimport CHUNK, DIRECT_MAX_D
from fastkm._kernels.numerics cimport rounding_bound
from fastkm._kernels.reduce cimport BlockSums, Merge, block_done, fastkm_countdown
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport (
    DOT_CT, argmin_chunk_direct, argmin_chunk_dot, argmin_chunk_pruned, pack_neg_chunk,
    transpose_chunk,
)


cdef struct AssignCtx:
    # read-only, one per kernel call; pointers are to ``floating`` unless typed
    const void* X             # (n, d)
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t k
    const void* centers       # (k, d)
    const void* cpack         # (n_tiles * d, DOT_CT) centers in dot tiles (use_dot)
    const void* half_cnorm    # (n_tiles * DOT_CT,) 0.5 ||c||^2, +max for padding (use_dot)
    Py_ssize_t n_tiles
    bint use_dot              # d > DIRECT_MAX_D: 0.5||c||^2 - x.c through dot tiles
    bint prune                # rows in spatial order: tiles skip centers their box rules out
    double margin             # pruning: relative margin over the distances' rounding
    const double* centers_t   # (d, k) the centers transposed, float64 (prune)
    const void* xt_all        # (n_chunks, d, CHUNK) X in tile layout, or NULL


cdef struct Scratch:
    # one per thread, allocated inside the parallel region
    void* xt                  # (d, CHUNK) a transposed chunk
    void* best                # (CHUNK,)
    void* acc                 # (max(CHUNK, k),)
    int* lab                  # (CHUNK,)
    void* cand                # (k, d) pruning: the candidate centers
    int* cand_ids             # (k,)
    double* dmin              # (k,)
    double* dmax              # (k,)


cdef class _Operands:
    """The centers in the layouts one assignment pass reads, and the context
    pointing at them (the arrays stay alive as long as this object)."""
    cdef AssignCtx ctx
    cdef object _keep

    def __cinit__(self, X, centers, bint prune, xt_all):
        X = np.asarray(X)
        centers = np.asarray(centers)
        cdef Py_ssize_t d = X.shape[1]
        cdef bint use_dot = d > DIRECT_MAX_D
        if use_dot:
            cpack, hn = dot_tiles(centers, DOT_CT)
        else:
            cpack = hn = np.zeros(1, dtype=X.dtype)
        prune = prune and not use_dot
        cent_t = np.ascontiguousarray(centers.T, dtype=np.float64)
        if xt_all is None or use_dot:
            xt_all = None
        self._keep = (X, centers, cpack, hn, cent_t, xt_all)
        self.ctx.X = <const void*><size_t>X.ctypes.data
        self.ctx.n = X.shape[0]
        self.ctx.d = d
        self.ctx.k = centers.shape[0]
        self.ctx.centers = <const void*><size_t>centers.ctypes.data
        self.ctx.cpack = <const void*><size_t>cpack.ctypes.data
        self.ctx.half_cnorm = <const void*><size_t>hn.ctypes.data
        self.ctx.n_tiles = cpack.shape[0] // d if use_dot else 0
        self.ctx.use_dot = use_dot
        self.ctx.prune = prune
        self.ctx.margin = 2.0 * rounding_bound(d, X.dtype.itemsize == 4)
        self.ctx.centers_t = <const double*><size_t>cent_t.ctypes.data
        self.ctx.xt_all = NULL if xt_all is None else <const void*><size_t>xt_all.ctypes.data


cdef Scratch* _scratch_new(const AssignCtx* c, Py_ssize_t itemsize) noexcept nogil:
    cdef Scratch* s = <Scratch*> malloc(sizeof(Scratch))
    s.xt = malloc(CHUNK * c.d * itemsize)
    s.best = malloc(CHUNK * itemsize)
    s.acc = malloc(max(<Py_ssize_t>CHUNK, c.k) * itemsize)
    s.lab = <int*> malloc(CHUNK * sizeof(int))
    s.cand = NULL
    s.cand_ids = NULL
    s.dmin = NULL
    s.dmax = NULL
    if c.prune:
        s.cand = malloc(c.k * c.d * itemsize)
        s.cand_ids = <int*> malloc(c.k * sizeof(int))
        s.dmin = <double*> malloc(c.k * sizeof(double))
        s.dmax = <double*> malloc(c.k * sizeof(double))
    return s


cdef void _scratch_free(Scratch* s) noexcept nogil:
    free(s.xt)
    free(s.best)
    free(s.acc)
    free(s.lab)
    free(s.cand)
    free(s.cand_ids)
    free(s.dmin)
    free(s.dmax)
    free(s)


cdef inline void _assign_chunk(
    const floating* X,        # IN  (n, d) the context's X, typed
    const AssignCtx* c, Scratch* s, Py_ssize_t ch,
    int* lab,                 # OUT (rows,) nearest center of each row of chunk ch
) noexcept nogil:
    cdef Py_ssize_t start = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.n - start), d = c.d
    cdef floating* xt = <floating*>s.xt
    cdef const floating* tile = xt
    if c.use_dot:
        pack_neg_chunk(X + start * d, rows, d, xt)
        argmin_chunk_dot(xt, rows, d, <const floating*>c.cpack, <const floating*>c.half_cnorm,
                         c.n_tiles, lab)
        return
    if c.xt_all != NULL:
        tile = <const floating*>c.xt_all + (ch * d) * CHUNK
    else:
        transpose_chunk(X + start * d, rows, d, xt)
    if c.prune:
        argmin_chunk_pruned(tile, rows, d, <const floating*>c.centers, c.centers_t, c.k,
                            <floating*>s.best, lab, <floating*>s.acc, <floating*>s.cand,
                            s.cand_ids, s.dmin, s.dmax, c.margin)
    else:
        argmin_chunk_direct(tile, rows, d, <const floating*>c.centers, c.k, <floating*>s.best,
                            lab, <floating*>s.acc)


cdef Py_ssize_t _label_chunk(
    const floating* X, const AssignCtx* c, Scratch* s, Py_ssize_t ch,
    int* labels,              # IN/OUT (n,) previous labels on entry
) noexcept nogil:
    # label one chunk; return how many of its labels changed
    cdef Py_ssize_t i, changed = 0, start = ch * CHUNK
    cdef Py_ssize_t rows = min(<Py_ssize_t>CHUNK, c.n - start)
    cdef int l
    _assign_chunk(X, c, s, ch, s.lab)
    for i in range(rows):
        l = s.lab[i]
        changed += l != labels[start + i]
        labels[start + i] = l
    return changed


def lloyd_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    int[::1] labels,                       # IN/OUT (n_samples,)
    BlockSums sums,                        # OUT per-block and merged center sums
    Region region,                         # IN  thread count; OUT the threads' CPU time
    bint prune=False,
    const floating[:, :, ::1] xt_all=None,  # IN  optional X in tile layout (``transpose_chunks``)
):
    """One Lloyd iteration without the division: labels and per-center sums.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), same dtype as X
    centers : ndarray of shape (n_clusters, n_features), same dtype as X
    labels : int32 ndarray of shape (n_samples,)
        Previous labels on entry, new labels on exit.
    sums : BlockSums of the same shape
        ``sums.sums`` / ``sums.weights``: weighted sum and total weight of the
        samples nearest to each center (float64, block-ordered).
    region : Region
        The thread count to run with; the kernel records its threads' CPU time.
    prune : bool
        Rows are sorted so that consecutive rows are close (few features
        only): skip, per tile, the centers that the tile's bounding box proves
        cannot be nearest. Same labels; faster only on such data.
    xt_all : optional, X in tile layout (few features), read instead of
        transposing each chunk.

    Returns
    -------
    n_changed : int
        Number of samples whose label changed.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, ch, b, start, end
    cdef Py_ssize_t rpb = sums.rows_per_block, cpb = rpb // CHUNK
    cdef Py_ssize_t[::1] chunk_changed = np.empty(n_chunks, dtype=np.intp)
    cdef Py_ssize_t[::1] pending = np.empty(sums.n_blocks, dtype=np.intp)
    cdef _Operands ops = _Operands(X, centers, prune, None if xt_all is None else np.asarray(xt_all))
    cdef const AssignCtx* c = &ops.ctx
    cdef double* bsum = &sums.block_sums[0, 0, 0]
    cdef double* bwt = &sums.block_weights[0, 0]
    cdef Merge* m = sums.start_merge()
    cdef RegionClock* rc = &region.clock
    cdef Scratch* s
    cdef double t0
    for b in range(sums.n_blocks):
        pending[b] = min(cpb, n_chunks - b * cpb)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c, sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            chunk_changed[ch] = _label_chunk(&X[0, 0], c, s, ch, &labels[0])
            b = ch // cpb
            if fastkm_countdown(&pending[b]) == 0:
                # the block's last chunk: its sums, rows in order, then merge
                start = b * rpb
                end = min(n, start + rpb)
                memset(bsum + b * k * d, 0, k * d * sizeof(double))
                memset(bwt + b * k, 0, k * sizeof(double))
                accumulate_rows(&X[0, 0], &sample_weight[0], &labels[0], start, end, d,
                                bsum + b * k * d, bwt + b * k)
                block_done(m, b)
        _scratch_free(s)
        region_leave(rc, t0)
    return sum_changed(&chunk_changed[0], n_chunks)


def assign_labels(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    int[::1] labels,                   # OUT (n_samples,)
    Region region,                     # IN  thread count; OUT the threads' CPU time
    bint prune=False,
    const floating[:, :, ::1] xt_all=None,  # IN  optional X in tile layout
):
    """Index of the nearest center for every sample (no distance matrix): the
    labels ``lloyd_iter`` would give. ``prune`` as in ``lloyd_iter``."""
    cdef Py_ssize_t n = X.shape[0], n_chunks = (n + CHUNK - 1) // CHUNK, ch
    cdef _Operands ops = _Operands(X, centers, prune, None if xt_all is None else np.asarray(xt_all))
    cdef const AssignCtx* c = &ops.ctx
    cdef RegionClock* rc = &region.clock
    cdef Scratch* s
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c, sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            _assign_chunk(&X[0, 0], c, s, ch, &labels[ch * CHUNK])
        _scratch_free(s)
        region_leave(rc, t0)


def pairwise_distances(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    floating[:, ::1] out,              # OUT (n_samples, n_clusters)
    Region region,                     # IN  thread count; OUT the threads' CPU time
):
    """Euclidean distance from every sample to every center (``transform``)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0], i, j, f
    cdef floating[:, ::1] centers_t = np.ascontiguousarray(np.asarray(centers).T)
    cdef floating xf, t
    cdef RegionClock* rc = &region.clock
    cdef double t0
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        for i in prange(n, schedule="static"):
            for j in range(k):
                out[i, j] = 0
            for f in range(d):
                xf = X[i, f]
                for j in range(k):
                    t = xf - centers_t[f, j]
                    out[i, j] = out[i, j] + t * t
            for j in range(k):
                out[i, j] = sqrt(out[i, j])
        region_leave(rc, t0)
