# BlockSums: a fit's per-block float64 center sums, and their merge in block
# order from inside a kernel's own parallel region (no second region, no barrier).
cdef extern from "atomics.h":
    Py_ssize_t fastkm_countdown(Py_ssize_t* c) noexcept nogil
    void fastkm_flag_set(int* f) noexcept nogil
    int fastkm_flag_get(int* f) noexcept nogil
    bint fastkm_try_lock(int* l) noexcept nogil
    void fastkm_unlock(int* l) noexcept nogil
    Py_ssize_t fastkm_load(Py_ssize_t* p) noexcept nogil
    void fastkm_store(Py_ssize_t* p, Py_ssize_t v) noexcept nogil


cdef struct Merge:
    const double* block_sums      # (n_blocks, k, d)
    const double* block_weights   # (n_blocks, k)
    double* sums                  # OUT (k, d)
    double* weights               # OUT (k,)
    int* ready                    # (n_blocks,) a block's sums are final
    int lock                      # held by the thread that is merging
    Py_ssize_t next               # the next block to add (atomic)
    Py_ssize_t n_blocks
    Py_ssize_t k
    Py_ssize_t d


cdef class BlockSums:
    cdef readonly Py_ssize_t n_blocks, rows_per_block, n_clusters, n_features
    cdef double[:, :, ::1] block_sums     # (n_blocks, k, d)
    cdef double[:, ::1] block_weights     # (n_blocks, k)
    cdef Py_ssize_t[::1] block_changed    # (n_blocks,) labels changed per block
    cdef double[:, ::1] sums_v            # (k, d)
    cdef double[::1] weights_v            # (k,)
    cdef int[::1] ready_v                 # (n_blocks,)
    cdef Merge merge
    cdef readonly object sums, weights    # the merged sums as ndarrays (views of sums_v, weights_v)
    cdef Merge* start_merge(self) noexcept nogil


cdef inline void _add_block(Merge* m, Py_ssize_t b) noexcept nogil:
    # sums += block b; from 0.0 at block 0: each element adds the blocks in
    # block order, the same additions as a merge after the fact
    cdef Py_ssize_t j, kd = m.k * m.d
    cdef const double* bs = m.block_sums + b * kd
    cdef const double* bw = m.block_weights + b * m.k
    if b == 0:
        for j in range(m.k):
            m.weights[j] = 0.0
        for j in range(kd):
            m.sums[j] = 0.0
    for j in range(m.k):
        m.weights[j] = m.weights[j] + bw[j]
    for j in range(kd):
        m.sums[j] = m.sums[j] + bs[j]


cdef inline void block_done(Merge* m, Py_ssize_t b) noexcept nogil:
    # Block b's sums are final. Whoever holds the lock adds every final block
    # that is next in order; a thread that cannot take the lock leaves (the
    # holder checks again after releasing it, so a block made final meanwhile
    # is never missed). All blocks are added by the end of the region.
    cdef Py_ssize_t nxt
    fastkm_flag_set(&m.ready[b])
    while fastkm_try_lock(&m.lock):
        nxt = fastkm_load(&m.next)
        while nxt < m.n_blocks and fastkm_flag_get(&m.ready[nxt]):
            _add_block(m, nxt)
            nxt = nxt + 1
        fastkm_store(&m.next, nxt)
        fastkm_unlock(&m.lock)
        if not (nxt < m.n_blocks and fastkm_flag_get(&m.ready[nxt])):
            break
