# Weighted row sums per label, in row order, in float64: the one routine every
# algorithm accumulates its center sums through, so equal labels always give
# bitwise equal sums.
from cython cimport floating


cdef inline void add_weighted_row(
    const floating* x, double w, Py_ssize_t d,
    double* sums_row,             # IN/OUT (d,)
    double* weight,               # IN/OUT scalar
) noexcept nogil:
    cdef Py_ssize_t f
    weight[0] += w
    for f in range(d):
        sums_row[f] += w * x[f]


cdef inline void _accumulate_runs(
    const floating* X, const floating* sw, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d, double* sums, double* weights,
) noexcept nogil:
    # called with a literal d: the feature loops unroll and acc stays in registers
    cdef double acc[8]
    cdef double w, wi
    cdef Py_ssize_t i, f
    cdef int a
    cdef const floating* x
    i = start
    while i < end:
        a = labels[i]
        for f in range(d):
            acc[f] = 0.0
        w = 0.0
        while True:
            wi = sw[i]
            x = X + i * d
            w += wi
            for f in range(d):
                acc[f] += wi * x[f]
            i += 1
            if i >= end or labels[i] != a:
                break
        weights[a] += w
        for f in range(d):
            sums[a * d + f] += acc[f]


cdef inline void accumulate_rows(
    const floating* X, const floating* sw, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    double* sums,                 # IN/OUT (k, d)
    double* weights,              # IN/OUT (k,)
) noexcept nogil:
    # Weighted row sums per label, in row order. With few features a run of
    # rows with the same label is summed in registers and added once (sorted
    # data has long runs; the per-row read-modify-write of the center's sums
    # is a store-to-load chain). Every algorithm accumulates through this one
    # routine, so equal labels give bitwise equal sums.
    cdef Py_ssize_t i
    cdef int a
    if d == 1:
        _accumulate_runs(X, sw, labels, start, end, 1, sums, weights)
    elif d == 2:
        _accumulate_runs(X, sw, labels, start, end, 2, sums, weights)
    elif d == 3:
        _accumulate_runs(X, sw, labels, start, end, 3, sums, weights)
    elif d == 4:
        _accumulate_runs(X, sw, labels, start, end, 4, sums, weights)
    elif d <= 8:
        _accumulate_runs(X, sw, labels, start, end, d, sums, weights)
    else:
        for i in range(start, end):
            a = labels[i]
            add_weighted_row(X + i * d, sw[i], d, sums + a * d, weights + a)


cdef inline void accumulate_dirty(
    const floating* X, const floating* sw, const int* labels,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d, Py_ssize_t k,
    double* sums,                 # IN/OUT (k, d) this block's sums, valid for the clean labels
    double* weights,              # IN/OUT (k,)
    const char* dirty,            # IN  (k,) labels that gained or lost a row in this block
) noexcept nogil:
    # Recompute this block's sums of the dirty labels only. A label's sum is
    # built from its own rows in row order (its runs are the same whatever the
    # other labels do), so the result is bitwise what accumulate_rows gives.
    cdef Py_ssize_t i, j, f, n_dirty = 0
    cdef int a
    for j in range(k):
        if dirty[j]:
            n_dirty += 1
            weights[j] = 0.0
            for f in range(d):
                sums[j * d + f] = 0.0
    if n_dirty == 0:
        return
    i = start
    while i < end:
        a = labels[i]
        j = i + 1
        while j < end and labels[j] == a:
            j += 1
        if dirty[a]:
            accumulate_rows(X, sw, labels, i, j, d, sums, weights)
        i = j


cdef inline Py_ssize_t sum_changed(const Py_ssize_t* block_changed, Py_ssize_t n_blocks) noexcept nogil:
    # labels changed in an iteration, from the per-block counts (block order)
    cdef Py_ssize_t b, changed = 0
    for b in range(n_blocks):
        changed += block_changed[b]
    return changed
