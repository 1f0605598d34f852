/* fastkm: the one place that talks to the OpenMP runtime. Without OpenMP the
 * same names exist and behave as a single-threaded runtime. */
#ifndef FASTKM_OPENMP_SHIM_H
#define FASTKM_OPENMP_SHIM_H

#ifdef _OPENMP
#include <omp.h>
#define FASTKM_OPENMP_ENABLED 1
#else
#define FASTKM_OPENMP_ENABLED 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* Let the calling thread's idle OpenMP workers go (OpenMP 5.0 "pause"): they
 * stop spinning and exit; the next parallel region starts new ones. Returns
 * 0 on success, nonzero where the runtime cannot. GCC's libgomp has had the
 * call since GCC 9 while still reporting _OPENMP 201511, so on ELF systems the
 * symbol is looked up weakly (NULL when the runtime lacks it). */
#if defined(_OPENMP) && defined(__ELF__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#pragma weak omp_pause_resource_all
static inline int fastkm_release_threads(void) {
    return omp_pause_resource_all ? omp_pause_resource_all(omp_pause_soft) : -1;
}
#elif defined(_OPENMP) && _OPENMP >= 201811
static inline int fastkm_release_threads(void) {
    return omp_pause_resource_all(omp_pause_soft);
}
#else
static inline int fastkm_release_threads(void) { return -1; }
#endif

#endif
