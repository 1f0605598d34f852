"""Kernels shared by every algorithm: the fixed row-block layout, inertia,
distances to the assigned centers.

Sums over samples are computed per row block (a layout that depends on the data
shape only, never on the thread count) and merged in block order, so every
result is bitwise identical whatever the number of threads.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite

import numpy as np

from fastkm._common cimport CHUNK, DOT_TILE_J, sq_dist

CHUNK_ROWS = CHUNK
CENTER_TILE = DOT_TILE_J
MAX_BLOCKS = 64
BLOCK_SUMS_BUDGET = 64 * 2**20  # bytes of per-block float64 center sums


def block_layout(Py_ssize_t n_samples, Py_ssize_t n_clusters=1, Py_ssize_t n_features=1):
    """Split ``n_samples`` rows into reduction blocks.

    Returns ``(n_blocks, rows_per_block)``; ``rows_per_block`` is a multiple of
    the tile height. The layout depends only on the arguments, which is what
    makes block-ordered reductions independent of the thread count.
    """
    cdef Py_ssize_t n_chunks = (n_samples + CHUNK - 1) // CHUNK
    cdef Py_ssize_t per_block_bytes = 8 * n_clusters * (n_features + 1)
    cdef Py_ssize_t cap = max(1, BLOCK_SUMS_BUDGET // per_block_bytes)
    cdef Py_ssize_t n_blocks = max(1, min(n_chunks, MAX_BLOCKS, cap))
    cdef Py_ssize_t chunks_per_block = (n_chunks + n_blocks - 1) // n_blocks
    cdef Py_ssize_t rows_per_block = max(1, chunks_per_block) * CHUNK
    n_blocks = max(1, (n_samples + rows_per_block - 1) // rows_per_block)
    return int(n_blocks), int(rows_per_block)


def dot_operands(centers):
    """Transposed centers and 0.5*||c||^2, padded to a multiple of CENTER_TILE centers.

    Padding centers are zero with a half-norm of the dtype's max: never the argmin.
    """
    c = np.asarray(centers)
    k, d = c.shape
    k_pad = -(-k // CENTER_TILE) * CENTER_TILE
    ct = np.zeros((d, k_pad), dtype=c.dtype)
    ct[:, :k] = c.T
    hn = np.full(k_pad, np.finfo(c.dtype).max, dtype=c.dtype)
    hn[:k] = 0.5 * np.einsum("ij,ij->i", c, c)
    return ct, hn


def dot_tiles(centers, Py_ssize_t dot_ct):
    """Centers packed for argmin_chunk_dot: (n_tiles, d, dot_ct) and the half norms
    (n_tiles * dot_ct,), from dot_operands (so the half norms are Hamerly's, bit for bit).
    Padding centers are zero with a half norm of the dtype's max: never the argmin."""
    ct, hn = dot_operands(centers)
    d, k_pad = ct.shape
    n_tiles = -(-k_pad // dot_ct)
    cpack = np.zeros((n_tiles * dot_ct, d), dtype=ct.dtype)
    cpack[:k_pad] = ct.T
    cpack = np.ascontiguousarray(cpack.reshape(n_tiles, dot_ct, d).transpose(0, 2, 1))
    hnp = np.full(n_tiles * dot_ct, np.finfo(ct.dtype).max, dtype=ct.dtype)
    hnp[:k_pad] = hn
    return cpack.reshape(n_tiles * d, dot_ct), hnp


def distances_to_assigned(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    const floating[:, ::1] centers,    # IN  (n_clusters, n_features)
    const int[::1] labels,             # IN  (n_samples,)
    double[::1] out,                   # OUT (n_samples,)
    int n_threads,
):
    """Squared Euclidean distance of every sample to its assigned center."""
    cdef Py_ssize_t i, n = X.shape[0], d = X.shape[1]
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = sq_dist(&X[i, 0], &centers[labels[i], 0], d)


cdef double _inertia_block(
    const floating* X, const floating* sw, const floating* centers,
    const int* labels, Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0
    for i in range(start, end):
        s += <double>sw[i] * <double>sq_dist(X + i * d, centers + labels[i] * d, d)
    return s


def inertia(
    const floating[:, ::1] X,             # IN  (n_samples, n_features)
    const floating[::1] sample_weight,    # IN  (n_samples,)
    const floating[:, ::1] centers,       # IN  (n_clusters, n_features)
    const int[::1] labels,                # IN  (n_samples,)
    double[::1] block_partials,           # scratch (n_blocks,)
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Sum of weighted squared distances of samples to their assigned center.

    Partial sums per row block (float64), added in block order.
    """
    cdef Py_ssize_t b, start, end
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_partials.shape[0]
    cdef double total = 0.0
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_partials[b] = _inertia_block(
            &X[0, 0], &sample_weight[0], &centers[0, 0], &labels[0], start, end, d
        )
    for b in range(n_blocks):
        total += block_partials[b]
    return total


def merge_blocks(
    const double[:, :, ::1] block_sums,    # IN  (n_blocks, n_clusters, n_features)
    const double[:, ::1] block_weights,    # IN  (n_blocks, n_clusters)
    double[:, ::1] sums,                   # OUT (n_clusters, n_features)
    double[::1] weights,                   # OUT (n_clusters,)
    int n_threads,
):
    """Add the per-block center sums in block order (thread-count independent)."""
    cdef Py_ssize_t n_blocks = block_sums.shape[0], k = block_sums.shape[1]
    cdef Py_ssize_t d = block_sums.shape[2], b, j, f
    cdef double s
    for j in prange(k, nogil=True, schedule="static", num_threads=n_threads):
        s = 0.0
        for b in range(n_blocks):
            s = s + block_weights[b, j]
        weights[j] = s
        # each (j, f) still adds the blocks in block order from 0.0; the block
        # loop is outside so that a center's d sums are read contiguously
        for f in range(d):
            sums[j, f] = 0.0
        for b in range(n_blocks):
            for f in range(d):
                sums[j, f] = sums[j, f] + block_sums[b, j, f]


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline uint64_t fastkm_mix64(uint64_t h) {
        /* murmur3 finaliser */
        h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
    }
    static inline uint64_t fastkm_hash_row(const void* row, Py_ssize_t nbytes) {
        const unsigned char* p = (const unsigned char*)row;
        uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)nbytes, w;
        Py_ssize_t i = 0;
        for (; i + 8 <= nbytes; i += 8) {
            memcpy(&w, p + i, 8);
            h = fastkm_mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        }
        if (i < nbytes) {
            w = 0;
            memcpy(&w, p + i, (size_t)(nbytes - i));
            h = fastkm_mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        }
        return fastkm_mix64(h);
    }
    """
    unsigned long long fastkm_hash_row(const void* row, Py_ssize_t nbytes) noexcept nogil
    int memcmp(const void* a, const void* b, size_t n) noexcept nogil
    void* memcpy(void* dst, const void* src, size_t n) noexcept nogil


cdef enum:
    DEDUP_PARTS = 16   # fixed hash partitions: the output never depends on the thread count


cdef inline bint _rows_equal(const char* a, const char* b, Py_ssize_t nbytes) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef unsigned long long u, v
    cdef unsigned int p, q
    while i + 8 <= nbytes:
        memcpy(&u, a + i, 8)
        memcpy(&v, b + i, 8)
        if u != v:
            return False
        i += 8
    if i < nbytes:  # float32 rows of odd width: 4 bytes left
        memcpy(&p, a + i, 4)
        memcpy(&q, b + i, 4)
        return p == q
    return True


cdef Py_ssize_t _dedup_part(
    const char* X, Py_ssize_t nbytes, const Py_ssize_t* rows, Py_ssize_t m,
    const unsigned long long* hashes, int* table, Py_ssize_t mask,
    char* uniq,                   # OUT (m, nbytes) this partition's distinct rows
    int* local,                   # OUT (n,) indexed by row: id within the partition
    const int* abort_flag,        # another partition gave up: stop early
) noexcept nogil:
    # Distinct rows of one hash partition, in row order. Returns their count, or
    # -1 when over 97% of the first quarter of its rows are distinct.
    cdef Py_ssize_t q, i, slot, n_u = 0, check_at = m // 4 if m >= 1024 else -1
    cdef int u
    for q in range(m):
        i = rows[q]
        slot = <Py_ssize_t>(hashes[i] & <unsigned long long>mask)
        while True:
            u = table[slot]
            if u < 0:
                table[slot] = <int>n_u
                memcpy(uniq + n_u * nbytes, X + i * nbytes, nbytes)
                local[i] = <int>n_u
                n_u += 1
                break
            if _rows_equal(uniq + u * nbytes, X + i * nbytes, nbytes):
                local[i] = u
                break
            slot = (slot + 1) & mask
        if q + 1 == check_at:
            if n_u * 100 > 97 * check_at or abort_flag[0]:
                return -1
    return n_u


def unique_rows(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    Py_ssize_t max_unique,
    int n_threads=1,
):
    """Distinct rows of X (bitwise equal values) and the map back to X.

    Returns ``(X_unique, inverse)`` with ``X_unique[inverse] == X``, or ``None``
    when there are more than ``max_unique`` distinct rows, or when some hash
    partition finds over 97% of the first quarter of its rows distinct (then
    deduplication would not pay). Rows are hashed, split into DEDUP_PARTS
    partitions by hash, and each partition is deduplicated with its own
    open-addressing table, in parallel. ``X_unique`` lists partition 0's rows
    in order of first occurrence, then partition 1's, ...: it depends only on X.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], nbytes = d * sizeof(floating)
    cdef Py_ssize_t i, p, c, total = 0, ch, n_chunks
    cdef int[::1] abort_flag = np.zeros(1, dtype=np.int32)
    if max_unique < 1 or n == 0:
        return None
    cdef unsigned long long[::1] hashes = np.empty(n, dtype=np.uint64)
    cdef Py_ssize_t[::1] count = np.zeros(DEDUP_PARTS + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] rows = np.empty(n, dtype=np.intp)
    cdef int[::1] local = np.empty(n, dtype=np.int32)
    cdef Py_ssize_t[::1] n_u = np.zeros(DEDUP_PARTS, dtype=np.intp)
    cdef Py_ssize_t[::1] cap = np.zeros(DEDUP_PARTS + 1, dtype=np.intp)
    cdef const char* base = <const char*>&X[0, 0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            hashes[i] = fastkm_hash_row(base + i * nbytes, nbytes)
    with nogil:
        for i in range(n):
            count[(hashes[i] >> 60) + 1] += 1
        for p in range(DEDUP_PARTS):
            count[p + 1] += count[p]
            c = 16
            while c < 2 * (count[p + 1] - count[p]):
                c *= 2
            cap[p + 1] = cap[p] + c
        for p in range(DEDUP_PARTS):
            n_u[p] = count[p]  # fill pointers
        for i in range(n):
            p = <Py_ssize_t>(hashes[i] >> 60)
            rows[n_u[p]] = i
            n_u[p] += 1
    cdef int[::1] table = np.full(cap[DEDUP_PARTS], -1, dtype=np.int32)
    cdef char[:, ::1] uniq = np.empty((n, nbytes), dtype=np.int8)
    for p in prange(DEDUP_PARTS, nogil=True, schedule="dynamic", num_threads=n_threads):
        if count[p + 1] == count[p]:
            n_u[p] = 0  # an empty partition (its rows would start past the end)
        else:
            n_u[p] = _dedup_part(base, nbytes, &rows[count[p]], count[p + 1] - count[p],
                                 &hashes[0], &table[cap[p]], cap[p + 1] - cap[p] - 1,
                                 &uniq[count[p], 0], &local[0], &abort_flag[0])
            if n_u[p] < 0:
                abort_flag[0] = 1
    for p in range(DEDUP_PARTS):
        if n_u[p] < 0:
            return None
        total += n_u[p]
    if total > max_unique:
        return None
    out = np.empty((total, d), dtype=np.asarray(X).dtype)
    cdef char[:, ::1] out_b = out.view(np.int8).reshape(total, nbytes)
    cdef Py_ssize_t[::1] offset = np.zeros(DEDUP_PARTS, dtype=np.intp)
    cdef int[::1] inverse = np.empty(n, dtype=np.int32)
    with nogil:
        for p in range(1, DEDUP_PARTS):
            offset[p] = offset[p - 1] + n_u[p - 1]
        for p in range(DEDUP_PARTS):
            if n_u[p] > 0:
                memcpy(&out_b[offset[p], 0], &uniq[count[p], 0], n_u[p] * nbytes)
        for i in range(n):
            inverse[i] = <int>(offset[hashes[i] >> 60] + local[i])
    return out, np.asarray(inverse)


SPATIAL_CODE_BITS = 18  # cells of the Morton grid: 2**18 at most (a 1 MiB histogram)


def spatial_order(const floating[:, ::1] X):
    """A permutation that puts close rows next to each other.

    Rows are binned on a grid over their bounding box (2**18 cells at most) and
    ordered by the cells' Morton (Z-order) code, stably, by a counting sort: a
    run of consecutive rows then spans a small box, which is what lets
    ``lloyd_iter(prune=True)`` skip most centers. O(n d); depends only on X.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f, b
    cdef int bits = max(1, min(16, SPATIAL_CODE_BITS // max(d, 1)))
    cdef Py_ssize_t n_cells = (<Py_ssize_t>1) << (bits * d)
    cdef Py_ssize_t q, top = ((<Py_ssize_t>1) << bits) - 1
    cdef unsigned int code
    cdef double[::1] lo = np.empty(d)
    cdef double[::1] scale = np.empty(d)
    cdef double a, z
    cdef unsigned int[::1] codes = np.empty(n, dtype=np.uint32)
    cdef Py_ssize_t[::1] start = np.zeros(n_cells + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] perm = np.empty(n, dtype=np.intp)
    with nogil:
        for f in range(d):
            a = X[0, f]
            z = X[0, f]
            for i in range(1, n):
                a = X[i, f] if X[i, f] < a else a
                z = X[i, f] if X[i, f] > z else z
            lo[f] = a
            scale[f] = (top + 1) / (z - a) if z > a else 0.0
        for i in range(n):
            code = 0
            for f in range(d):
                q = <Py_ssize_t>((X[i, f] - lo[f]) * scale[f])
                q = top if q > top else (0 if q < 0 else q)
                for b in range(bits):
                    code = code | (<unsigned int>((q >> b) & 1) << (b * d + f))
            codes[i] = code
            start[code + 1] += 1
        for q in range(n_cells):
            start[q + 1] += start[q]
        for i in range(n):
            perm[start[codes[i]]] = i
            start[codes[i]] += 1
    return np.asarray(perm)


cdef void _column_sums_block(
    const floating* X, Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const double* center,         # subtracted before squaring, or NULL for plain sums
    double* out,                  # OUT (d,)
) noexcept nogil:
    cdef Py_ssize_t i, f
    cdef double t
    for f in range(d):
        out[f] = 0.0
    for i in range(start, end):
        for f in range(d):
            if center == NULL:
                out[f] += X[i * d + f]
            else:
                t = X[i * d + f] - center[f]
                out[f] += t * t


cdef _column_means(const floating[:, ::1] X, double[:, ::1] partial, double[::1] mean,
                   Py_ssize_t rpb, int n_threads):
    # float64 column sums over fixed row blocks (one row of ``partial`` each),
    # merged in block order, over n: thread-count independent
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], nb = partial.shape[0], b, f, start, end
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        _column_sums_block(&X[0, 0], start, end, d, NULL, &partial[b, 0])
    for b in range(nb):
        for f in range(d):
            mean[f] += partial[b, f]
    for f in range(d):
        mean[f] /= n


def mean_variance(const floating[:, ::1] X, int n_threads):
    """Column means and the mean of the column variances of X (as ``np.var(X,
    axis=0).mean()``), in float64: two passes over fixed row blocks, merged in
    block order (no temporary of X's size, thread-count independent)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, f, start, end
    n_blocks, rows_per_block = block_layout(n)
    cdef Py_ssize_t nb = n_blocks, rpb = rows_per_block
    cdef double[:, ::1] partial = np.empty((nb, d))
    cdef double[::1] mean = np.zeros(d)
    cdef double var = 0.0
    if n == 0:
        return np.asarray(mean), 0.0
    _column_means(X, partial, mean, rpb, n_threads)
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        _column_sums_block(&X[0, 0], start, end, d, &mean[0], &partial[b, 0])
    for f in range(d):
        for b in range(1, nb):
            partial[0, f] += partial[b, f]
        var += partial[0, f] / n
    return np.asarray(mean), var / d


def centre_columns(const floating[:, ::1] X, floating[:, ::1] out, int n_threads):
    """``out = X - mean`` with the column means of X rounded to X's dtype (the
    subtraction NumPy's ``X - mean.astype(X.dtype)`` does), in parallel; ``out``
    may be X itself. The means are mean_variance's (float64, fixed row blocks,
    thread-count independent); returns them."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], b, f, i, start, end
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError("out must have X's shape")
    n_blocks, rows_per_block = block_layout(n)
    cdef Py_ssize_t nb = n_blocks, rpb = rows_per_block
    mean_arr = np.zeros(d)
    cdef double[::1] mean = mean_arr
    cdef double[:, ::1] partial = np.empty((nb, d))
    if n == 0:
        return mean_arr
    _column_means(X, partial, mean, rpb, n_threads)
    cdef floating[::1] m = mean_arr.astype(np.asarray(X).dtype)
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        start = b * rpb
        end = min(n, start + rpb)
        for i in range(start, end):
            for f in range(d):
                out[i, f] = X[i, f] - m[f]
    return mean_arr


def center_sq_distances(const double[:, ::1] C, int n_threads=1):
    """Squared distances between all pairs of rows of C (exact differences).

    Compiled rather than a Gram-matrix product: a BLAS call inside the
    iteration loop would wake BLAS's own thread pool, which then competes with
    the OpenMP threads of the next pass.
    """
    cdef Py_ssize_t k = C.shape[0], d = C.shape[1], i, j, f
    cdef double[:, ::1] Ct = np.ascontiguousarray(np.asarray(C).T)
    cdef double[:, ::1] out = np.zeros((k, k))
    cdef double t
    for i in prange(k, nogil=True, schedule="static", num_threads=n_threads):
        for f in range(d):
            for j in range(k):
                t = Ct[f, j] - C[i, f]
                out[i, j] += t * t
    return np.asarray(out)


def row_sq_norms(const floating[:, ::1] X, int n_threads=1):
    """||x||^2 of every row, in float64.

    Each row's features are added in a fixed order into four partial sums
    (feature f into sum f % 4), combined as (s0 + s1) + (s2 + s3): one row, one
    thread, so the same bits for any thread count.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f
    cdef double[::1] out = np.empty(n)
    cdef double s0, s1, s2, s3, v
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        f = 0
        while f + 4 <= d:
            v = X[i, f]
            s0 = s0 + v * v
            v = X[i, f + 1]
            s1 = s1 + v * v
            v = X[i, f + 2]
            s2 = s2 + v * v
            v = X[i, f + 3]
            s3 = s3 + v * v
            f = f + 4
        if f < d:
            v = X[i, f]
            s0 = s0 + v * v
        if f + 1 < d:
            v = X[i, f + 1]
            s1 = s1 + v * v
        if f + 2 < d:
            v = X[i, f + 2]
            s2 = s2 + v * v
        out[i] = (s0 + s1) + (s2 + s3)
    return np.asarray(out)


def all_finite(const floating[:, ::1] X, int n_threads=1):
    """True when X holds no NaN and no infinity (one parallel pass, no temporary)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f
    cdef Py_ssize_t bad = 0
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for f in range(d):
            bad += not isfinite(X[i, f])
    return bad == 0
