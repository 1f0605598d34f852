"""fastkm.dask.KMeans on a real dask.distributed LocalCluster (2 worker
processes, 1 thread each) started here: the same bits on 1 and 2 workers and
across chunkings, the labels of single-machine fastkm, a worker killed in the
middle of a fit, lazy labels/predict/transform, DataFrames, and dask's local
scheduler when there is no Client."""
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastkm  # noqa: E402
import fastkm.dask  # noqa: E402
from fastkm.dask._backend import Backend, aligned_chunks  # noqa: E402

B = fastkm.dask.block_rows(10, 6)     # canonical block of these tests' fits (65,536 rows)
N = 3 * B + 5000


def blobs(n, d, k, std, seed=0, dtype=np.float32):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-10, 10, size=(k, d))
    return (C[rng.randint(k, size=n)] + rng.normal(scale=std, size=(n, d))).astype(dtype)


@pytest.fixture(scope="module")
def data():
    return blobs(N, 6, 10, 3.0)


@pytest.fixture(scope="module")
def client():
    # distributed's nanny sets OMP_NUM_THREADS=1 (and more) in this process's
    # environment to pass it to the workers it spawns; the later tests must
    # not see it
    saved = dict(os.environ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, death_timeout=60)
    c = distributed.Client(cluster, set_as_default=False, timeout=60)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close(timeout=30)
        cluster.close(timeout=30)
        os.environ.clear()
        os.environ.update(saved)


def fit(client, X, **kw):
    with client.as_current():
        return fastkm.dask.KMeans(**kw).fit(X)


def test_aligned_chunks():
    assert aligned_chunks((B, B, 10), B) == (B, B, 10)
    assert aligned_chunks((B - 3, B + 3, 100), B) == (B, B, 100)
    assert aligned_chunks((100, 100, 100), B) == (300,)
    assert sum(aligned_chunks((70_000,) * 5, B)) == 350_000


def test_same_centers_on_one_and_two_workers(client, data):
    X = da.from_array(data, chunks=(B, -1))
    kw = dict(n_clusters=10, random_state=0, max_iter=6)       # k-means|| seeds, then Exponion
    two = fit(client, X, **kw)
    client.cluster.scale(1)
    try:
        deadline = time.time() + 60
        while len(client.scheduler_info()["workers"]) != 1 and time.time() < deadline:
            time.sleep(0.1)
        assert len(client.scheduler_info()["workers"]) == 1
        one = fit(client, X, **kw)
    finally:
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
    assert np.array_equal(one.cluster_centers_, two.cluster_centers_)
    assert one.inertia_ == two.inertia_ and one.n_iter_ == two.n_iter_


def test_same_centers_across_chunkings(client, data):
    kw = dict(n_clusters=10, init=data[:10].copy(), algorithm="lloyd", max_iter=10)
    ref = fit(client, da.from_array(data, chunks=(B, -1)), **kw)
    for chunks in [(2 * B, -1), ((B, 2 * B, N - 3 * B), -1),
                   ((40_000, 100_000, N - 140_000), -1)]:   # the last one is realigned
        km = fit(client, da.from_array(data, chunks=chunks), **kw)
        assert np.array_equal(km.cluster_centers_, ref.cluster_centers_)
        assert km.inertia_ == ref.inertia_


@pytest.mark.parametrize("algorithm", ["lloyd", "auto"])
def test_same_labels_as_single_machine(client, data, algorithm):
    C0 = data[np.random.RandomState(0).permutation(N)[:10]].copy()
    kw = dict(n_clusters=10, init=C0, max_iter=30, algorithm=algorithm)
    km = fit(client, da.from_array(data, chunks=(B, -1)), **kw)
    single = fastkm.KMeans(copy_x=False, **kw).fit(data)
    assert np.array_equal(km.labels_.compute(), single.labels_)
    assert abs(km.inertia_ - single.inertia_) <= 1e-9 * single.inertia_
    assert km.n_iter_ == single.n_iter_ and km.algorithm_ == single.algorithm_


def test_kmeans_parallel_seeds_match_single_machine(client, data):
    km = fit(client, da.from_array(data, chunks=(2 * B, -1)), n_clusters=10, random_state=7,
             max_iter=1, tol=0)
    single = fastkm.KMeans(10, init="k-means||", random_state=7, copy_x=False, max_iter=1,
                           tol=0).fit(data)
    assert np.array_equal(km.cluster_centers_, single.cluster_centers_)


def test_worker_killed_mid_fit(client, data, monkeypatch):
    X = da.from_array(data, chunks=(B, -1))
    kw = dict(n_clusters=10, init=data[-10:].copy(), algorithm="hamerly", max_iter=10, tol=0)
    ref = fit(client, X, **kw)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    state = {"killed": False}

    def kill_after_third_iteration(name):
        if name == "iter3" and not state["killed"]:
            state["killed"] = True
            os.kill(victim, signal.SIGKILL)

    monkeypatch.setattr(Backend, "after_wave", staticmethod(kill_after_third_iteration))
    km = fit(client, X, **kw)
    assert state["killed"]
    # dask recomputed the lost chunks and reran their tasks: the same result
    assert np.array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == ref.inertia_ and km.n_iter_ == ref.n_iter_
    client.wait_for_workers(2, timeout=60)


def test_lazy_results_and_dataframe(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X = da.from_array(data, chunks=(B, -1))
    km = fit(client, X, n_clusters=10, init=data[:10].copy(), max_iter=10)
    assert isinstance(km.labels_, da.Array) and km.labels_.dtype == np.int32
    with client.as_current():
        pred = km.predict(X)
        dist = km.transform(X)
        assert isinstance(pred, da.Array) and isinstance(dist, da.Array)
        assert np.array_equal(pred.compute(), km.labels_.compute())
        single = fastkm.KMeans(10, init=km.cluster_centers_).fit(data[:10])
        single.cluster_centers_ = km.cluster_centers_
        assert np.array_equal(dist.compute(), single.transform(data))
        assert np.array_equal(km.predict(data[:100]), single.predict(data[:100]))
        assert km.score(X) == -km.inertia_
        frame = dd.from_pandas(pd.DataFrame(data, columns=[f"f{i}" for i in range(6)]),
                               npartitions=3)
        kw = dict(n_clusters=10, init=data[:10].copy(), max_iter=5)
        kf = fastkm.dask.KMeans(**kw).fit(frame)
        assert list(kf.feature_names_in_) == [f"f{i}" for i in range(6)]
        same = fastkm.dask.KMeans(**kw).fit(da.from_array(data, chunks=(B, -1)))
    assert np.array_equal(kf.cluster_centers_, same.cluster_centers_)


def test_local_scheduler_gives_the_same_bits(client, data):
    X = da.from_array(data, chunks=(B, -1))
    kw = dict(n_clusters=10, random_state=3, max_iter=4)
    assert Backend().client is None              # no Client in this context
    local = fastkm.dask.KMeans(**kw).fit(X)
    assert np.array_equal(local.cluster_centers_, fit(client, X, **kw).cluster_centers_)


def test_weights_tol_and_checks(data):
    X = da.from_array(data[:20_000], chunks=(10_000, -1))
    w = np.random.RandomState(0).randint(0, 3, 20_000).astype(np.float64)
    km = fastkm.dask.KMeans(5, init=data[:5].copy(), tol=1e-3).fit(X, sample_weight=w)
    single = fastkm.KMeans(5, init=data[:5].copy(), tol=1e-3, copy_x=False).fit(
        data[:20_000], sample_weight=w)
    assert np.array_equal(km.labels_.compute(), single.labels_)
    assert abs(km.inertia_ - single.inertia_) <= 1e-9 * single.inertia_
    pp = fastkm.dask.KMeans(5, init="k-means++", random_state=0, max_iter=1, tol=0).fit(X)
    ref = fastkm.KMeans(5, random_state=0, max_iter=1, tol=0, copy_x=False).fit(data[:20_000])
    assert np.array_equal(pp.cluster_centers_, ref.cluster_centers_)
    bad = data[:20_000].copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fastkm.dask.KMeans(3).fit(da.from_array(bad, chunks=(5000, -1)))
    with pytest.raises(ValueError, match="init"):
        fastkm.dask.KMeans(3, init="random").fit(X)
    with pytest.raises(ValueError, match="oversampling_factor"):
        fastkm.dask.KMeans(3, oversampling_factor=0).fit(X)
    with pytest.raises(ValueError, match="n_samples"):
        fastkm.dask.KMeans(30).fit(X[:10])


@pytest.mark.parametrize("code, absent", [
    ("import fastkm", ("dask", "distributed", "sklearn")),
    ("import fastkm.kmeans._outofcore, fastkm.kmeans._scalable", ("dask", "distributed")),
])
def test_fastkm_does_not_import_dask(code, absent):
    check = (f"import sys; {code}; bad = [m for m in {absent!r} if m in sys.modules]; "
             "print(bad); sys.exit(bool(bad))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_in_memory_estimators_refuse_dask_collections():
    # np.asarray would silently compute the whole collection into memory
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    X = da.ones((100, 3), chunks=50)
    with pytest.raises(TypeError, match=r"dask Array as X: fit it with fastkm\.dask\.KMeans"):
        fastkm.KMeans(2).fit(X)
    with pytest.raises(TypeError, match="dask DataFrame"):
        fastkm.KMeans(2).fit(dd.from_pandas(pd.DataFrame(np.ones((10, 2))), npartitions=2))
    with pytest.raises(TypeError, match="MiniBatchKMeans got a dask Array"):
        fastkm.MiniBatchKMeans(2).fit(X)
    km = fastkm.KMeans(2, random_state=0, n_init=1).fit(np.random.RandomState(0).rand(50, 3))
    with pytest.raises(TypeError, match=r"X\.compute\(\)"):
        km.predict(X)
