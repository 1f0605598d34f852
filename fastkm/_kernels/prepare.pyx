"""Data preparation kernels: the distinct rows of X (hash partitions, parallel)
and a spatial (Morton) order of the rows. Both depend on X only, never on the
thread count."""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy

import numpy as np

from fastkm._kernels.layout cimport CHUNK
from fastkm._kernels.openmp cimport omp_get_num_threads, omp_get_thread_num

cdef extern from "row_hash.h":
    unsigned long long fastkm_hash_row(const void* row, Py_ssize_t nbytes) noexcept nogil


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


cdef struct DedupCtx:
    # read-only, one per unique_rows call
    const char* X                 # (n, nbytes) the rows as bytes
    Py_ssize_t n
    Py_ssize_t nbytes
    const unsigned long long* hashes   # (n,)
    const Py_ssize_t* start       # (DEDUP_PARTS + 1,) partition p's rows: start[p]..start[p+1]
    const Py_ssize_t* cap         # (DEDUP_PARTS + 1,) its table slots: cap[p]..cap[p+1]
    int* table                    # (cap[DEDUP_PARTS],) -1 = empty; else a row's local id
    char* uniq                    # (n, nbytes) partition p's distinct rows from row start[p]
    int* local                    # OUT (n,) id of each row within its partition
    Py_ssize_t* n_u               # OUT (DEDUP_PARTS,) distinct rows per partition, -1: gave up
    int* abort_flag               # some partition gave up: everyone stops


cdef inline void _dedup_row(const DedupCtx* c, Py_ssize_t p, Py_ssize_t i) noexcept nogil:
    # row i into partition p's table: its local id, a new one if it is new
    cdef Py_ssize_t mask = c.cap[p + 1] - c.cap[p] - 1, nb = c.nbytes
    cdef Py_ssize_t slot = <Py_ssize_t>(c.hashes[i] & <unsigned long long>mask)
    cdef int* table = c.table + c.cap[p]
    cdef char* uniq = c.uniq + c.start[p] * nb
    cdef const char* row = c.X + i * nb
    cdef int u
    while True:
        u = table[slot]
        if u < 0:
            table[slot] = <int>c.n_u[p]
            memcpy(uniq + c.n_u[p] * nb, row, nb)
            c.local[i] = <int>c.n_u[p]
            c.n_u[p] += 1
            return
        if _rows_equal(uniq + u * nb, row, nb):
            c.local[i] = u
            return
        slot = (slot + 1) & mask


cdef void _dedup_share(const DedupCtx* c, int tid, int nt) noexcept nogil:
    # The partitions p with p % nt == tid, their rows taken in row order (one
    # pass over the rows, so X is read in order). A partition gives up (-1)
    # when over 97% of the first quarter of its rows are distinct.
    cdef Py_ssize_t i, p, m
    cdef Py_ssize_t seen[DEDUP_PARTS]
    for p in range(DEDUP_PARTS):
        seen[p] = 0
    for i in range(c.n):
        p = <Py_ssize_t>(c.hashes[i] >> 60)
        if p % nt != tid or c.n_u[p] < 0:
            continue
        _dedup_row(c, p, i)
        seen[p] += 1
        m = c.start[p + 1] - c.start[p]
        if m >= 1024 and seen[p] == m // 4:
            if c.n_u[p] * 100 > 97 * seen[p]:
                c.n_u[p] = -1
                c.abort_flag[0] = 1
            if c.abort_flag[0]:
                return


def unique_rows(
    const floating[:, ::1] X,          # IN  (n_samples, n_features)
    Py_ssize_t max_unique,
    int n_threads=1,
):
    """Distinct rows of X (bitwise equal values) and the map back to X.

    Returns ``(X_unique, inverse)`` with ``X_unique[inverse] == X``, or ``None``
    when there are more than ``max_unique`` distinct rows, or when some hash
    partition finds over 97% of the first quarter of its rows distinct (then
    deduplication would not pay). Rows are hashed and split into DEDUP_PARTS
    partitions by hash, each deduplicated with its own open-addressing table;
    each thread takes a share of the partitions and one in-order pass over the
    rows. ``X_unique`` lists partition 0's rows in order of first occurrence,
    then partition 1's, ...: it depends only on X, not on the thread count.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], nbytes = d * sizeof(floating)
    cdef Py_ssize_t i, p, c, total = 0, ch, n_chunks
    cdef int[::1] abort_flag = np.zeros(1, dtype=np.int32)
    if max_unique < 1 or n == 0:
        return None
    cdef unsigned long long[::1] hashes = np.empty(n, dtype=np.uint64)
    cdef Py_ssize_t[::1] count = np.zeros(DEDUP_PARTS + 1, dtype=np.intp)
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
    cdef int[::1] table = np.full(cap[DEDUP_PARTS], -1, dtype=np.int32)
    cdef char[:, ::1] uniq = np.empty((n, nbytes), dtype=np.int8)
    cdef DedupCtx ctx
    ctx.X = base
    ctx.n = n
    ctx.nbytes = nbytes
    ctx.hashes = &hashes[0]
    ctx.start = &count[0]
    ctx.cap = &cap[0]
    ctx.table = &table[0]
    ctx.uniq = &uniq[0, 0]
    ctx.local = &local[0]
    ctx.n_u = &n_u[0]
    ctx.abort_flag = &abort_flag[0]
    with nogil, parallel(num_threads=min(n_threads, <int>DEDUP_PARTS)):
        _dedup_share(&ctx, omp_get_thread_num(), omp_get_num_threads())
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
