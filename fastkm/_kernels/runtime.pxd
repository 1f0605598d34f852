# Facts about the OpenMP runtime, and Region: the thread count of one parallel
# kernel call and, per thread, when it started, when it finished its share and
# how much CPU time that share took (fastkm/_threads.py learns from them).
from fastkm._kernels.openmp cimport omp_get_thread_num

cdef extern from "clock.h":
    double fastkm_wall() noexcept nogil
    double fastkm_thread_cpu() noexcept nogil


cdef struct RegionClock:
    int n_threads     # threads the kernel runs its parallel region with
    double* enter     # (n_threads,) wall clock when each thread began its share
    double* leave     # (n_threads,) wall clock when it finished (before the closing barrier)
    double* cpu       # (n_threads,) CPU seconds of its share


cdef class Region:
    cdef RegionClock clock
    cdef public str kind
    cdef public double units
    cdef public double items
    cdef public double started


cdef inline double region_enter(RegionClock* c) noexcept nogil:
    # At the top of a thread's share of a parallel region: returns its CPU
    # clock now. A one-thread region only reads the wall clock (its share's
    # CPU time is its wall time unless it was preempted; the thread CPU clock
    # costs a system call).
    cdef int i = omp_get_thread_num()
    c.enter[i] = fastkm_wall()
    return fastkm_thread_cpu() if c.n_threads > 1 else c.enter[i]


cdef inline void region_leave(RegionClock* c, double t0) noexcept nogil:
    # after the thread's last work item, before the region's closing barrier
    cdef int i = omp_get_thread_num()
    c.leave[i] = fastkm_wall()
    c.cpu[i] = (fastkm_thread_cpu() if c.n_threads > 1 else c.leave[i]) - t0
