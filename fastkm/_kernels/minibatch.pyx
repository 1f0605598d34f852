"""One step of mini-batch K-Means (``minibatch_step``): gather the batch's rows,
label them with the tile kernels, and move every center towards the mean of
its batch rows, grouped by label with a counting sort.

The labels are those ``lloyd.assign_labels`` gives for the same rows and
centers: the same tile kernels, the same center packing, the same half norms
(from the caller's ``np.einsum`` squared norms). The update visits each
center's rows in batch order and sums them in float64 in one thread, so the
new centers, the cumulative weights and the batch inertia (per-chunk float64
partials added in chunk order) are the same bits for any thread count. A step
is one parallel region (gather, labels, per-chunk inertia) and an update of
O(batch x d + k x d) work after it: no O(batch x k) scan. No random number
is drawn here.

Every buffer is allocated by the caller (``StepBuffers``); the kernel only
fills it.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from fastkm._kernels.layout cimport CHUNK, DIRECT_MAX_D
from fastkm._kernels.numerics cimport exact_sq_dist, prefetch_row
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport (
    DOT_CT, argmin_chunk_direct, argmin_chunk_dot, pack_neg_chunk, transpose_chunk,
)


cdef enum:
    AHEAD = 8       # batch rows prefetched ahead of the gather (random rows of X: DRAM)


cdef struct StepCtx:
    # one per kernel call; pointers are to ``floating`` unless typed
    const void* X              # (n, d) the rows the batch is drawn from
    const Py_ssize_t* rows     # (b,) the batch's rows of X, or NULL: X's rows in order
    void* batch                # (b, d) OUT the batch's rows (X itself when rows is NULL)
    const void* sw             # (b,) weight of each batch row
    Py_ssize_t b
    Py_ssize_t d
    Py_ssize_t k
    const void* centers        # (k, d)
    void* centers_new          # (k, d) OUT
    double* counts             # (k,) IN/OUT cumulative weight of each center
    bint use_dot               # d > DIRECT_MAX_D: 0.5||c||^2 - x.c through dot tiles
    const void* cpack          # (n_tiles * d, DOT_CT) the centers in dot tiles (use_dot)
    const void* hn             # (n_tiles * DOT_CT,) 0.5 ||c||^2, the dtype's max for padding
    Py_ssize_t n_tiles
    int* labels                # OUT (b,)
    double* chunk_inertia      # OUT (n_chunks,) weighted squared distances per chunk
    Py_ssize_t* starts         # scratch (k + 1,) counting sort: first sorted row of each label
    Py_ssize_t* fill           # scratch (k,)
    int* order                 # scratch (b,) batch rows grouped by label, batch order within
    double* acc                # scratch (d,) one center's float64 sums
    double* shift2             # OUT (k,) squared movement of each center
    bint adaptive              # learning rate sqrt(w_batch,j / w_batch) instead of counts


cdef struct Scratch:
    # one per thread, allocated inside the parallel region
    void* xt                   # (d, CHUNK) a transposed (or negated, packed) chunk
    void* best                 # (CHUNK,)
    void* acc                  # (CHUNK,)


cdef class StepBuffers:
    """Scratch and outputs of ``minibatch_step`` for batches of up to
    ``max_rows`` rows, ``n_clusters`` centers and ``n_features`` features in
    ``dtype`` (float32 or float64). Reused from step to step.

    Attributes
    ----------
    labels : ndarray of shape (max_rows,), int32
        The batch's labels after a step (its first ``b`` entries).
    shift2 : ndarray of shape (n_clusters,), float64
        Squared distance each center moved in the last step.
    batch : ndarray of shape (max_rows, n_features)
        The gathered batch rows after a step with ``rows``.
    """
    cdef readonly Py_ssize_t max_rows, n_clusters, n_features
    cdef readonly object labels, shift2, batch
    cdef object _keep
    cdef Py_ssize_t n_tiles
    cdef void* batch_ptr
    cdef StepCtx ctx

    def __cinit__(self, Py_ssize_t max_rows, Py_ssize_t n_clusters, Py_ssize_t n_features,
                  dtype):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        max_rows = max(1, max_rows)
        self.max_rows, self.n_clusters, self.n_features = max_rows, n_clusters, n_features
        self.n_tiles = (n_clusters + DOT_CT - 1) // DOT_CT  # C division: no -(-a // b)
        use_dot = n_features > DIRECT_MAX_D
        self.labels = np.zeros(max_rows, dtype=np.int32)
        self.shift2 = np.zeros(n_clusters)
        self.batch = np.zeros((max_rows, n_features), dtype=dtype)
        n_chunks = (max_rows + CHUNK - 1) // CHUNK
        chunk_inertia = np.zeros(n_chunks)
        starts = np.zeros(n_clusters + 1, dtype=np.intp)
        fill = np.zeros(n_clusters, dtype=np.intp)
        order = np.zeros(max_rows, dtype=np.int32)
        acc = np.zeros(n_features)
        cpack = np.zeros((self.n_tiles * n_features if use_dot else 1, DOT_CT), dtype=dtype)
        hn = np.full(self.n_tiles * DOT_CT if use_dot else 1, np.finfo(dtype).max, dtype=dtype)
        self._keep = (chunk_inertia, starts, fill, order, acc, cpack, hn)
        self.ctx.d = n_features
        self.ctx.k = n_clusters
        self.ctx.use_dot = use_dot
        self.ctx.n_tiles = self.n_tiles
        self.ctx.cpack = <const void*><size_t>cpack.ctypes.data
        self.ctx.hn = <const void*><size_t>hn.ctypes.data
        self.ctx.labels = <int*><size_t>self.labels.ctypes.data
        self.ctx.chunk_inertia = <double*><size_t>chunk_inertia.ctypes.data
        self.ctx.starts = <Py_ssize_t*><size_t>starts.ctypes.data
        self.ctx.fill = <Py_ssize_t*><size_t>fill.ctypes.data
        self.ctx.order = <int*><size_t>order.ctypes.data
        self.ctx.acc = <double*><size_t>acc.ctypes.data
        self.ctx.shift2 = <double*><size_t>self.shift2.ctypes.data
        self.batch_ptr = <void*><size_t>self.batch.ctypes.data


cdef void _pack_centers(
    const floating* centers,      # IN  (k, d)
    const floating* sq_norms,     # IN  (k,) ||c||^2 as np.einsum gives
    Py_ssize_t k, Py_ssize_t d, Py_ssize_t n_tiles,
    floating* cpack,              # OUT (n_tiles, d, DOT_CT) as layout.dot_tiles
    floating* hn,                 # OUT (n_tiles * DOT_CT,) half norms, the dtype's max past k
) noexcept nogil:
    # layout.dot_tiles' packing and half norms (0.5 * ||c||^2 is exact), without
    # its padding to a multiple of CENTER_TILE centers: a padding center never
    # wins, so the labels are the same
    cdef Py_ssize_t jt, f, l, j
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    for jt in range(n_tiles):
        for l in range(DOT_CT):
            j = jt * DOT_CT + l
            hn[j] = <floating>(0.5 * sq_norms[j]) if j < k else big
            for f in range(d):
                cpack[(jt * d + f) * DOT_CT + l] = centers[j * d + f] if j < k else 0


cdef void _label_chunk(
    const floating* X,            # IN  (n, d) the context's X, typed
    const StepCtx* c, Scratch* s, Py_ssize_t ch,
) noexcept nogil:
    # gather chunk ch of the batch, label it, and its weighted squared distances
    cdef Py_ssize_t start = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.b - start)
    cdef Py_ssize_t i, d = c.d
    cdef floating* xb = <floating*>c.batch + start * d
    cdef const floating* x
    cdef const floating* centers = <const floating*>c.centers
    cdef const floating* sw = <const floating*>c.sw + start
    cdef int* lab = c.labels + start
    cdef double total = 0.0
    if c.rows != NULL:
        for i in range(rows):
            if i + AHEAD < rows:
                prefetch_row(X + c.rows[start + i + AHEAD] * d, d)
            memcpy(xb + i * d, X + c.rows[start + i] * d, d * sizeof(floating))
    if c.use_dot:
        pack_neg_chunk(xb, rows, d, <floating*>s.xt)
        argmin_chunk_dot(<const floating*>s.xt, rows, d, <const floating*>c.cpack,
                         <const floating*>c.hn, c.n_tiles, lab)
    else:
        transpose_chunk(xb, rows, d, <floating*>s.xt)
        argmin_chunk_direct(<const floating*>s.xt, rows, d, centers, c.k, <floating*>s.best,
                            lab, <floating*>s.acc)
    for i in range(rows):
        x = xb + i * d
        total += <double>sw[i] * exact_sq_dist(x, centers + lab[i] * d, d, NULL)
    c.chunk_inertia[ch] = total


cdef void _group_by_label(const StepCtx* c) noexcept nogil:
    # counting sort of the batch rows by label (stable: batch order within a label)
    cdef Py_ssize_t i, j
    cdef int a
    for j in range(c.k + 1):
        c.starts[j] = 0
    for i in range(c.b):
        c.starts[c.labels[i] + 1] += 1
    for j in range(c.k):
        c.starts[j + 1] += c.starts[j]
        c.fill[j] = c.starts[j]
    for i in range(c.b):
        a = c.labels[i]
        c.order[c.fill[a]] = <int>i
        c.fill[a] += 1


cdef void _update_centers(const floating* xb, const StepCtx* c) noexcept nogil:
    # each center from its batch rows (float64 sums in batch order):
    # counts: c' = (W c + sum_i w_i x_i) / (W + w_j), the learning rate w_j / (W + w_j);
    # adaptive: c' = (1 - a) c + a mean_j with a = sqrt(w_j / w_batch)
    cdef Py_ssize_t i, j, q, f, d = c.d
    cdef const floating* sw = <const floating*>c.sw
    cdef const floating* old
    cdef floating* new
    cdef const floating* x
    cdef double* acc = c.acc
    cdef double w, wj, W, alpha, t, moved, total = 0.0
    if c.adaptive:
        for i in range(c.b):
            total += sw[i]
    for j in range(c.k):
        old = <const floating*>c.centers + j * d
        new = <floating*>c.centers_new + j * d
        for f in range(d):
            acc[f] = 0.0
        wj = 0.0
        for q in range(c.starts[j], c.starts[j + 1]):
            i = c.order[q]
            w = sw[i]
            x = xb + i * d
            wj += w
            for f in range(d):
                acc[f] += w * x[f]
        moved = 0.0
        if wj > 0.0:
            W = c.counts[j]
            if c.adaptive:
                alpha = sqrt(wj / total)
                for f in range(d):
                    new[f] = <floating>((1.0 - alpha) * old[f] + alpha * (acc[f] / wj))
            else:
                for f in range(d):
                    new[f] = <floating>((old[f] * W + acc[f]) / (W + wj))
            c.counts[j] = W + wj
            for f in range(d):
                t = <double>new[f] - <double>old[f]
                moved += t * t
        else:
            for f in range(d):
                new[f] = old[f]
        c.shift2[j] = moved


def minibatch_step(
    const floating[:, ::1] X,            # IN  (n, d) the rows the batch is drawn from
    const Py_ssize_t[::1] rows,          # IN  (b,) the batch's rows of X; None: all of X
    const floating[::1] sample_weight,   # IN  (b,) weight of each batch row, in batch order
    const floating[:, ::1] centers,      # IN  (k, d)
    const floating[::1] sq_norms,        # IN  (k,) np.einsum('ij,ij->i', centers, centers)
    floating[:, ::1] centers_new,        # OUT (k, d)
    double[::1] counts,                  # IN/OUT (k,) cumulative weight of each center
    StepBuffers buf,                     # scratch; OUT buf.labels, buf.shift2, buf.batch
    bint adaptive_lr,                    # IN  the adaptive learning rate instead of counts
    Region region,                       # IN  thread count; OUT the threads' CPU time
):
    """One mini-batch step: labels of the batch from ``centers``, then the new
    centers into ``centers_new`` (a center without batch rows keeps its place).

    Parameters
    ----------
    X : ndarray of shape (n, n_features), float32 or float64, C-contiguous
        The data the batch is drawn from (``rows``), or the batch itself.
    rows : intp ndarray of shape (b,) or None
        Rows of X that form the batch (repeats allowed); None: X is the batch.
    sample_weight : ndarray of shape (b,), X's dtype
        Weight of each batch row.
    centers : ndarray of shape (n_clusters, n_features), X's dtype
    sq_norms : ndarray of shape (n_clusters,), X's dtype
        ``np.einsum('ij,ij->i', centers, centers)``, from which the half norms of
        the dot-product tiles are taken as ``lloyd`` takes them (read only with
        more than 8 features).
    centers_new : ndarray of shape (n_clusters, n_features), X's dtype
        The centers after the step (not ``centers`` itself).
    counts : float64 ndarray of shape (n_clusters,)
        Cumulative weight of each center; the batch's weight is added.
    buf : StepBuffers
        For at least b rows, these centers and features, X's dtype.
    adaptive_lr : bool
        Learning rate ``sqrt(w_batch,j / w_batch)`` (the batch's weight of
        center j over the batch's weight) instead of ``w_batch,j / counts_j``.
    region : Region

    Returns
    -------
    inertia : float
        Weighted sum of the batch rows' squared distances to their nearest
        center, before the update (float64).
    """
    cdef Py_ssize_t b = X.shape[0] if rows is None else rows.shape[0]
    cdef Py_ssize_t n_chunks = (b + CHUNK - 1) // CHUNK, ch
    cdef StepCtx* c = &buf.ctx
    cdef RegionClock* rc = &region.clock
    cdef Scratch* s
    cdef double t0, inertia = 0.0
    if b > buf.max_rows or centers.shape[0] != buf.n_clusters or \
            X.shape[1] != buf.n_features or sample_weight.shape[0] != b:
        raise ValueError("minibatch_step: buffers or weights do not fit the batch")
    if b == 0:
        return 0.0
    c.X = &X[0, 0]
    if rows is None:
        c.rows = NULL
        c.batch = <void*>&X[0, 0]
    else:
        c.rows = &rows[0]
        c.batch = buf.batch_ptr
    c.sw = &sample_weight[0]
    c.b = b
    c.centers = &centers[0, 0]
    c.centers_new = &centers_new[0, 0]
    c.counts = &counts[0]
    c.adaptive = adaptive_lr
    with nogil:
        if c.use_dot:
            _pack_centers(&centers[0, 0], &sq_norms[0], c.k, c.d, c.n_tiles,
                          <floating*>c.cpack, <floating*>c.hn)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = <Scratch*> malloc(sizeof(Scratch))
        s.xt = malloc(CHUNK * c.d * sizeof(floating))
        s.best = malloc(CHUNK * sizeof(floating))
        s.acc = malloc(CHUNK * sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            _label_chunk(&X[0, 0], c, s, ch)
        free(s.xt)
        free(s.best)
        free(s.acc)
        free(s)
        region_leave(rc, t0)
    with nogil:
        for ch in range(n_chunks):
            inertia += c.chunk_inertia[ch]
        _group_by_label(c)
        _update_centers(<const floating*>c.batch, c)
    return inertia
