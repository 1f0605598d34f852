# The validated CSR rows every sparse kernel reads (built in csr.pyx): float32
# or float64 values, int32 column indices increasing within each row, intp row
# pointers, and the rows' squared norms in float64.
cdef class CSR:
    cdef readonly Py_ssize_t n_rows, n_cols, nnz
    cdef readonly bint single          # float32 values
    cdef const void* data              # (nnz,) float32 or float64
    cdef const int* indices            # (nnz,)
    cdef const Py_ssize_t* indptr      # (n_rows + 1,)
    cdef const double* sq_norms        # (n_rows,) ||x_i||^2
    cdef readonly object arrays        # (data, indices, indptr, sq_norms), kept alive
