"""k-means|| seeding kernels (Bahmani et al. 2012): lower every row's D^2 to a
round's new candidates (``lower_closest``), sum w D^2 per fixed row block
(``block_potentials``), and draw a round's candidates (``sample_rows``).

Each row's result depends only on that row: its nearest new candidate comes
from Lloyd's tile kernels (the lowest index on ties), its D^2 is the exact
float64 squared distance to that candidate, and its draw is a Philox uniform
keyed by (key, round, global row index) (``src/philox.h``). Block sums add the
block's rows in a fixed lane order. So the candidates are the same bits for
any thread count, and for any split of the rows into chunks or memory windows
(the Python layer, ``fastkm.kmeans._scalable``, reduces the blocks in a fixed
tree).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

import numpy as np

from fastkm._kernels.layout import dot_tiles
from fastkm._kernels.layout cimport CHUNK, DIRECT_MAX_D
from fastkm._kernels.numerics cimport exact_sq_dist
from fastkm._kernels.runtime cimport Region, RegionClock, region_enter, region_leave
from fastkm._kernels.tiles cimport (
    DOT_CT, argmin_chunk_direct, argmin_chunk_dot, pack_neg_chunk, transpose_chunk,
)

cdef extern from "philox.h":
    void fastkm_philox4x32_10(const uint32_t* ctr, const uint32_t* key, uint32_t* out) noexcept nogil
    double fastkm_uniform(uint32_t key0, uint32_t key1, uint32_t rnd, uint64_t row) noexcept nogil


cdef enum:
    LANES = 8   # independent partial sums of a block, combined in one fixed order


cdef struct LowerCtx:
    # read-only, one per lower_closest call; pointers are to ``floating`` unless typed
    const void* X              # (n, d)
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t m               # new candidates
    const void* cands          # (m, d)
    const void* cpack          # (n_tiles * d, DOT_CT) the candidates in dot tiles (use_dot)
    const void* hn             # (n_tiles * DOT_CT,) their 0.5 ||c||^2
    Py_ssize_t n_tiles
    bint use_dot               # d > DIRECT_MAX_D
    double* closest            # IN/OUT (n,)
    int* owner                 # IN/OUT (n,)
    int offset                 # index of the first new candidate among all candidates


cdef struct LowerScratch:
    # one per thread
    void* xt                   # (d, CHUNK) a transposed chunk
    void* best                 # (CHUNK,)
    void* acc                  # (CHUNK,)
    int* lab                   # (CHUNK,)


cdef inline void _lower_chunk(
    const floating* X,         # IN  (n, d) the context's X, typed
    const LowerCtx* c, LowerScratch* s, Py_ssize_t ch,
) noexcept nogil:
    cdef Py_ssize_t start = ch * CHUNK, rows = min(<Py_ssize_t>CHUNK, c.n - start), d = c.d
    cdef Py_ssize_t i
    cdef floating* xt = <floating*>s.xt
    cdef const floating* cands = <const floating*>c.cands
    cdef double v
    if c.use_dot:
        pack_neg_chunk(X + start * d, rows, d, xt)
        argmin_chunk_dot(xt, rows, d, <const floating*>c.cpack, <const floating*>c.hn,
                         c.n_tiles, s.lab)
    else:
        transpose_chunk(X + start * d, rows, d, xt)
        argmin_chunk_direct(xt, rows, d, cands, c.m, <floating*>s.best, s.lab,
                            <floating*>s.acc)
    for i in range(rows):
        # strict '<': a row keeps its older (lower index) candidate on a tie
        v = exact_sq_dist(X + (start + i) * d, cands + s.lab[i] * d, d, NULL)
        if v < c.closest[start + i]:
            c.closest[start + i] = v
            c.owner[start + i] = c.offset + s.lab[i]


def lower_closest(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[:, ::1] candidates,     # IN  (n_new, n_features) this round's candidates
    double[::1] closest,                   # IN/OUT (n_samples,) D^2 to the nearest candidate
    int[::1] owner,                        # IN/OUT (n_samples,) index of that candidate
    int offset,                            # IN  index of candidates[0] among all candidates
    Region region,                         # IN  thread count; OUT the threads' CPU time
):
    """closest = min(closest, D^2 to the nearest new candidate), owner following.

    The nearest new candidate of a row is Lloyd's label over ``candidates``
    (the tile kernels: sums of squared differences up to DIRECT_MAX_D
    features, dot-product tiles above); its D^2 is the exact float64 squared
    distance (``numerics.exact_sq_dist``). A row changes only when that is
    strictly smaller, so it keeps the lowest-index candidate of a tie across
    rounds too.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, ch
    cdef LowerCtx c
    cdef LowerScratch* s
    cdef RegionClock* rc = &region.clock
    cdef double t0
    if n == 0 or m == 0:
        return
    cdef bint use_dot = d > DIRECT_MAX_D
    cand = np.asarray(candidates)
    if use_dot:
        cpack, hn = dot_tiles(cand, DOT_CT)
    else:
        cpack = hn = np.zeros(1, dtype=cand.dtype)
    c.X = &X[0, 0]
    c.n = n
    c.d = d
    c.m = m
    c.cands = &candidates[0, 0]
    c.cpack = <const void*><size_t>cpack.ctypes.data
    c.hn = <const void*><size_t>hn.ctypes.data
    c.n_tiles = cpack.shape[0] // d if use_dot else 0
    c.use_dot = use_dot
    c.closest = &closest[0]
    c.owner = &owner[0]
    c.offset = offset
    with nogil, parallel(num_threads=rc.n_threads):
        t0 = region_enter(rc)
        s = <LowerScratch*> malloc(sizeof(LowerScratch))
        s.xt = malloc(CHUNK * d * sizeof(floating))
        s.best = malloc(CHUNK * sizeof(floating))
        s.acc = malloc(CHUNK * sizeof(floating))
        s.lab = <int*> malloc(CHUNK * sizeof(int))
        for ch in prange(n_chunks, schedule="dynamic"):
            _lower_chunk(&X[0, 0], &c, s, ch)
        free(s.xt)
        free(s.best)
        free(s.acc)
        free(s.lab)
        free(s)
        region_leave(rc, t0)


cdef double _block_sum(
    const floating* w, const double* closest, const int* inv, Py_ssize_t start, Py_ssize_t end,
) noexcept nogil:
    # sum_i w_i closest[inv_i] over rows start..end, row i in lane (i - start) % LANES
    cdef double s[8]
    cdef Py_ssize_t i, l
    cdef double v
    for l in range(LANES):
        s[l] = 0.0
    i = start
    while i < end:
        for l in range(min(<Py_ssize_t>LANES, end - i)):
            if closest == NULL:
                v = 1.0
            elif inv == NULL:
                v = closest[i + l]
            else:
                v = closest[inv[i + l]]
            s[l] += <double>w[i + l] * v
        i += LANES
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


def block_potentials(
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) or (n_distinct,) with inverse; None: 1
    const int[::1] inverse,                # IN  (n_samples,) row -> row of ``closest``, or None
    Py_ssize_t rows_per_block,
    double[::1] out,                       # OUT (n_blocks,) sum of w_i closest_i per block
    int n_threads,
):
    """Per row block, sum_i w_i closest[inverse[i]] (closest None: the block's
    total weight), its rows in LANES partial sums of a fixed order."""
    cdef Py_ssize_t n = sample_weight.shape[0], b, start, end
    cdef const double* cl = NULL
    cdef const int* inv = NULL
    if closest is not None:
        cl = &closest[0]
    if inverse is not None:
        inv = &inverse[0]
    if n == 0:
        return
    for b in prange(out.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        out[b] = _block_sum(&sample_weight[0], cl, inv, start, end)


def sample_rows(
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) or (n_distinct,) with inverse
    const int[::1] inverse,                # IN  (n_samples,) row -> row of ``closest``, or None
    double potential,                      # IN  sum_i w_i closest_i over all rows (> 0)
    double oversampling,                   # IN  l: expected draws per round
    uint32_t key0,                         # IN  the fit's random key
    uint32_t key1,
    uint32_t round_,                       # IN  the sampling round (1, 2, ...)
    uint64_t row_offset,                   # IN  global index of row 0
    uint8_t[::1] picked,                   # OUT (n_samples,) 1 where the row is drawn
    int n_threads,
):
    """Draw row i with probability min(1, l w_i D_i^2 / potential): picked
    where u_i potential < l w_i D_i^2, u_i the Philox uniform of (key, round,
    row_offset + i). Returns how many rows were drawn."""
    cdef Py_ssize_t n = sample_weight.shape[0], i, count = 0
    cdef const int* inv = NULL
    cdef double u, v
    if inverse is not None:
        inv = &inverse[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        v = closest[inv[i]] if inv != NULL else closest[i]
        u = fastkm_uniform(key0, key1, round_, row_offset + <uint64_t>i)
        if u * potential < oversampling * <double>sample_weight[i] * v:
            picked[i] = 1
            count += 1
        else:
            picked[i] = 0
    return count


def philox_block(
    const uint32_t[::1] counter,           # IN  (4,)
    const uint32_t[::1] key,               # IN  (2,)
    uint32_t[::1] out,                     # OUT (4,)
):
    """One Philox4x32-10 block (for the known-answer tests)."""
    fastkm_philox4x32_10(&counter[0], &key[0], &out[0])


def uniforms(uint32_t key0, uint32_t key1, uint32_t round_, uint64_t row_offset,
             double[::1] out):             # OUT (n,) the uniforms of rows row_offset...
    """The uniforms ``sample_rows`` draws for rows row_offset, row_offset + 1, ..."""
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = fastkm_uniform(key0, key1, round_, row_offset + <uint64_t>i)
