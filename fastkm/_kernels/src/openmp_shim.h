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
#endif

#endif
