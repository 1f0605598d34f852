"""Facts about the OpenMP runtime and the CPU, and ``Region``: the thread count a
parallel kernel call runs with and what its threads spent in it, which the
thread policy (``fastkm._threads``) learns from."""
from libc.stdlib cimport calloc, free

from fastkm._kernels.openmp cimport (
    FASTKM_OPENMP_ENABLED, fastkm_release_threads, omp_get_max_threads,
)

cdef extern from "cpu_level.h":
    int fastkm_x86_level() noexcept nogil

OPENMP_ENABLED = bool(FASTKM_OPENMP_ENABLED)


def openmp_max_threads():
    """Threads an OpenMP parallel region would use now.

    Honours ``OMP_NUM_THREADS`` and limits set at run time (e.g. by threadpoolctl).
    Returns 1 when fastkm was built without OpenMP.
    """
    return omp_get_max_threads()


def cpu_x86_level():
    """x86-64 micro-architecture level the CPU (and OS) supports: 4 means AVX-512 (F, BW, CD,
    DQ, VL), 3 means AVX2+FMA, else 1."""
    return fastkm_x86_level()


def release_threads():
    """Let this thread's idle OpenMP workers go now instead of after their spin
    (OpenMP 5.0 ``omp_pause_resource_all``). True if the runtime did; the next
    parallel region starts new workers. Used when the machine is busy: an idle
    worker that spins competes with the threads doing the work."""
    cdef int rc
    with nogil:
        rc = fastkm_release_threads()
    return rc == 0


def wall_clock():
    """The monotonic wall clock regions are timed with, in seconds."""
    return fastkm_wall()


cdef class Region:
    """One parallel kernel call: the threads it runs with and, afterwards, how
    they spent it.

    ``kind``, ``units`` (the call's size, e.g. rows x centers x features) and
    ``items`` (its work items: chunks or blocks) let the thread policy predict
    the next call of the same kind from this one. ``started`` is the wall clock
    when the policy handed the region out.
    """

    def __cinit__(self, int n_threads=1, str kind="", double units=0.0, double items=1.0):
        cdef int n = max(1, n_threads)
        self.clock.n_threads = n
        self.clock.enter = <double*> calloc(n, sizeof(double))
        self.clock.leave = <double*> calloc(n, sizeof(double))
        self.clock.cpu = <double*> calloc(n, sizeof(double))
        if self.clock.enter == NULL or self.clock.leave == NULL or self.clock.cpu == NULL:
            raise MemoryError()
        self.kind = kind
        self.units = units
        self.items = items
        self.started = fastkm_wall()

    def __dealloc__(self):
        free(self.clock.enter)
        free(self.clock.leave)
        free(self.clock.cpu)

    @property
    def n_threads(self):
        return self.clock.n_threads

    def shares(self):
        """(work, span): the CPU seconds of every thread's share together (a
        one-thread call: its wall time), and the wall time from the first
        thread's start to the last thread's finish. (0, 0) before the call."""
        cdef double work = 0.0, first = 0.0, last = 0.0
        cdef int i
        for i in range(self.clock.n_threads):
            if self.clock.leave[i] == 0.0:
                continue  # this thread took no part (OpenMP gave fewer threads)
            work += self.clock.cpu[i]
            if first == 0.0 or self.clock.enter[i] < first:
                first = self.clock.enter[i]
            if self.clock.leave[i] > last:
                last = self.clock.leave[i]
        return work, (last - first if last > first else 0.0)
