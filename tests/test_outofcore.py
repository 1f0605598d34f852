"""Out-of-core fits (fastkm.kmeans._outofcore): memory-mapped X is fitted,
predicted, transformed and scored window by window, with the labels of the
in-memory fit of the same rows, the same bits for any thread count and window
size, other on-disk dtypes converted per window, and no copy of X (the peak
anonymous memory of a 1 GB fit, measured in a subprocess)."""
import mmap
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastkm import KMeans
from fastkm.kmeans import _outofcore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blobs(n, d, k, std, seed=0, dtype=np.float32):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-10, 10, size=(k, d))
    return (C[rng.randint(k, size=n)] + rng.normal(scale=std, size=(n, d))).astype(dtype)


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """(in-memory X, the same rows memory-mapped from an .npy file): 140k x 12
    and 140k x 5 (three canonical blocks)."""
    out = {}
    for d in (5, 12):
        X = blobs(140_000, d, 25, 2.5, seed=d)
        path = tmp_path_factory.mktemp("mm") / f"x{d}.npy"
        np.save(path, X)
        out[d] = (X, np.load(path, mmap_mode="r"))
    return out


def same_fit(a, b, rtol=1e-9):
    assert np.array_equal(a.labels_, b.labels_)
    assert abs(a.inertia_ - b.inertia_) <= rtol * a.inertia_
    assert np.allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-6, atol=1e-6)


def test_is_memmap(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    path = tmp_path / "a.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    raw = np.memmap(tmp_path / "b.bin", dtype=np.float32, mode="w+", shape=(4, 3))
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = np.frombuffer(buf, dtype=np.uint8)
        assert _outofcore.is_memmap(view)
        del view
        buf.close()
    assert _outofcore.is_memmap(mm) and _outofcore.is_memmap(raw)
    assert _outofcore.is_memmap(mm[1:]) and _outofcore.is_memmap(np.asarray(mm))
    assert _outofcore.is_memmap(mm.T)
    assert not _outofcore.is_memmap(X) and not _outofcore.is_memmap(np.array(mm))
    assert not _outofcore.is_memmap(mm + 1)
    assert not _outofcore.is_memmap([[1.0, 2.0]])


@pytest.mark.parametrize("d, init, algorithm", [
    (12, "k-means||", "lloyd"), (12, "k-means++", "hamerly"), (12, "random", "exponion"),
    (12, "array", "elkan"), (12, "k-means++", "exponion"),
    (5, "k-means||", "exponion"), (5, "k-means++", "lloyd"), (5, "random", "hamerly"),
    (5, "array", "elkan"),
])
def test_same_as_in_memory(mapped, d, init, algorithm):
    X, mm = mapped[d]
    if init == "array":
        init = X[:25].copy()
    n_init = 2 if isinstance(init, str) and init == "random" else 1
    kw = dict(n_clusters=25, init=init, n_init=n_init, random_state=1, algorithm=algorithm,
              max_iter=15, copy_x=False)
    same_fit(KMeans(**kw).fit(X), KMeans(**kw).fit(mm))


def test_default_fit_matches_in_memory_labels(mapped):
    # with few features the in-memory default reorders the rows (spatial order),
    # which changes no label: the same labels from the same init. (With more than
    # 8 features it also centres them, which changes the rounding: compare with
    # copy_x=False there, as test_same_as_in_memory does.)
    X, mm = mapped[5]
    C = X[:25].copy()
    a, b = KMeans(25, init=C).fit(X), KMeans(25, init=C).fit(mm)
    assert np.array_equal(a.labels_, b.labels_) and a.n_iter_ == b.n_iter_
    assert abs(a.inertia_ - b.inertia_) <= 1e-9 * a.inertia_


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion"])
def test_same_bits_for_any_threads_and_window(mapped, tmp_path, monkeypatch, algorithm):
    X, mm = mapped[12]          # three canonical blocks
    kw = dict(n_clusters=25, init="k-means||", random_state=3, algorithm=algorithm)
    ref = KMeans(n_threads=2, **kw).fit(mm)               # one window of three blocks
    np.save(tmp_path / "big_endian.npy", X.astype(">f4"))
    swapped = np.load(tmp_path / "big_endian.npy", mmap_mode="r")
    monkeypatch.setattr(_outofcore, "WINDOW_BYTES", 1)    # windows of n_threads blocks
    fits = [KMeans(n_threads=1, **kw).fit(mm), KMeans(n_threads=2, **kw).fit(mm),
            KMeans(n_threads=2, **kw).fit(swapped)]       # converted, window by window
    for km in fits:
        assert np.array_equal(km.cluster_centers_, ref.cluster_centers_)
        assert km.inertia_ == ref.inertia_ and np.array_equal(km.labels_, ref.labels_)
        assert km.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("kind", ["uint8", "int16", "float16", ">f4", "fortran", "columns"])
def test_converted_per_window(tmp_path, kind):
    rng = np.random.RandomState(0)
    base = rng.randint(0, 200, size=(40_000, 6))
    if kind == "fortran":
        data = np.asfortranarray(base.astype(np.float32))
    elif kind == "columns":
        data = base.astype(np.float64)
    else:
        data = base.astype(kind)
    path = tmp_path / "x.npy"
    np.save(path, data)
    mm = np.load(path, mmap_mode="r")
    if kind == "columns":
        mm = mm[:, 1:5]
    ref = np.array(mm, dtype=np.float32 if kind in ("fortran", ">f4") else np.float64)
    kw = dict(n_clusters=7, init="k-means||", random_state=0, copy_x=False, algorithm="lloyd")
    a, b = KMeans(**kw).fit(ref), KMeans(**kw).fit(mm)
    same_fit(a, b)
    assert b.cluster_centers_.dtype == ref.dtype
    assert np.array_equal(b.predict(mm), a.predict(ref))
    assert np.array_equal(b.transform(mm), a.transform(ref))
    assert np.isclose(b.score(mm), a.score(ref), rtol=1e-12)


def test_predict_transform_score_stream(mapped):
    X, mm = mapped[12]
    km = KMeans(25, init="k-means||", random_state=0).fit(X)
    assert np.array_equal(km.predict(mm), km.predict(X))
    assert np.array_equal(km.transform(mm), km.transform(X))
    w = np.random.RandomState(0).uniform(0, 2, len(X))
    assert np.isclose(km.score(mm, sample_weight=w), km.score(X, sample_weight=w), rtol=1e-12)
    assert np.array_equal(km.fit_predict(mm), KMeans(**km.get_params()).fit(mm).labels_)
    with pytest.raises(ValueError, match="features"):
        km.predict(np.load(mapped[5][1].filename, mmap_mode="r"))


def test_sample_weight_and_checks(tmp_path, mapped):
    X, mm = mapped[5]
    w = np.random.RandomState(0).randint(0, 3, len(X)).astype(np.float64)
    kw = dict(n_clusters=25, init="k-means||", random_state=0, copy_x=False)
    same_fit(KMeans(**kw).fit(X, sample_weight=w), KMeans(**kw).fit(mm, sample_weight=w))
    bad = X.copy()
    bad[123, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN"):
        KMeans(3).fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))
    np.save(tmp_path / "one.npy", X[:, 0])
    with pytest.raises(ValueError, match="2D"):
        KMeans(3).fit(np.load(tmp_path / "one.npy", mmap_mode="r"))
    with pytest.raises(ValueError, match="n_samples"):
        KMeans(10).fit(np.load(mapped[5][1].filename, mmap_mode="r")[:5])


# ------------------------------------------------------------------ memory

MEMORY_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import numpy as np

    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        raise SystemExit("no RssAnon")

    from fastkm import KMeans
    X = np.load(sys.argv[1], mmap_mode="r")
    KMeans(8, init="k-means||", max_iter=1, random_state=0).fit(X[:5000])  # warm up imports
    base = rss_anon()
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    km = KMeans(64, init="k-means||", max_iter=5, tol=0, algorithm="lloyd",
                random_state=0).fit(X)
    done.set()
    t.join()
    peak[0] = max(peak[0], rss_anon())
    print(base, peak[0], km.n_iter_, km.inertia_)
""")


def _has_rss_anon():
    try:
        with open("/proc/self/status") as f:
            return "RssAnon:" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_rss_anon(), reason="needs /proc/self/status with RssAnon (Linux)")
def test_one_gigabyte_fit_makes_no_copy(tmp_path):
    """8M x 32 float32 (1 GiB) on disk, 5 Lloyd iterations with k=64 from
    k-means||: the peak anonymous memory (the process's own, not the file's
    pages in the page cache) grows by at most 25% of the data size."""
    n, d = 8_000_000, 32
    size = n * d * 4
    if shutil.disk_usage(tmp_path).free < 2 * size:
        pytest.skip("needs 2 GiB of free disk space")
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    step = 1 << 19
    for s in range(0, n, step):    # uniform rows: no quick convergence
        out[s:s + step] = rng.random((min(step, n - s), d), dtype=np.float32)
    out.flush()
    del out
    try:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path)], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
        base, peak, n_iter, inertia = proc.stdout.split()
        growth = int(peak) - int(base)
        assert int(n_iter) == 5 and float(inertia) > 0
        assert growth <= 0.25 * size, f"anonymous memory grew by {growth / 2**20:.0f} MiB"
    finally:
        path.unlink()
