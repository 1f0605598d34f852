"""Sparse input: ``check_csr`` turns a scipy.sparse matrix or array of any format
into the validated ``SparseX`` that the sparse fit, ``predict`` and the seeding
read. scipy is imported here only, and only once sparse input has arrived
(``fastkm._validation.check_array`` calls in); ``import fastkm`` and dense fits
never import it.

Kept as they are: CSR with float32 or float64 values, int32 column indices
sorted within each row. Otherwise a copy is made (the caller's matrix is never
modified): other formats become CSR, other value types float64, int64 column
indices int32 (row pointers may stay int64: more than 2**31 nonzeros are
fine), and rows with unsorted or repeated columns are sorted, repeats summed.
Explicit zeros are kept (they change no result).
"""
import numpy as np

from fastkm._kernels import csr
from fastkm._kernels.stats import all_finite
from fastkm._threads import threads_for

INDEX_MAX = np.iinfo(np.int32).max


class SparseX:
    """Validated CSR rows: what every sparse code path takes instead of an array.

    Attributes
    ----------
    rows : fastkm._kernels.csr.CSR
        The kernels' view: values, int32 columns, intp row pointers, squared
        row norms.
    matrix : scipy.sparse CSR matrix or array
        The same rows as a scipy object (the caller's own when it needed no
        conversion, else made on first use): what an ``init`` callable receives.
    shape, dtype, nnz
    """

    ndim = 2

    def __init__(self, rows, matrix, dtype):
        self.rows = rows
        self._matrix = matrix
        self.dtype = np.dtype(dtype)
        self.shape = (rows.n_rows, rows.n_cols)
        self.nnz = rows.nnz

    @property
    def matrix(self):
        if self._matrix is None:
            import scipy.sparse as sp

            data, indices, indptr, _ = self.rows.arrays
            self._matrix = sp.csr_matrix((data, indices, indptr), shape=self.shape)
        return self._matrix

    def tocsr(self):
        return self.matrix

    @property
    def size(self):
        return self.nnz

    @property
    def sq_norms(self):
        return self.rows.sq_norms_array()

    def row_subset(self, rows, out=None):
        """Dense copies of some rows, in X's dtype (into ``out`` if given)."""
        rows = np.ascontiguousarray(rows, dtype=np.intp)
        if out is None:
            out = np.empty((rows.shape[0], self.shape[1]), dtype=self.dtype)
        csr.densify_rows(self.rows, rows, out)
        return out


def is_sparse(X):
    """True for scipy.sparse matrices and arrays (and ``SparseX``), without
    importing scipy."""
    return isinstance(X, SparseX) or (hasattr(X, "tocsr") and hasattr(X, "nnz")
                                      and hasattr(X, "format"))


def _value_dtype(data, dtype, name):
    if data.dtype.kind == "c":
        raise ValueError(f"Complex data not supported; {name} has dtype {data.dtype}.")
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric; got a sparse matrix of dtype {data.dtype}.")
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(np.float32 if data.dtype == np.float32 else np.float64)


def _check_shape(shape, name, estimator, min_samples):
    n, d = shape
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={shape}) while a minimum of "
            f"{min_samples} is required by {estimator}."
        )
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is "
            f"required by {estimator}."
        )
    if d > INDEX_MAX:
        raise ValueError(
            f"{name} has {d} columns: fastkm's sparse kernels take column indices below "
            f"2**31 (int32), and {d} dense float64 centers per cluster would not fit anyway."
        )


def _structure(M, n, d, name):
    """The matrix's (data, indices, indptr) trimmed to nnz, structure checked."""
    indptr = np.asarray(M.indptr)
    if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"{name} is not a valid CSR matrix: its row pointers (indptr) are "
                         "malformed.")
    nnz = int(indptr[-1])
    data, indices = np.asarray(M.data), np.asarray(M.indices)
    if data.shape[0] < nnz or indices.shape[0] < nnz:
        raise ValueError(f"{name} is not a valid CSR matrix: indptr[-1] = {nnz} is beyond its "
                         f"{min(data.shape[0], indices.shape[0])} stored values.")
    data, indices = data[:nnz], indices[:nnz]
    if nnz and (indices.min() < 0 or indices.max() >= d):
        raise ValueError(f"{name} is not a valid CSR matrix: a column index is outside "
                         f"[0, {d}).")
    return data, indices, indptr


def check_csr(X, *, dtype=None, name="X", estimator="KMeans", min_samples=1, n_threads=1):
    """Validate sparse X; return a ``SparseX`` (see the module docstring for what
    is copied). Errors as ``check_array``'s for dense input, and for NaN or
    infinity among the stored values."""
    if isinstance(X, SparseX):
        if dtype is None or X.dtype == np.dtype(dtype):
            return X
        X = X.matrix
    import scipy.sparse as sp

    _check_shape(tuple(int(s) for s in X.shape), name, estimator, min_samples)
    n, d = (int(s) for s in X.shape)
    M = X if X.format == "csr" else X.tocsr()
    data, indices, indptr = _structure(M, n, d, name)
    target = _value_dtype(data, dtype, name)
    values = np.ascontiguousarray(data, dtype=target)
    if not all_finite(values.reshape(-1, 1), threads_for("finite", values.size, n_threads)):
        what = "NaN" if np.isnan(values).any() else f"infinity or a value too large for {target}"
        raise ValueError(f"Input {name} contains {what}.")
    indices32 = np.ascontiguousarray(indices, dtype=np.int32)
    pointers = np.ascontiguousarray(indptr, dtype=np.intp)
    changed = values is not data or indices32 is not indices or M is not X
    if csr.unsorted_rows(pointers, indices32, threads_for("finite", indices32.size, n_threads)):
        # sort the columns and sum repeats on a copy (scipy's own canonical form)
        M = sp.csr_matrix((values.copy(), indices32.copy(), pointers.copy()), shape=(n, d))
        M.sum_duplicates()
        values, indices32 = np.ascontiguousarray(M.data), np.ascontiguousarray(M.indices,
                                                                                 dtype=np.int32)
        pointers = np.ascontiguousarray(M.indptr, dtype=np.intp)
        changed = True
    rows = csr.CSR(values, indices32, pointers, d, threads_for("norms", values.size, n_threads))
    return SparseX(rows, None if changed else X, target)
