"""One step of mini-batch K-Means (``minibatch_step``): gather the batch's rows,
label them with the tile kernels, and move every center towards the mean of
its batch rows, grouped by label with a counting sort; and the batch's labels
on the moved centers (``relabel``, for ``partial_fit``'s ``labels_``).

The labels are those ``lloyd.assign_labels`` gives for the same rows and
centers: the same tile kernels, the same center packing, the same half norms
(from the caller's ``np.einsum`` squared norms). The update visits each
center's rows in batch order and sums them in float64 in one thread, so the
new centers, the cumulative weights and the batch inertia (per-chunk float64
partials added in chunk order) are the same bits for any thread count. A step
is one parallel region (gather, labels, per-chunk inertia) and an update of
O(batch x d + k x d) work after it: no O(batch x k) scan. No random number
is drawn here.

``relabel`` searches only the rows whose label the centers' movement could
have changed: the step keeps, per row, a lower bound on its distance to every
other center (from the runner-up the tile kernels find); a row keeps its label
when its exact distance to its moved center stays below that bound less the
largest movement of another center, with margins that cover the rounding of
the values the tile kernels would compare. Every other row gets the full tile
search, so the labels are ``lloyd.assign_labels``'s bit for bit.

Every buffer is allocated by the caller (``StepBuffers``); the kernels only
fill it.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from fastkm._kernels.layout cimport CHUNK, DIRECT_MAX_D
from fastkm._kernels.numerics cimport exact_sq_dist, prefetch_row, rounding_bound
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport (
    DOT_CT, argmin_chunk_direct, argmin_chunk_dot, pack_neg_chunk, pack_neg_rows,
    top2_chunk_direct, top2_chunk_dot, transpose_chunk,
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
    bint keep_bounds           # also keep each row's lower bound (for relabel)
    double* lower              # OUT (b,) lower bound on a row's distance to the other centers
    double dot_err             # numerics.rounding_bound: relative error of a compared value
    double max_cnorm           # max ||c||^2 of the packed centers (dot values' error scale)
    double max_shift           # relabel: the largest movement of a center
    double second_shift        # relabel: the second largest
    Py_ssize_t argmax_shift    # relabel: the center that moved most
    int* out_labels            # relabel: OUT (b,)
    Py_ssize_t* chunk_searched  # relabel: OUT (n_chunks,) rows that failed the bound test


cdef struct Scratch:
    # one per thread, allocated inside the parallel region
    void* xt                   # (d, CHUNK) a transposed (or negated, packed) chunk
    void* best                 # (CHUNK,)
    void* second               # (CHUNK,)
    void* acc                  # (CHUNK,)
    int* lab                   # (CHUNK,)
    int* idx                   # (CHUNK,) rows that fail the bound test


cdef Scratch* _scratch_new(Py_ssize_t d, Py_ssize_t itemsize) noexcept nogil:
    cdef Scratch* s = <Scratch*> malloc(sizeof(Scratch))
    s.xt = malloc(CHUNK * d * itemsize)
    s.best = malloc(CHUNK * itemsize)
    s.second = malloc(CHUNK * itemsize)
    s.acc = malloc(CHUNK * itemsize)
    s.lab = <int*> malloc(CHUNK * sizeof(int))
    s.idx = <int*> malloc(CHUNK * sizeof(int))
    return s


cdef void _scratch_free(Scratch* s) noexcept nogil:
    free(s.xt)
    free(s.best)
    free(s.second)
    free(s.acc)
    free(s.lab)
    free(s.idx)
    free(s)


cdef class StepBuffers:
    """Scratch and outputs of ``minibatch_step`` and ``relabel`` for batches of
    up to ``max_rows`` rows, ``n_clusters`` centers and ``n_features``
    features in ``dtype`` (float32 or float64). Reused from step to step.

    Attributes
    ----------
    labels : ndarray of shape (max_rows,), int32
        The batch's labels after a step (its first ``b`` entries).
    shift2 : ndarray of shape (n_clusters,), float64
        Squared distance each center moved in the last step.
    batch : ndarray of shape (max_rows, n_features)
        The gathered batch rows after a step with ``rows``.
    bounds_rows : int
        Rows of the last step that kept bounds (``relabel`` needs them), else -1.
    """
    cdef readonly Py_ssize_t max_rows, n_clusters, n_features, bounds_rows
    cdef readonly object labels, shift2, batch, dtype
    cdef object _keep
    cdef void* batch_ptr
    cdef StepCtx ctx

    def __cinit__(self, Py_ssize_t max_rows, Py_ssize_t n_clusters, Py_ssize_t n_features,
                  dtype):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        max_rows = max(1, max_rows)
        self.max_rows, self.n_clusters, self.n_features = max_rows, n_clusters, n_features
        self.dtype = dtype
        self.bounds_rows = -1
        n_tiles = (n_clusters + DOT_CT - 1) // DOT_CT  # C division: no -(-a // b)
        n_chunks = (max_rows + CHUNK - 1) // CHUNK
        use_dot = n_features > DIRECT_MAX_D
        self.labels = np.zeros(max_rows, dtype=np.int32)
        self.shift2 = np.zeros(n_clusters)
        self.batch = np.zeros((max_rows, n_features), dtype=dtype)
        keep = dict(
            chunk_inertia=np.zeros(n_chunks), chunk_searched=np.zeros(n_chunks, dtype=np.intp),
            starts=np.zeros(n_clusters + 1, dtype=np.intp),
            fill=np.zeros(n_clusters, dtype=np.intp), order=np.zeros(max_rows, dtype=np.int32),
            acc=np.zeros(n_features), lower=np.zeros(max_rows),
            cpack=np.zeros((n_tiles * n_features if use_dot else 1, DOT_CT), dtype=dtype),
            hn=np.full(n_tiles * DOT_CT if use_dot else 1, np.finfo(dtype).max, dtype=dtype))
        self._keep = keep
        self.ctx.d = n_features
        self.ctx.k = n_clusters
        self.ctx.use_dot = use_dot
        self.ctx.n_tiles = n_tiles
        self.ctx.dot_err = rounding_bound(n_features, dtype == np.float32)
        self.ctx.cpack = <const void*><size_t>keep["cpack"].ctypes.data
        self.ctx.hn = <const void*><size_t>keep["hn"].ctypes.data
        self.ctx.labels = <int*><size_t>self.labels.ctypes.data
        self.ctx.chunk_inertia = <double*><size_t>keep["chunk_inertia"].ctypes.data
        self.ctx.chunk_searched = <Py_ssize_t*><size_t>keep["chunk_searched"].ctypes.data
        self.ctx.starts = <Py_ssize_t*><size_t>keep["starts"].ctypes.data
        self.ctx.fill = <Py_ssize_t*><size_t>keep["fill"].ctypes.data
        self.ctx.order = <int*><size_t>keep["order"].ctypes.data
        self.ctx.acc = <double*><size_t>keep["acc"].ctypes.data
        self.ctx.lower = <double*><size_t>keep["lower"].ctypes.data
        self.ctx.shift2 = <double*><size_t>self.shift2.ctypes.data
        self.batch_ptr = <void*><size_t>self.batch.ctypes.data

    def fits(self, Py_ssize_t rows, Py_ssize_t n_clusters, Py_ssize_t n_features, dtype):
        """True when these buffers serve a batch of ``rows`` rows of this shape."""
        return (rows <= self.max_rows and n_clusters == self.n_clusters
                and n_features == self.n_features and np.dtype(dtype) == self.dtype)


cdef void _pack_centers(
    const floating* centers,      # IN  (k, d)
    const floating* sq_norms,     # IN  (k,) ||c||^2 as np.einsum gives
    StepCtx* c,                   # OUT c.cpack (n_tiles, d, DOT_CT) as layout.dot_tiles,
                                  #     c.hn (n_tiles * DOT_CT,), c.max_cnorm
) noexcept nogil:
    # layout.dot_tiles' packing and half norms (0.5 * ||c||^2 is exact), without
    # its padding to a multiple of CENTER_TILE centers: a padding center never
    # wins, so the labels are the same
    cdef Py_ssize_t jt, f, l, j, d = c.d, k = c.k
    cdef floating* cpack = <floating*>c.cpack
    cdef floating* hn = <floating*>c.hn
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    c.max_cnorm = 0.0
    for j in range(k):
        c.max_cnorm = sq_norms[j] if sq_norms[j] > c.max_cnorm else c.max_cnorm
    for jt in range(c.n_tiles):
        for l in range(DOT_CT):
            j = jt * DOT_CT + l
            hn[j] = <floating>(0.5 * sq_norms[j]) if j < k else big
            for f in range(d):
                cpack[(jt * d + f) * DOT_CT + l] = centers[j * d + f] if j < k else 0


cdef inline double _lower_bound(double second, double xx, const StepCtx* c) noexcept nogil:
    # A lower bound on the row's distance to every center but its nearest, from
    # the runner-up's compared value: 0.5||c||^2 - x.c (dot tiles; its error is
    # at most dot_err (||x||^2 + max ||c||^2) / 2, as numerics.lower_from) or the
    # squared distance (relative error at most dot_err)
    cdef double v
    if c.k == 1:
        return DBL_MAX
    if c.use_dot:
        v = 2.0 * second + xx - c.dot_err * (xx + c.max_cnorm)
    else:
        v = second / (1.0 + c.dot_err)
    return sqrt(v) if v > 0.0 else 0.0


cdef void _label_chunk(
    const floating* X,            # IN  (n, d) the context's X, typed
    const StepCtx* c, Scratch* s, Py_ssize_t ch,
) noexcept nogil:
    # gather chunk ch of the batch, label it, its weighted squared distances and
    # (keep_bounds) each row's lower bound to the other centers
    cdef Py_ssize_t start = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.b - start)
    cdef Py_ssize_t i, d = c.d
    cdef floating* xb = <floating*>c.batch + start * d
    cdef floating* xt = <floating*>s.xt
    cdef const floating* centers = <const floating*>c.centers
    cdef const floating* sw = <const floating*>c.sw + start
    cdef floating* second = <floating*>s.second
    cdef int* lab = c.labels + start
    cdef double total = 0.0, dd, xx
    if c.rows != NULL:
        for i in range(rows):
            if i + AHEAD < rows:
                prefetch_row(X + c.rows[start + i + AHEAD] * d, d)
            memcpy(xb + i * d, X + c.rows[start + i] * d, d * sizeof(floating))
    if c.use_dot:
        pack_neg_chunk(xb, rows, d, xt)
        if c.keep_bounds:
            top2_chunk_dot(xt, rows, d, <const floating*>c.cpack, <const floating*>c.hn,
                           c.n_tiles, lab, <floating*>s.best, second)
        else:
            argmin_chunk_dot(xt, rows, d, <const floating*>c.cpack, <const floating*>c.hn,
                             c.n_tiles, lab)
    else:
        transpose_chunk(xb, rows, d, xt)
        if c.keep_bounds:
            top2_chunk_direct(xt, rows, d, centers, c.k, <floating*>s.best, second, lab,
                              <floating*>s.acc)
        else:
            argmin_chunk_direct(xt, rows, d, centers, c.k, <floating*>s.best, lab,
                                <floating*>s.acc)
    for i in range(rows):
        dd = exact_sq_dist(xb + i * d, centers + lab[i] * d, d, &xx)
        total += <double>sw[i] * dd
        if c.keep_bounds:
            c.lower[start + i] = _lower_bound(second[i], xx, c)
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
    bint keep_bounds,                    # IN  keep the bounds ``relabel`` needs
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
    keep_bounds : bool
        Also keep, per row, a lower bound on its distance to the other centers
        (the runner-up of the same tile search), for ``relabel``.
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
    buf.bounds_rows = -1
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
    c.keep_bounds = keep_bounds
    with nogil:
        if c.use_dot:
            _pack_centers(&centers[0, 0], &sq_norms[0], c)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c.d, sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            _label_chunk(&X[0, 0], c, s, ch)
        _scratch_free(s)
        region_leave(rc, t0)
    with nogil:
        for ch in range(n_chunks):
            inertia += c.chunk_inertia[ch]
        _group_by_label(c)
        _update_centers(<const floating*>c.batch, c)
    if keep_bounds:
        buf.bounds_rows = b
    return inertia


cdef Py_ssize_t _relabel_chunk(
    const floating* xb,           # IN  (b, d) the batch
    const StepCtx* c, Scratch* s, Py_ssize_t ch,
) noexcept nogil:
    # Rows whose label is certain keep it: with u their exact distance to their
    # moved center and l their lower bound less the largest movement of another
    # center, the tile kernels' compared values are apart when u^2 plus twice
    # the values' rounding (dot: dot_err (||x||^2 + max ||c||^2); direct:
    # relative dot_err) stays below l^2. The others are searched by the tile
    # kernels over every center. Returns how many were searched.
    cdef Py_ssize_t start = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.b - start)
    cdef Py_ssize_t i, q, f, m = 0, d = c.d
    cdef const floating* centers = <const floating*>c.centers
    cdef floating* xt = <floating*>s.xt
    cdef const floating* x
    cdef double l, u2, xx
    cdef double slack = 1.0 + 4.0 * (d + 8) * 2.220446049250313e-16  # float64 rounding of u^2
    cdef int a
    cdef bint keep
    for i in range(start, start + rows):
        a = c.labels[i]
        l = c.lower[i] - (c.second_shift if a == c.argmax_shift else c.max_shift)
        u2 = exact_sq_dist(xb + i * d, centers + a * d, d, &xx) * slack
        if c.use_dot:
            keep = l > 0.0 and u2 + 2.0 * c.dot_err * (xx + c.max_cnorm) < l * l
        else:
            keep = l > 0.0 and u2 * (1.0 + c.dot_err) < l * l * (1.0 - c.dot_err)
        if keep:
            c.out_labels[i] = a
        else:
            s.idx[m] = <int>i
            m += 1
    if m == 0:
        return 0
    if c.use_dot:
        pack_neg_rows(xb, s.idx, m, d, xt)
        argmin_chunk_dot(xt, m, d, <const floating*>c.cpack, <const floating*>c.hn, c.n_tiles,
                         s.lab)
    else:
        for q in range(m):
            x = xb + <Py_ssize_t>s.idx[q] * d
            for f in range(d):
                xt[f * CHUNK + q] = x[f]
        argmin_chunk_direct(xt, m, d, centers, c.k, <floating*>s.best, s.lab,
                            <floating*>s.acc)
    for q in range(m):
        c.out_labels[s.idx[q]] = s.lab[q]
    return m


def relabel(
    const floating[:, ::1] batch,        # IN  (b, d) the rows of the last step
    const floating[:, ::1] centers,      # IN  (k, d) the centers after it (reassigned or not)
    const floating[::1] sq_norms,        # IN  (k,) np.einsum('ij,ij->i', centers, centers)
    StepBuffers buf,                     # IN  the step's labels, bounds and buf.shift2
    int[::1] labels,                     # OUT (b,)
    Region region,                       # IN  thread count; OUT the threads' CPU time
):
    """Labels of the last step's batch on the moved ``centers``: exactly those
    ``lloyd.assign_labels`` gives, searching only the rows whose label the
    movement (``buf.shift2``, reassignments included) could have changed.

    The last ``minibatch_step`` on ``buf`` must have had ``keep_bounds`` and
    these ``batch`` rows. Returns how many rows were searched.
    """
    cdef Py_ssize_t b = batch.shape[0], n_chunks = (b + CHUNK - 1) // CHUNK, ch, j
    cdef StepCtx* c = &buf.ctx
    cdef RegionClock* rc = &region.clock
    cdef Scratch* s
    cdef double t0, v
    cdef Py_ssize_t searched = 0
    if buf.bounds_rows != b or labels.shape[0] != b or centers.shape[0] != buf.n_clusters \
            or batch.shape[1] != buf.n_features:
        raise ValueError("relabel: needs the batch of the last step, run with keep_bounds")
    if b == 0:
        return 0
    c.b = b
    c.centers = &centers[0, 0]
    c.out_labels = &labels[0]
    with nogil:
        # the largest and second largest movement (grown by the float64
        # rounding of the squared movements, as u^2)
        c.max_shift = 0.0
        c.second_shift = 0.0
        c.argmax_shift = -1
        for j in range(c.k):
            v = sqrt(c.shift2[j]) * (1.0 + 4.0 * (c.d + 8) * 2.220446049250313e-16)
            if v > c.max_shift:
                c.second_shift = c.max_shift
                c.max_shift = v
                c.argmax_shift = j
            elif v > c.second_shift:
                c.second_shift = v
        if c.use_dot:
            _pack_centers(&centers[0, 0], &sq_norms[0], c)
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = _scratch_new(c.d, sizeof(floating))
        for ch in prange(n_chunks, schedule="dynamic"):
            c.chunk_searched[ch] = _relabel_chunk(&batch[0, 0], c, s, ch)
        _scratch_free(s)
        region_leave(rc, t0)
    for ch in range(n_chunks):
        searched += c.chunk_searched[ch]
    return searched
