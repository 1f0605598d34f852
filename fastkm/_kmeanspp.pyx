"""Greedy k-means++ seeding kernels.

The Python layer draws the random numbers; these kernels do the O(n) work of
each step in parallel: the potential each candidate center would give, the D^2
update for the chosen one, and the inverse-CDF lookup of D^2 sampling.

Triangle-inequality pruning (exact): each sample remembers its nearest chosen
center a. If d(a, c)^2 / 4 >= D^2 for a candidate c, then d(x, c) >= D and the
sample's D^2 cannot drop, so its distance to c is never computed. The results
are those of the unpruned computation; only the work shrinks as k grows.
Potentials are summed per fixed row block and merged in block order
(thread-count independent).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

# D^2 is computed in float64; a skip needs the bound to clear it by more than
# the rounding of those float64 sums
cdef double PRUNE = 1.0 - 1e-9


cdef inline double _sqdist(const floating* a, const floating* b, Py_ssize_t d) noexcept nogil:
    # four partial sums in a fixed order: independent FMA chains, deterministic
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, t0, t1, t2, t3
    cdef Py_ssize_t f = 0
    while f + 4 <= d:
        t0 = <double>a[f] - <double>b[f]
        t1 = <double>a[f + 1] - <double>b[f + 1]
        t2 = <double>a[f + 2] - <double>b[f + 2]
        t3 = <double>a[f + 3] - <double>b[f + 3]
        s0 = s0 + t0 * t0
        s1 = s1 + t1 * t1
        s2 = s2 + t2 * t2
        s3 = s3 + t3 * t3
        f = f + 4
    while f < d:
        t0 = <double>a[f] - <double>b[f]
        s0 = s0 + t0 * t0
        f = f + 1
    return (s0 + s1) + (s2 + s3)


cdef void _candidates_block(
    const floating* X, const floating* sw, const double* closest, const int* assign,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* candidates, Py_ssize_t m,
    const double* quarter_sq, Py_ssize_t n_chosen,
    double* pot, Py_ssize_t stride,
    double* acc,
) noexcept nogil:
    cdef Py_ssize_t i, t
    cdef double c, dist, w
    cdef int a
    for t in range(m):
        acc[t] = 0.0
    for i in range(start, end):
        c = closest[i]
        a = assign[i]
        w = sw[i]
        for t in range(m):
            dist = c
            if not c <= quarter_sq[t * n_chosen + a] * PRUNE:
                dist = _sqdist(X + i * d, candidates + t * d, d)
                if c < dist:
                    dist = c
            acc[t] += w * dist
    for t in range(m):
        pot[t * stride] = acc[t]


def candidate_potentials(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,) current D^2
    const int[::1] assign,                 # IN  (n_samples,) index of the nearest chosen center
    const floating[:, ::1] candidates,     # IN  (n_candidates, n_features)
    const double[:, ::1] quarter_sq,       # IN  (n_candidates, n_chosen) d(candidate, center)^2 / 4
    double[:, ::1] block_pot,              # OUT (n_candidates, n_blocks)
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Per-block potential sum_i w_i min(D_i^2, ||x_i - c_t||^2) for each candidate t."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = candidates.shape[0]
    cdef Py_ssize_t n_blocks = block_pot.shape[1], n_chosen = quarter_sq.shape[1], b, start, end
    cdef double* acc
    with nogil, parallel(num_threads=n_threads):
        acc = <double*> malloc(m * sizeof(double))
        for b in prange(n_blocks, schedule="dynamic"):
            start = b * rows_per_block
            end = min(n, start + rows_per_block)
            _candidates_block(&X[0, 0], &sample_weight[0], &closest[0], &assign[0],
                              start, end, d, &candidates[0, 0], m,
                              &quarter_sq[0, 0], n_chosen, &block_pot[0, b], n_blocks, acc)
        free(acc)


cdef double _update_block(
    const floating* X, const floating* sw, double* closest, int* assign,
    Py_ssize_t start, Py_ssize_t end, Py_ssize_t d,
    const floating* center, int center_index, const double* quarter_sq,
) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0, dist, c
    for i in range(start, end):
        c = closest[i]
        if not c <= quarter_sq[assign[i]] * PRUNE:
            dist = _sqdist(X + i * d, center, d)
            if dist < c:
                closest[i] = dist
                assign[i] = center_index
                c = dist
        s += sw[i] * c
    return s


def update_closest(
    const floating[:, ::1] X,              # IN  (n_samples, n_features)
    const floating[::1] sample_weight,     # IN  (n_samples,)
    double[::1] closest,                   # IN/OUT (n_samples,) D^2 to the nearest chosen center
    int[::1] assign,                       # IN/OUT (n_samples,) index of that center
    const floating[::1] center,            # IN  (n_features,) the newly chosen center
    int center_index,                      # IN  its index among the chosen centers
    const double[::1] quarter_sq,          # IN  (n_chosen,) d(center, chosen_j)^2 / 4
    double[::1] block_pot,                 # OUT (n_blocks,) sum_i w_i D_i^2 per block
    Py_ssize_t rows_per_block,
    int n_threads,
):
    """Lower D^2 to the new center; return the total potential (block-ordered sum).

    For the first center pass ``closest`` = +inf, ``assign`` = 0 and any
    ``quarter_sq`` of length 1.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t b, start, end
    cdef double total = 0.0
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        start = b * rows_per_block
        end = min(n, start + rows_per_block)
        block_pot[b] = _update_block(&X[0, 0], &sample_weight[0], &closest[0], &assign[0],
                                     start, end, d, &center[0], center_index, &quarter_sq[0])
    for b in range(n_blocks):
        total += block_pot[b]
    return total


def sample_d2(
    const floating[::1] sample_weight,     # IN  (n_samples,)
    const double[::1] closest,             # IN  (n_samples,)
    const double[::1] block_pot,           # IN  (n_blocks,)
    Py_ssize_t rows_per_block,
    const double[::1] targets,             # IN  (n_draws,) uniform draws times the potential
    Py_ssize_t[::1] out,                   # OUT (n_draws,)
):
    """Inverse CDF of D^2 sampling: for each target r, the first index whose
    cumulative weighted D^2 reaches r (as ``searchsorted(cumsum, r)``), clipped
    to the last sample. Walks block totals first, then one block.
    """
    cdef Py_ssize_t n = closest.shape[0], n_blocks = block_pot.shape[0]
    cdef Py_ssize_t t, b, i, end
    cdef double r, cum
    with nogil:
        for t in range(targets.shape[0]):
            r = targets[t]
            cum = 0.0
            b = 0
            while b < n_blocks - 1 and cum + block_pot[b] < r:
                cum += block_pot[b]
                b += 1
            i = b * rows_per_block
            end = min(n, i + rows_per_block)
            while i < end:
                cum += sample_weight[i] * closest[i]
                if cum >= r:
                    break
                i += 1
            out[t] = min(i, n - 1)
