"""The default thread count (affinity, cgroup CPU quota, OpenMP settings) and the
per-call thread policy (fastkm/_threads.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastkm
from fastkm import _threads
from fastkm._kernels.runtime import OPENMP_ENABLED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastkm.__file__)))


def _env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _default_in_subprocess(prefix="", **env):
    code = ("from fastkm import _threads; n, src = _threads.default_threads(); "
            "print(n); print(src)")
    out = subprocess.run(prefix + [sys.executable, "-c", code] if prefix else
                         [sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(**env), timeout=60)
    assert out.returncode == 0, out.stderr
    n, src = out.stdout.strip().splitlines()
    return int(n), src


# --------------------------------------------------------------------------- cgroup files

def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_cgroup_v2_quota_is_read_and_the_smallest_ancestor_wins(tmp_path):
    proc, sysfs = tmp_path / "proc", tmp_path / "cgroup"
    _write(str(proc / "cgroup"), "0::/kubepods/pod1/ctr\n")
    _write(str(sysfs / "kubepods" / "cpu.max"), "300000 100000\n")
    _write(str(sysfs / "kubepods" / "pod1" / "cpu.max"), "max 100000\n")
    _write(str(sysfs / "kubepods" / "pod1" / "ctr" / "cpu.max"), "150000 100000\n")
    assert _threads.cgroup_cpu_limit(str(proc), str(sysfs)) == pytest.approx(1.5)
    _write(str(sysfs / "kubepods" / "pod1" / "ctr" / "cpu.max"), "max 100000\n")
    assert _threads.cgroup_cpu_limit(str(proc), str(sysfs)) == pytest.approx(3.0)
    _write(str(sysfs / "kubepods" / "cpu.max"), "max 100000\n")
    assert _threads.cgroup_cpu_limit(str(proc), str(sysfs)) is None


def test_cgroup_v1_quota_is_read(tmp_path):
    proc, sysfs = tmp_path / "proc", tmp_path / "cgroup"
    _write(str(proc / "cgroup"), "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    _write(str(sysfs / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us"), "200000\n")
    _write(str(sysfs / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us"), "100000\n")
    assert _threads.cgroup_cpu_limit(str(proc), str(sysfs)) == pytest.approx(2.0)
    _write(str(sysfs / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us"), "-1\n")
    assert _threads.cgroup_cpu_limit(str(proc), str(sysfs)) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert _threads.cgroup_cpu_limit(str(tmp_path / "nope"), str(tmp_path / "none")) is None
    _write(str(tmp_path / "proc" / "cgroup"), "garbage\n0::/a\n")
    _write(str(tmp_path / "cg" / "a" / "cpu.max"), "not numbers\n")
    assert _threads.cgroup_cpu_limit(str(tmp_path / "proc"), str(tmp_path / "cg")) is None


def test_default_threads_is_capped_by_a_mocked_quota(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "_OMP_AT_IMPORT", _threads.openmp_max_threads())
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: 64)
    monkeypatch.setattr(_threads, "openmp_max_threads", lambda: 64)
    monkeypatch.setattr(_threads, "_OMP_AT_IMPORT", 64)
    monkeypatch.setattr(_threads, "_cached_quota", lambda: 2.0)
    n, src = _threads.default_threads()
    assert n == 2 and "quota 2" in src
    monkeypatch.setattr(_threads, "_cached_quota", lambda: 1.5)
    assert _threads.default_threads()[0] == 2  # rounded up, as loky does
    monkeypatch.setattr(_threads, "_cached_quota", lambda: 0.2)
    assert _threads.default_threads()[0] == 1
    monkeypatch.setattr(_threads, "_cached_quota", lambda: None)
    assert _threads.default_threads() == (64, "CPU affinity (64 CPUs)")


def test_omp_num_threads_and_runtime_limits_win(monkeypatch):
    monkeypatch.setattr(_threads, "_cached_quota", lambda: 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(_threads, "openmp_max_threads", lambda: 3)
    assert _threads.default_threads() == (3, "OMP_NUM_THREADS=3")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(_threads, "_OMP_AT_IMPORT", 8)
    monkeypatch.setattr(_threads, "openmp_max_threads", lambda: 5)  # threadpoolctl's doing
    n, src = _threads.default_threads()
    assert n == 5 and "threadpoolctl" in src


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_threads_follow_the_cpu_affinity():
    cpus = sorted(os.sched_getaffinity(0))
    n, src = _default_in_subprocess(prefix=["taskset", "-c", str(cpus[0])]) \
        if _have("taskset") else _affinity_subprocess(cpus[0])
    assert n == 1 and "(1 CPU)" in src


def _have(cmd):
    from shutil import which

    return which(cmd) is not None


def _affinity_subprocess(cpu):
    code = (f"import os; os.sched_setaffinity(0, {{{cpu}}}); "
            "from fastkm import _threads; n, s = _threads.default_threads(); print(n); print(s)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=60)
    n, src = out.stdout.strip().splitlines()
    return int(n), src


def _make_cgroup(name, cpus):
    """A cgroup limited to ``cpus`` CPUs (v1 cpu controller or v2 cpu.max), or None."""
    for root, files in (("/sys/fs/cgroup/cpu", ("cpu.cfs_quota_us", "cpu.cfs_period_us")),
                        ("/sys/fs/cgroup", ("cpu.max", None))):
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except OSError:
            continue
        try:
            if files[1] is None:
                with open(os.path.join(path, "cpu.max"), "w") as f:
                    f.write(f"{int(cpus * 100000)} 100000")
            else:
                with open(os.path.join(path, files[1]), "w") as f:
                    f.write("100000")
                with open(os.path.join(path, files[0]), "w") as f:
                    f.write(str(int(cpus * 100000)))
            return path
        except OSError:
            os.rmdir(path)
    return None


def test_default_threads_in_a_real_cgroup_with_a_cpu_quota():
    """A cgroup made here with a 1-CPU quota: a process inside it uses 1 thread by
    default (as ``docker --cpus=1`` would), and says why."""
    if not sys.platform.startswith("linux"):
        pytest.skip("cgroups are Linux only")
    path = _make_cgroup(f"fastkm-test-{os.getpid()}", 1)
    if path is None:
        pytest.skip("cannot create a cgroup with a CPU quota here (not permitted)")
    try:
        code = ("import os, sys\n"
                "open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))\n"
                "from fastkm import _threads\n"
                "n, s = _threads.default_threads(); print(n); print(s)")
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                             env=_env(OMP_NUM_THREADS=""), timeout=60)
        if out.returncode != 0 and "Permission" in out.stderr:
            pytest.skip("cannot move a process into the cgroup here")
        assert out.returncode == 0, out.stderr
        n, src = out.stdout.strip().splitlines()
        assert int(n) == 1 and "quota 1" in src
    finally:
        os.rmdir(path)


def test_show_config_says_where_the_default_comes_from(capsys):
    fastkm.show_config()
    out = capsys.readouterr().out
    assert "threads_from" in out
    n, src = _threads.default_threads()
    assert f"threads            : {n}" in out and src in out


def test_resolve_rejects_bad_values():
    with pytest.raises(TypeError, match=r"n_threads must be None or an int; got 2\.5"):
        _threads.resolve(2.5)
    with pytest.raises(ValueError, match="got 0"):
        _threads.resolve(0)
    assert _threads.resolve(-1) == _threads.affinity_cpus()
    assert _threads.resolve(3) == 3


# --------------------------------------------------------------------------- policy

class FakeRegion:
    """What ThreadPolicy.record reads from a finished kernel call."""

    def __init__(self, kind, units, items, n_threads, work, span):
        self.kind, self.units, self.items, self.n_threads = kind, units, items, n_threads
        self._shares = (work, span)

    def shares(self):
        return self._shares


def test_policy_uses_threads_on_a_quiet_machine_and_one_when_busy(monkeypatch):
    released = []
    monkeypatch.setattr(_threads, "release_threads", lambda: released.append(1) or True)
    p = _threads.ThreadPolicy()
    # a kind measured at 1 ns per unit: 1e6 units = 1 ms of one-thread work
    p.record(FakeRegion("k", 1e6, 100, 1, 1e-3, 1e-3))
    assert p.threads("k", 1e6, 8) == 8
    assert p.threads("k", 1e4, 8) == 1     # 10 us of work: not worth a region
    # a two-thread call that took 5 ms longer than its share: a preempted thread
    p.record(FakeRegion("k", 1e6, 100, 2, 1e-3, 5.5e-3))
    assert p.penalty > 2e-3
    assert released == [1]                 # the next 1 ms call gets one thread: workers go
    assert p.threads("k", 1e6, 8) == 1     # 1 ms no longer pays for a second thread
    assert p.threads("k", 1e8, 8) >= 2     # 100 ms still does
    # one-thread calls accumulate credit until a probe with two threads
    got = [p.threads("k", 1e6, 8) for _ in range(200)]
    assert 2 in got and got.count(2) < 20
    # quiet probes bring the penalty (and the threads) back down
    for _ in range(60):
        p.record(FakeRegion("k", 1e6, 100, 2, 1e-3, 0.5e-3))
    assert p.penalty < 20e-6 and p.threads("k", 1e6, 8) == 8


def test_policy_allows_for_granularity():
    """Three equal items on two threads: the span is two items' worth, not
    1.5; that is not a penalty."""
    p = _threads.ThreadPolicy()
    p.record(FakeRegion("g", 3e6, 3, 2, 3e-3, 2e-3))
    assert p.penalty < _threads.START_PENALTY


def test_policy_never_changes_results():
    """A fit with the policy forced to one thread everywhere, and with it
    forced to every thread, gives the same bits."""
    X = np.random.RandomState(0).normal(size=(30000, 6)).astype(np.float32)
    outs = []
    for penalty in (1.0, _threads.MIN_PENALTY):  # 1 s: every call one thread
        saved = _threads.POLICY.penalty
        _threads.POLICY.penalty = penalty
        try:
            km = fastkm.KMeans(16, random_state=0, n_threads=2).fit(X)
        finally:
            _threads.POLICY.penalty = saved
        outs.append((km.cluster_centers_.tobytes(), km.labels_.tobytes(), km.inertia_))
    assert outs[0] == outs[1]


@pytest.mark.skipif(not OPENMP_ENABLED, reason="built without OpenMP")
def test_release_threads_lets_the_workers_go():
    from fastkm._kernels import runtime, stats

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc/self/task to count threads")
    stats.all_finite(np.ones((100000, 4)), 2)
    before = len(os.listdir("/proc/self/task"))
    if not runtime.release_threads():
        pytest.skip("this OpenMP runtime has no omp_pause_resource_all")
    assert len(os.listdir("/proc/self/task")) < before  # the idle workers are gone
    # regions still work afterwards
    assert stats.all_finite(np.ones((100000, 4)), 2)
