"""CSR input for the sparse kernels: the ``CSR`` rows object (values, columns,
row pointers, squared row norms), the structure check of a CSR matrix, the
column statistics of ``tol``, the grouping of rows by label that the center
sums walk, and dense copies of rows (initial centers).

Per-row results are computed by one thread each in a fixed order, and the
column statistics in row order: every result is the same bits for any thread
count.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset


cdef class CSR:
    """Validated CSR rows, as the sparse kernels read them.

    Parameters
    ----------
    data : ndarray (nnz,), float32 or float64, C-contiguous
    indices : ndarray (nnz,), int32: columns, strictly increasing within a row, < n_cols
    indptr : ndarray (n_rows + 1,), intp: ``indptr[0] == 0``, non-decreasing, ends at nnz
    n_cols : int
    n_threads : int
        Threads of the squared-norm pass.

    The caller (``fastkm.kmeans._csr``) has checked all of that; nothing here
    is checked again. ``sq_norms()`` returns the rows' ||x||^2 (float64, each
    row's values added in order).
    """

    def __cinit__(self, data, indices, indptr, Py_ssize_t n_cols, int n_threads=1):
        data = np.ascontiguousarray(data)
        indices = np.ascontiguousarray(indices, dtype=np.int32)
        indptr = np.ascontiguousarray(indptr, dtype=np.intp)
        if data.dtype not in (np.float32, np.float64):
            raise TypeError("CSR data must be float32 or float64")
        self.n_rows = indptr.shape[0] - 1
        self.n_cols = n_cols
        self.nnz = indptr[self.n_rows]
        self.single = data.dtype == np.float32
        norms = np.empty(self.n_rows)
        if self.single:
            _row_norms[float](data, indices, indptr, norms, n_threads)
        else:
            _row_norms[double](data, indices, indptr, norms, n_threads)
        self.arrays = (data, indices, indptr, norms)
        self.data = <const void*><size_t>data.ctypes.data
        self.indices = <const int*><size_t>indices.ctypes.data
        self.indptr = <const Py_ssize_t*><size_t>indptr.ctypes.data
        self.sq_norms = <const double*><size_t>norms.ctypes.data

    def sq_norms_array(self):
        """||x_i||^2 of every row (float64, read-only view)."""
        out = self.arrays[3].view()
        out.flags.writeable = False
        return out


cdef _row_norms(const floating[::1] data, const int[::1] indices, const Py_ssize_t[::1] indptr,
                double[::1] out, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, p
    cdef double s, v
    cdef const floating* x = &data[0] if data.shape[0] > 0 else NULL
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            v = x[p]
            s = s + v * v
        out[i] = s


def unsorted_rows(
    const Py_ssize_t[::1] indptr,          # IN  (n_rows + 1,)
    const int[::1] indices,                # IN  (nnz,) columns, already known to be in range
    int n_threads,
):
    """Number of rows whose columns are not strictly increasing (unsorted or
    repeated): such a matrix is summed and sorted on a copy first."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, p, bad = 0
    cdef const int* ind = &indices[0] if indices.shape[0] > 0 else NULL
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for p in range(indptr[i] + 1, indptr[i + 1]):
            if ind[p] <= ind[p - 1]:
                bad += 1
                break
    return bad


def column_mean_variance(CSR X):
    """Mean over the columns of the column variances (zeros included), in
    float64, as ``np.var(X.toarray(), axis=0).mean()`` without the dense copy:
    ``tol``'s scale for sparse input (scikit-learn's ``mean_variance_axis``).
    Two passes in row order (the same bits for any thread count)."""
    cdef Py_ssize_t n = X.n_rows, d = X.n_cols, f
    cdef double[::1] mean = np.zeros(d)
    cdef double[::1] sq = np.zeros(d)
    cdef Py_ssize_t[::1] count = np.zeros(d, dtype=np.intp)
    cdef double t, total = 0.0
    if X.single:
        _column_sums(X, <const float*>X.data, mean, count)
    else:
        _column_sums(X, <const double*>X.data, mean, count)
    with nogil:
        for f in range(d):
            mean[f] = mean[f] / n
    if X.single:
        _centred_squares(X, <const float*>X.data, mean, sq)
    else:
        _centred_squares(X, <const double*>X.data, mean, sq)
    with nogil:
        for f in range(d):
            # the column's zeros each add mean^2
            t = sq[f] + (n - count[f]) * mean[f] * mean[f]
            total = total + t / n
    return total / d


cdef void _column_sums(CSR X, const floating* x, double[::1] sums,
                       Py_ssize_t[::1] count) noexcept nogil:
    cdef Py_ssize_t p
    cdef int f
    for p in range(X.nnz):
        f = X.indices[p]
        sums[f] += x[p]
        count[f] += 1


cdef void _centred_squares(CSR X, const floating* x, const double[::1] mean,
                           double[::1] sq) noexcept nogil:
    cdef Py_ssize_t p
    cdef int f
    cdef double t
    for p in range(X.nnz):
        f = X.indices[p]
        t = <double>x[p] - mean[f]
        sq[f] += t * t


def group_rows(
    const int[::1] labels,                 # IN  (n,) the labels the sums follow
    const int[::1] previous,               # IN  (n,) the labels of the previous sums (-1: none)
    const floating[::1] sample_weight,     # IN  (n,)
    int[::1] order,                        # OUT (n,) rows by label, in row order within a label
    Py_ssize_t[::1] offsets,               # OUT (k + 1,) label j's rows are order[offsets[j]:offsets[j + 1]]
    double[::1] weights,                   # OUT (k,) total weight per label (rows in order)
    unsigned char[::1] dirty,              # OUT (k,) 1 where a label gained or lost a row
):
    """Counting sort of the rows by label (stable), the labels' total weights
    and which labels changed rows since ``previous``. Returns the number of
    rows whose label differs from ``previous``."""
    cdef Py_ssize_t n = labels.shape[0], k = weights.shape[0], i, j, changed = 0
    cdef int a, b
    with nogil:
        memset(&dirty[0], 0, k)
        for j in range(k + 1):
            offsets[j] = 0
        for j in range(k):
            weights[j] = 0.0
        for i in range(n):
            a = labels[i]
            offsets[a + 1] += 1
            weights[a] += sample_weight[i]
            b = previous[i]
            if a != b:
                changed += 1
                dirty[a] = 1
                if b >= 0:
                    dirty[b] = 1
        for j in range(k):
            offsets[j + 1] += offsets[j]
        for i in range(n):
            a = labels[i]
            order[offsets[a]] = <int>i
            offsets[a] += 1
        for j in range(k, 0, -1):
            offsets[j] = offsets[j - 1]
        offsets[0] = 0
    return changed


def densify_rows(
    CSR X,
    const Py_ssize_t[::1] rows,            # IN  (m,) rows of X
    floating[:, ::1] out,                  # OUT (m, n_cols) those rows, dense
):
    """Dense copies of some rows (initial centers taken from X)."""
    cdef Py_ssize_t m = rows.shape[0], d = X.n_cols, r, i, p
    cdef const floating* x = <const floating*>X.data
    if X.single != (sizeof(floating) == 4):
        raise TypeError("out must have X's dtype")
    with nogil:
        for r in range(m):
            memset(&out[r, 0], 0, d * sizeof(floating))
            i = rows[r]
            for p in range(X.indptr[i], X.indptr[i + 1]):
                out[r, X.indices[p]] = x[p]
