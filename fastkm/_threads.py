"""How many threads fastkm uses: the default count for this process, and, for
every parallel kernel call, whether its work pays for more than one thread.

Default count (``n_threads=None``), in order:

1. ``OMP_NUM_THREADS`` when it is set;
2. an OpenMP limit set at run time (threadpoolctl, ``omp_set_num_threads``);
3. otherwise the CPUs this process may run on (``os.sched_getaffinity``),
   capped by the CPU quota of its cgroup (cgroup v2 ``cpu.max``, v1
   ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded up): a container started
   with ``--cpus=2`` on a 64-core host gets 2 threads, not 64.

Per call (``region``): a parallel region costs its threads a start and a
closing barrier. On a quiet machine that is a few microseconds; on a busy one
the barrier waits for whichever thread the OS has preempted, often a whole
scheduler tick (milliseconds), and a fit of many short regions then runs
slower on two threads than on one. So each call is given as many threads as
can each get at least ``2 x penalty`` of work, where the work is predicted
from the last call of the same kind (its CPU seconds per unit of size) and
``penalty`` is learned from every multi-thread call: how much longer it took
than its work divided by its threads (granularity allowed for). The penalty
rises at once when the machine gets busy and comes down slowly as calls (and
occasional probes while it is high) show it quiet again. Results never depend
on the thread count, so none of this changes a single bit of output.
"""
import math
import os

from fastkm._kernels.runtime import Region, openmp_max_threads, release_threads, wall_clock

_OMP_AT_IMPORT = openmp_max_threads()

# --------------------------------------------------------------------------- default count


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroup_paths(proc_self):
    """{controller or '': path} of this process's cgroups (v1 controllers, v2 as '')."""
    text = _read(os.path.join(proc_self, "cgroup")) or ""
    paths = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
        for c in controllers.split(","):
            if c:
                paths[c] = path
    return paths


def _walk_up(root, path):
    """root/path, root/parent(path), ..., root: the cgroup and its ancestors as mounted."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts), -1, -1):
        yield os.path.join(root, *parts[:i])


def _quota_v2(sys_cgroup, path):
    best = None
    for d in _walk_up(sys_cgroup, path):
        text = _read(os.path.join(d, "cpu.max"))
        if not text:
            continue
        fields = text.split()
        if len(fields) >= 2 and fields[0] != "max":
            try:
                q = int(fields[0]) / int(fields[1])
            except (ValueError, ZeroDivisionError):
                continue
            best = q if best is None else min(best, q)
    return best


def _quota_v1(sys_cgroup, path):
    best = None
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        root = os.path.join(sys_cgroup, mount)
        if not os.path.isdir(root):
            continue
        for d in _walk_up(root, path):
            quota, period = (_read(os.path.join(d, f)) for f in ("cpu.cfs_quota_us",
                                                                  "cpu.cfs_period_us"))
            try:
                quota, period = int(quota), int(period)
            except (TypeError, ValueError):
                continue
            if quota > 0 and period > 0:
                best = quota / period if best is None else min(best, quota / period)
        break
    return best


def cgroup_cpu_limit(proc_self="/proc/self", sys_cgroup="/sys/fs/cgroup"):
    """CPUs this process's cgroup quota allows (a float, e.g. 1.5), or None
    when there is no quota (or no cgroup file system)."""
    paths = _cgroup_paths(proc_self)
    if "" in paths:
        q = _quota_v2(sys_cgroup, paths[""])
        if q is not None:
            return q
    if "cpu" in paths:
        return _quota_v1(sys_cgroup, paths["cpu"])
    return None


def affinity_cpus():
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


_QUOTA_TTL = 1.0   # s: the cgroup quota is read again at most this often
_quota_cache = [-1e9, None]


def _cached_quota():
    now = wall_clock()
    if now - _quota_cache[0] > _QUOTA_TTL:
        _quota_cache[:] = [now, cgroup_cpu_limit()]
    return _quota_cache[1]


def default_threads():
    """(n_threads, where it came from): what ``n_threads=None`` uses now."""
    omp = max(1, int(openmp_max_threads()))
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return omp, f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS'].strip()}"
    if omp != _OMP_AT_IMPORT:
        return omp, "OpenMP limit set at run time (threadpoolctl or omp_set_num_threads)"
    cpus = affinity_cpus()
    quota = _cached_quota()
    n = min(omp, cpus)
    where = f"CPU affinity ({cpus} CPU{'s' if cpus != 1 else ''})"
    if quota is not None:
        where += f", cgroup CPU quota {quota:g}"
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n), where


def resolve(n_threads):
    """``n_threads`` as an int: None = ``default_threads()``, -1 = every CPU this
    process may run on (quota ignored), else a positive int."""
    import numbers

    if n_threads is None:
        return default_threads()[0]
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or an int; got {n_threads!r}.")
    if n_threads == -1:
        return affinity_cpus()
    if n_threads < 1:
        raise ValueError(f"n_threads must be None, -1 or an int >= 1; got {int(n_threads)}.")
    return int(n_threads)


# --------------------------------------------------------------------------- per call

MIN_PENALTY = 5e-6        # s: a parallel region's cost on a quiet machine, at least
START_PENALTY = 20e-6     # s: assumed before anything was measured
SHARE = 2.0               # every thread gets at least SHARE x penalty of work
PROBE_AFTER = 30.0        # while one thread is chosen because of the penalty, probe two
                          # threads once every PROBE_AFTER x penalty of such calls' time
RISE, FALL = 0.5, 0.1     # how fast the penalty follows a higher / lower measurement
DEFAULT_RATE = 1e-9       # s per unit, for a kind never measured (units ~ multiply-adds)
LATE = 100e-6             # s: a multi-thread call this much over its ideal found a thread
                          # preempted; when the next such call gets one thread, the idle
                          # workers are let go at once instead of spinning for milliseconds


class ThreadPolicy:
    """Threads per kernel call, from measured work and a learned penalty
    (see the module docstring). One per process; used with the GIL held."""

    def __init__(self):
        self.penalty = START_PENALTY
        self.rate = {}        # kind -> CPU seconds per unit of size, from its last call
        self.credit = 0.0     # time of calls that got one thread because of the penalty

    def _share(self, kind, units):
        """(predicted one-thread work, threads that each get SHARE x penalty of it)."""
        work = self.rate.get(kind, DEFAULT_RATE) * units
        return work, int(work / (SHARE * self.penalty))

    def threads(self, kind, units, n_threads):
        """Threads for a call of ``kind`` and size ``units``, at most ``n_threads``."""
        if n_threads <= 1:
            return 1
        work, t = self._share(kind, units)
        if t >= 2:
            return min(t, n_threads)
        if work >= 2 * SHARE * MIN_PENALTY:
            # one thread only because the machine looked busy: look again now and then
            self.credit += work
            if self.credit >= PROBE_AFTER * self.penalty:
                self.credit = 0.0
                return 2
        return 1

    def region(self, kind, units, items, n_threads):
        """A ``Region`` for one call (see ``threads``)."""
        return Region(self.threads(kind, units, n_threads), kind, units, items)

    def record(self, region):
        """Learn from a finished call."""
        work, span = region.shares()
        if work <= 0.0:
            return
        if region.units > 0:
            self.rate[region.kind] = work / region.units
        n = region.n_threads
        if n > 1:
            items = max(1.0, region.items)
            ideal = work / items * math.ceil(items / n)  # equal items, dealt out evenly
            excess = max(0.0, span - ideal)
            step = RISE if excess > self.penalty else FALL
            self.penalty = max(MIN_PENALTY, self.penalty + step * (excess - self.penalty))
            if excess > LATE and self._share(region.kind, region.units)[1] < 2:
                release_threads()


POLICY = ThreadPolicy()


def region(kind, units, items, n_threads):
    """A ``Region`` for one parallel kernel call (``POLICY.region``)."""
    return POLICY.region(kind, units, items, n_threads)


def record(r):
    """Learn from a finished call (``POLICY.record``)."""
    POLICY.record(r)


def threads_for(kind, units, n_threads):
    """Threads for a kernel that takes a plain thread count (not timed)."""
    return POLICY.threads(kind, units, n_threads)
