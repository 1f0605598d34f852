# The one place that talks to the OpenMP runtime directly. Without OpenMP the
# same names exist and behave as a single-threaded runtime.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTKM_OPENMP_ENABLED 1
    #else
    #define FASTKM_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint FASTKM_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
