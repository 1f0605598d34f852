# The one place that talks to the OpenMP runtime directly (src/openmp_shim.h):
# without OpenMP the same names exist and behave as a single-threaded runtime.
cdef extern from "openmp_shim.h":
    bint FASTKM_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    int fastkm_release_threads() noexcept nogil
