"""Facts about the OpenMP runtime fastkm was built with."""
from fastkm._openmp cimport FASTKM_OPENMP_ENABLED, omp_get_max_threads

OPENMP_ENABLED = bool(FASTKM_OPENMP_ENABLED)


def openmp_max_threads():
    """Threads an OpenMP parallel region would use now.

    Honours ``OMP_NUM_THREADS`` and limits set at run time (e.g. by threadpoolctl).
    Returns 1 when fastkm was built without OpenMP.
    """
    return omp_get_max_threads()


cdef extern from *:
    """
    static int fastkm_x86_level(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                && __builtin_cpu_supports("bmi2")) {
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                    && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                    && __builtin_cpu_supports("avx512vl"))
                return 4;
            return 3;
        }
    #endif
        return 1;
    }
    """
    int fastkm_x86_level() noexcept nogil


def cpu_x86_level():
    """x86-64 micro-architecture level the CPU (and OS) supports: 4 means AVX-512 (F, BW, CD,
    DQ, VL), 3 means AVX2+FMA, else 1."""
    return fastkm_x86_level()
