"""Lloyd's algorithm: fused assignment + center-sum pass, and the assignment
kernels used by ``predict`` and ``transform``.

Every buffer is allocated by the caller (the Python layer); the kernels only
fill them. Thread-local scratch tiles are malloc'ed inside the parallel region.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastkm._common import dot_operands, dot_tiles as _dot_tiles, merge_blocks
from fastkm._common cimport (
    CHUNK, DIRECT_MAX_D, DOT_CT, accumulate_rows, argmin_chunk_direct, argmin_chunk_dot,
    argmin_chunk_pruned, pack_neg_chunk, sum_changed, transpose_chunk,
)


cdef extern from *:
    """
    /* Decrement a shared counter and return the new value, with acquire-release
       ordering: whoever takes it to zero sees every write the others made
       before their own decrement (here: the labels of a block's chunks). */
    #if defined(__GNUC__) || defined(__clang__)
    static inline Py_ssize_t fastkm_countdown(Py_ssize_t* c) {
        return __atomic_sub_fetch(c, 1, __ATOMIC_ACQ_REL);
    }
    #elif defined(_MSC_VER)
    #include <intrin.h>
    static inline Py_ssize_t fastkm_countdown(Py_ssize_t* c) {
    #if defined(_WIN64)
        return (Py_ssize_t)_InterlockedDecrement64((volatile __int64*)c);
    #else
        return (Py_ssize_t)_InterlockedDecrement((volatile long*)c);
    #endif
    }
    #else
    #error "fastkm needs GCC/Clang __atomic builtins or MSVC interlocked intrinsics"
    #endif
    """
    Py_ssize_t fastkm_countdown(Py_ssize_t* c) noexcept nogil


cdef struct Pruning:
    # scratch of argmin_chunk_pruned; ``on`` is false for unsorted data or many features
    bint on
    double margin
    const double* centers_t   # (d, k) shared, read-only
    const void* xt_all        # (n_chunks, d, CHUNK) X in tile layout, or NULL
    void* cand        # (k, d) floating
    int* cand_ids     # (k,)
    double* dmin      # (k,)
    double* dmax      # (k,)


cdef inline double _prune_margin(Py_ssize_t d, bint single) noexcept nogil:
    # relative rounding of a squared distance of d terms, with room to spare
    cdef double eps = 1.1920929e-07 if single else 2.220446049250313e-16
    return 16.0 * (d + 4) * eps


cdef inline Pruning* _pruning_new(bint on, Py_ssize_t k, Py_ssize_t d, Py_ssize_t itemsize,
                                  const double* centers_t, const void* xt_all) noexcept nogil:
    # one per thread: assigned inside the parallel block, so private to it
    cdef Pruning* p = <Pruning*> malloc(sizeof(Pruning))
    p.on = on
    p.margin = _prune_margin(d, itemsize == 4)
    p.centers_t = centers_t
    p.xt_all = xt_all
    p.cand = NULL
    p.cand_ids = NULL
    p.dmin = NULL
    p.dmax = NULL
    if on:
        p.cand = malloc(k * d * itemsize)
        p.cand_ids = <int*> malloc(k * sizeof(int))
        p.dmin = <double*> malloc(k * sizeof(double))
        p.dmax = <double*> malloc(k * sizeof(double))
    return p


cdef inline void _pruning_free(Pruning* p) noexcept nogil:
    free(p.cand)
    free(p.cand_ids)
    free(p.dmin)
    free(p.dmax)
    free(p)


cdef inline void _assign_chunk(
    const floating* X, Py_ssize_t chunk_index, Py_ssize_t rows, Py_ssize_t d,
    const floating* centers, const floating* centers_t, const floating* half_cnorm,
    Py_ssize_t k, Py_ssize_t n_tiles, bint use_dot,
    floating* xt, floating* best, floating* acc, int* lab, Pruning* prune,
) noexcept nogil:
    cdef const floating* tile = xt
    if use_dot:
        pack_neg_chunk(X, rows, d, xt)
        argmin_chunk_dot(xt, rows, d, centers_t, half_cnorm, n_tiles, lab)
        return
    if prune.xt_all != NULL:
        tile = <const floating*>prune.xt_all + (chunk_index * d) * CHUNK
    else:
        transpose_chunk(X, rows, d, xt)
    if prune.on:
        argmin_chunk_pruned(tile, rows, d, centers, prune.centers_t, k, best, lab, acc,
                            <floating*>prune.cand, prune.cand_ids, prune.dmin, prune.dmax,
                            prune.margin)
    else:
        argmin_chunk_direct(tile, rows, d, centers, k, best, lab, acc)


cdef Py_ssize_t _assign_chunk_count(
    const floating* X, Py_ssize_t chunk_index, Py_ssize_t rows, Py_ssize_t d,
    const floating* centers, const floating* centers_t, const floating* half_cnorm,
    Py_ssize_t k, Py_ssize_t n_tiles, bint use_dot,
    int* labels, floating* xt, floating* best, floating* acc, int* lab, Pruning* prune,
) noexcept nogil:
    """Assign one chunk's rows; store their labels and return how many changed."""
    cdef Py_ssize_t i, changed = 0
    cdef int l
    _assign_chunk(X, chunk_index, rows, d, centers, centers_t, half_cnorm, k, n_tiles, use_dot,
                  xt, best, acc, lab, prune)
    for i in range(rows):
        l = lab[i]
        changed += l != labels[i]
        labels[i] = l
    return changed


cdef void _sum_block(
    const floating* X, const floating* sw, const int* labels, Py_ssize_t start, Py_ssize_t end,
    Py_ssize_t k, Py_ssize_t d, double* sums, double* weights,
) noexcept nogil:
    """One block's weighted sums per label, rows in order."""
    memset(sums, 0, k * d * sizeof(double))
    memset(weights, 0, k * sizeof(double))
    accumulate_rows(X, sw, labels, start, end, d, sums, weights)


def lloyd_iter(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const floating[:, ::1] centers,        # IN  (n_clusters, n_features)
    double[:, :, ::1] block_sums,          # scratch (n_blocks, n_clusters, n_features)
    double[:, ::1] block_weights,          # scratch (n_blocks, n_clusters)
    double[:, ::1] sums,                   # OUT (n_clusters, n_features)
    double[::1] weights,                   # OUT (n_clusters,)
    int[::1] labels,                       # IN/OUT (n_samples,)
    Py_ssize_t rows_per_block,
    int n_threads,
    bint prune=False,
    const floating[:, :, ::1] xt_all=None, # IN  optional X in tile layout (``transpose_chunks``)
):
    """One Lloyd iteration without the division: labels and per-center sums.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), same dtype as X
    centers : ndarray of shape (n_clusters, n_features), same dtype as X
    block_sums, block_weights : float64 scratch, one row per
        block of ``rows_per_block`` samples (see ``block_layout``)
    sums : float64 ndarray of shape (n_clusters, n_features)
        Weighted sum of the samples nearest to each center.
    weights : float64 ndarray of shape (n_clusters,)
        Total weight of the samples nearest to each center.
    labels : int32 ndarray of shape (n_samples,)
        Previous labels on entry, new labels on exit.
    prune : bool
        Rows are sorted so that consecutive rows are close (few features
        only): skip, per tile, the centers that the tile's bounding box proves
        cannot be nearest. Same labels; faster only on such data.

    Returns
    -------
    n_changed : int
        Number of samples whose label changed.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = block_sums.shape[0], b, start, end
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, ch
    cdef Py_ssize_t[::1] chunk_changed = np.empty(n_chunks, dtype=np.intp)
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef floating[:, ::1] centers_t
    cdef floating[::1] half_cnorm
    cdef floating* xt
    cdef floating* best
    cdef floating* acc
    cdef int* lab
    if use_dot:
        ct, hn = _dot_tiles(centers, DOT_CT)
        centers_t, half_cnorm = ct, hn
    else:
        centers_t = np.empty((1, 1), dtype=np.asarray(centers).dtype)
        half_cnorm = np.empty(1, dtype=np.asarray(centers).dtype)
    cdef Py_ssize_t n_tiles = centers_t.shape[0] // d if use_dot else 0

    cdef Pruning* pr
    prune = prune and not use_dot
    cdef double[:, ::1] cent_t = np.ascontiguousarray(np.asarray(centers, dtype=np.float64).T)
    cdef const void* pre = NULL
    if xt_all is not None and not use_dot:
        pre = &xt_all[0, 0, 0]
    # Labels: one chunk (CHUNK rows) at a time, handed out dynamically, so that
    # threads on slower or busier cores take fewer (the work is nearly all
    # here). Sums: per reduction block, rows in order (the fixed layout behind
    # thread-count independent bits), by whichever thread labels the block's
    # last chunk: a per-block countdown (acquire-release) instead of a barrier
    # between the two, so no thread waits for the slowest before summing.
    cdef Py_ssize_t cpb = rows_per_block // CHUNK
    cdef Py_ssize_t[::1] pending = np.empty(n_blocks, dtype=np.intp)
    for b in range(n_blocks):
        pending[b] = min(cpb, n_chunks - b * cpb)
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        best = <floating*> malloc(CHUNK * sizeof(floating))
        acc = <floating*> malloc(max(<Py_ssize_t>CHUNK, k) * sizeof(floating))
        lab = <int*> malloc(CHUNK * sizeof(int))
        pr = _pruning_new(prune, k, d, sizeof(floating), &cent_t[0, 0], pre)
        for ch in prange(n_chunks, schedule="dynamic"):
            start = ch * CHUNK
            chunk_changed[ch] = _assign_chunk_count(
                &X[start, 0], ch, min(<Py_ssize_t>CHUNK, n - start), d,
                &centers[0, 0], &centers_t[0, 0], &half_cnorm[0], k, n_tiles, use_dot,
                &labels[start], xt, best, acc, lab, pr,
            )
            b = ch // cpb
            if fastkm_countdown(&pending[b]) == 0:
                start = b * rows_per_block
                end = min(n, start + rows_per_block)
                _sum_block(&X[0, 0], &sample_weight[0], &labels[0], start, end, k, d,
                           &block_sums[b, 0, 0], &block_weights[b, 0])
        free(xt)
        free(best)
        free(acc)
        free(lab)
        _pruning_free(pr)

    merge_blocks(block_sums, block_weights, sums, weights, n_threads)

    return sum_changed(&chunk_changed[0], n_chunks)


def assign_labels(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    int[::1] labels,                   # OUT (n_samples,)
    int n_threads,
    bint prune=False,
    const floating[:, :, ::1] xt_all=None,  # IN  optional X in tile layout
):
    """Index of the nearest center for every sample (no distance matrix).

    ``prune`` as in ``lloyd_iter``: for rows sorted so that neighbours are close.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, ch, start, rows
    cdef bint use_dot = d > DIRECT_MAX_D
    cdef floating[:, ::1] centers_t
    cdef floating[::1] half_cnorm
    cdef floating* xt
    cdef floating* best
    cdef floating* acc
    if use_dot:
        ct, hn = _dot_tiles(centers, DOT_CT)
        centers_t, half_cnorm = ct, hn
    else:
        centers_t = np.empty((1, 1), dtype=np.asarray(centers).dtype)
        half_cnorm = np.empty(1, dtype=np.asarray(centers).dtype)
    cdef Py_ssize_t n_tiles = centers_t.shape[0] // d if use_dot else 0

    cdef Pruning* pr
    prune = prune and not use_dot
    cdef double[:, ::1] cent_t = np.ascontiguousarray(np.asarray(centers, dtype=np.float64).T)
    cdef const void* pre = NULL
    if xt_all is not None and not use_dot:
        pre = &xt_all[0, 0, 0]
    with nogil, parallel(num_threads=n_threads):
        xt = <floating*> malloc(CHUNK * d * sizeof(floating))
        best = <floating*> malloc(CHUNK * sizeof(floating))
        acc = <floating*> malloc(max(<Py_ssize_t>CHUNK, k) * sizeof(floating))
        pr = _pruning_new(prune, k, d, sizeof(floating), &cent_t[0, 0], pre)
        for ch in prange(n_chunks, schedule="dynamic"):
            start = ch * CHUNK
            rows = min(<Py_ssize_t>CHUNK, n - start)
            _assign_chunk(&X[start, 0], ch, rows, d, &centers[0, 0], &centers_t[0, 0],
                          &half_cnorm[0], k, n_tiles, use_dot, xt, best, acc, &labels[start],
                          pr)
        free(xt)
        free(best)
        free(acc)
        _pruning_free(pr)


def pairwise_distances(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    floating[:, ::1] out,              # OUT (n_samples, n_clusters)
    bint squared,
    int n_threads,
):
    """Euclidean distance from every sample to every center (``transform``)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0], i, j, f
    cdef floating[:, ::1] centers_t = np.ascontiguousarray(np.asarray(centers).T)
    cdef floating xf, t
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for j in range(k):
            out[i, j] = 0
        for f in range(d):
            xf = X[i, f]
            for j in range(k):
                t = xf - centers_t[f, j]
                out[i, j] = out[i, j] + t * t
        if not squared:
            for j in range(k):
                out[i, j] = sqrt(out[i, j])
