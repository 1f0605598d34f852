/* fastkm: clocks for the thread policy (fastkm/_threads.py).
 *
 * fastkm_thread_cpu(): CPU seconds the calling thread has run (not counting
 * time it waited for a CPU); wall time where the platform has no per-thread
 * CPU clock. fastkm_wall(): a monotonic wall clock in seconds.
 */
#ifndef FASTKM_CLOCK_H
#define FASTKM_CLOCK_H

#if defined(_WIN32)
#include <windows.h>
static inline double fastkm_wall(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
}
static inline double fastkm_thread_cpu(void) { return fastkm_wall(); }
#else
#include <time.h>
static inline double fastkm_wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static inline double fastkm_thread_cpu(void) {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
        return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
#endif
    return fastkm_wall();
}
#endif

#endif
