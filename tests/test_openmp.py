"""OpenMP is compiled in and used; kernels release the GIL; thread limits are honoured."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastkm
from fastkm import KMeans
from fastkm._dispatch import lloyd
from fastkm._kernels.reduce import BlockSums
from fastkm._kernels.runtime import OPENMP_ENABLED, Region, openmp_max_threads
from fastkm._validation import effective_n_threads

REQUIRE_OPENMP = os.environ.get("FASTKM_REQUIRE_OPENMP", "") == "1"


def test_openmp_compiled_in():
    if REQUIRE_OPENMP:
        assert OPENMP_ENABLED
    if not OPENMP_ENABLED:
        pytest.skip("built without OpenMP")
    assert openmp_max_threads() >= 1


def test_threadpoolctl_sees_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not OPENMP_ENABLED:
        pytest.skip("built without OpenMP")
    info = threadpoolctl.threadpool_info()
    assert any(m["user_api"] == "openmp" for m in info), info
    out = subprocess.run([sys.executable, "-m", "threadpoolctl", "-i", "fastkm"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and '"openmp"' in out.stdout


def test_threadpoolctl_limit_is_honoured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not OPENMP_ENABLED:
        pytest.skip("built without OpenMP")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert effective_n_threads(None) == 1
    assert effective_n_threads(3) == 3
    assert effective_n_threads(-1) >= 1


def test_omp_num_threads_is_honoured():
    code = "from fastkm._validation import effective_n_threads as e; print(e(None))"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastkm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("3" if OPENMP_ENABLED else "1")


def test_show_config(capsys):
    fastkm.show_config()
    out = capsys.readouterr().out
    assert "openmp" in out and fastkm.__version__ in out and "kernels" in out


def test_kernels_release_the_gil():
    """Python code in another thread runs while a kernel is executing.

    A helper thread increments a counter, yielding the GIL after every step. If
    the kernel held the GIL, the counter could move at most once or twice during
    the call; with the GIL released it moves thousands of times.
    """
    rng = np.random.RandomState(0)
    n, d, k = 400_000, 3, 64
    X = rng.uniform(size=(n, d))
    C = X[:k].copy()
    labels = np.full(n, -1, dtype=np.int32)
    sw = np.ones(n)
    sums = BlockSums(n, k, d)
    counter = [0]
    stop = threading.Event()
    started = threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    try:
        c0 = counter[0]
        for _ in range(3):
            lloyd.lloyd_iter(X, sw, C, labels, sums, Region(1))
        c1 = counter[0]
    finally:
        stop.set()
        t.join()
    assert c1 - c0 > 100, (c0, c1)


def test_fits_in_python_threads_agree_with_serial():
    X = np.random.RandomState(1).normal(size=(20_000, 3))
    ref = KMeans(8, random_state=0, n_threads=1).fit(X)
    results = [None] * 4

    def fit(i):
        results[i] = KMeans(8, random_state=0, n_threads=1).fit(X)

    ths = [threading.Thread(target=fit, args=(i,)) for i in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    for r in results:
        assert r.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes()


def test_bad_fastkm_isa_value_is_a_clear_import_error():
    env = dict(os.environ, FASTKM_ISA="avx9000")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastkm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", "import fastkm"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode != 0
    assert "FASTKM_ISA must be 'auto', 'baseline', 'v3' or 'v4'" in out.stderr
