"""Shared fixtures for the fastkm benchmark suite (pytest-benchmark).

Run with ``pytest bench --benchmark-only`` (see bench/README.md). Every peer
implementation runs with the same thread count ``T`` as fastkm:

* fastkm:          ``KMeans(..., n_threads=T)`` inside ``threadpool_limits(T)``
* sklearn:         ``threadpool_limits(T)`` around construction, fit and predict
                   (sklearn reads its OpenMP thread count at fit time)
* sklearn-intelex: as sklearn, plus ``daal4py.daalinit(T)`` when available
* faiss:           ``faiss.omp_set_num_threads(T)``

``T`` comes from ``FASTKM_BENCH_THREADS`` (default: ``os.cpu_count()``).
"""
import contextlib
import io
import os
import platform

import numpy as np
import pytest

IMPLEMENTATIONS = ["fastkm", "sklearn", "sklearn-intelex", "faiss"]


# --------------------------------------------------------------------------- settings

def bench_threads():
    value = os.environ.get("FASTKM_BENCH_THREADS", "").strip()
    if not value:
        return os.cpu_count() or 1
    try:
        threads = int(value)
    except ValueError:
        raise pytest.UsageError(
            f"FASTKM_BENCH_THREADS must be a positive int; got {value!r}.") from None
    if threads < 1:
        raise pytest.UsageError(f"FASTKM_BENCH_THREADS must be a positive int; got {value!r}.")
    return threads


def bench_rounds(default):
    """Rounds for a workload; ``FASTKM_BENCH_ROUNDS`` overrides every workload's default."""
    value = os.environ.get("FASTKM_BENCH_ROUNDS", "").strip()
    if not value:
        return default
    try:
        rounds = int(value)
    except ValueError:
        raise pytest.UsageError(
            f"FASTKM_BENCH_ROUNDS must be a positive int; got {value!r}.") from None
    if rounds < 1:
        raise pytest.UsageError(f"FASTKM_BENCH_ROUNDS must be a positive int; got {value!r}.")
    return rounds


@pytest.fixture(scope="session")
def threads():
    """Thread count T used by every implementation."""
    return bench_threads()


@pytest.fixture(scope="session")
def rounds_for():
    """``rounds_for(default)`` -> the number of timed rounds for a workload."""
    return bench_rounds


# --------------------------------------------------------------------------- implementations

class Impl:
    """A K-Means implementation behind the scikit-learn estimator API."""

    name = None

    def limits(self, threads):
        """Context manager that caps every thread pool at ``threads``."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=threads)

    def kmeans(self, n_clusters, threads, **params):
        raise NotImplementedError


class FastkmImpl(Impl):
    name = "fastkm"

    def __init__(self):
        import fastkm

        self.module = fastkm

    def kmeans(self, n_clusters, threads, **params):
        return self.module.KMeans(n_clusters, n_threads=threads, **params)


class SklearnImpl(Impl):
    name = "sklearn"

    def __init__(self):
        self.cls = pytest.importorskip("sklearn.cluster").KMeans

    def kmeans(self, n_clusters, threads, **params):
        return self.cls(n_clusters, **params)


class SklearnIntelexImpl(SklearnImpl):
    name = "sklearn-intelex"

    def __init__(self):
        self.cls = pytest.importorskip("sklearnex.cluster").KMeans

    @contextlib.contextmanager
    def limits(self, threads):
        try:
            import daal4py

            daal4py.daalinit(threads)
        except Exception:  # pragma: no cover - best effort, depends on the install
            pass
        with super().limits(threads):
            yield


class FaissKMeans:
    """Minimal estimator-like wrapper around ``faiss.Kmeans`` (float32 only).

    Supports an explicit ``init`` array only: faiss has no k-means++ seeding, so
    default-init workloads are skipped for faiss.
    """

    def __init__(self, faiss, n_clusters, init, max_iter=300, **_ignored):
        self.faiss = faiss
        self.n_clusters = n_clusters
        self.init = np.ascontiguousarray(init, dtype=np.float32)
        self.max_iter = max_iter

    def fit(self, X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        km = self.faiss.Kmeans(
            X.shape[1], self.n_clusters, niter=self.max_iter, nredo=1, seed=0,
            max_points_per_centroid=X.shape[0], min_points_per_centroid=1,
            verbose=False, spherical=False,
        )
        km.train(X, init_centroids=self.init)
        self.cluster_centers_ = km.centroids.copy()
        stats = getattr(km, "iteration_stats", None)
        self.inertia_ = float(stats[-1]["obj"] if stats else km.obj[-1])
        self.n_iter_ = int(self.max_iter)
        return self

    def predict(self, X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        index = self.faiss.IndexFlatL2(X.shape[1])
        index.add(np.ascontiguousarray(self.cluster_centers_, dtype=np.float32))
        return index.search(X, 1)[1].ravel()


class FaissImpl(Impl):
    name = "faiss"

    def __init__(self):
        self.faiss = pytest.importorskip("faiss")

    @contextlib.contextmanager
    def limits(self, threads):
        self.faiss.omp_set_num_threads(threads)
        yield

    def kmeans(self, n_clusters, threads, init=None, **params):
        if not isinstance(init, np.ndarray):
            pytest.skip("faiss has no k-means++ seeding; workload needs the default init")
        if params.get("n_init", 1) != 1:
            pytest.skip("faiss adapter supports n_init=1 only")
        return FaissKMeans(self.faiss, n_clusters, init, **params)


_IMPLS = {
    "fastkm": FastkmImpl,
    "sklearn": SklearnImpl,
    "sklearn-intelex": SklearnIntelexImpl,
    "faiss": FaissImpl,
}


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    """One implementation; peers that are not installed are skipped cleanly."""
    return _IMPLS[request.param]()


# --------------------------------------------------------------------------- data

@pytest.fixture(scope="session")
def china():
    """The 'china.jpg' sample image as (273280, 3) float64 in [0, 1]."""
    datasets = pytest.importorskip("sklearn.datasets")
    image = datasets.load_sample_image("china.jpg")
    X = np.ascontiguousarray((image / 255.0).reshape(-1, image.shape[-1]), dtype=np.float64)
    assert X.shape == (273280, 3)
    return X


def _numpy_blobs(n_samples, n_features, centers, random_state):
    """Same recipe as sklearn's make_blobs (uniform centers in [-10, 10], std 1)."""
    rng = np.random.RandomState(random_state)
    C = rng.uniform(-10.0, 10.0, size=(centers, n_features))
    counts = np.full(centers, n_samples // centers)
    counts[: n_samples % centers] += 1
    X = np.repeat(C, counts, axis=0) + rng.normal(size=(n_samples, n_features))
    return X[rng.permutation(n_samples)]


@pytest.fixture(scope="session")
def blobs_500k():
    """500,000 x 32 float32 blobs, 256 centers, plus 256 initial centers C0."""
    n_samples, n_features, centers = 500_000, 32, 256
    try:
        from sklearn.datasets import make_blobs

        X, _ = make_blobs(n_samples, n_features, centers=centers, random_state=0)
        source = "sklearn.datasets.make_blobs"
    except ImportError:
        X = _numpy_blobs(n_samples, n_features, centers, random_state=0)
        source = "numpy blobs"
    X = np.ascontiguousarray(X, dtype=np.float32)
    idx = np.random.RandomState(0).permutation(n_samples)[:centers]
    C0 = np.ascontiguousarray(X[idx])
    return X, C0, source


@pytest.fixture(scope="session")
def uniform_1m():
    """1,000,000 x 3 float32 uniform in [0, 1), a 20k subsample and k=64 centers.

    The centers come from one fastkm fit (k-means++, seed 0) on the subsample;
    every implementation then predicts with exactly these centers.
    """
    import fastkm

    rng = np.random.RandomState(0)
    X = rng.random_sample((1_000_000, 3)).astype(np.float32)
    sub = np.ascontiguousarray(X[rng.choice(X.shape[0], 20_000, replace=False)])
    centers = fastkm.KMeans(64, random_state=0, n_threads=bench_threads()).fit(sub).cluster_centers_
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    return X, sub, centers


@pytest.fixture(scope="session")
def uniform_1m_reference_labels(uniform_1m):
    """Nearest-center labels by NumPy in float64, in chunks (a sanity check, not timed)."""
    X, _, centers = uniform_1m
    C = centers.astype(np.float64)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], 100_000):
        chunk = X[start:start + 100_000].astype(np.float64)
        d2 = ((chunk[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
        labels[start:start + chunk.shape[0]] = d2.argmin(axis=1)
    return labels


# --------------------------------------------------------------------------- machine info

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fastkm_config():
    """fastkm.show_config() output as a dict (public API only)."""
    try:
        import fastkm
    except ImportError as exc:  # pragma: no cover
        return {"error": repr(exc)}
    buf = io.StringIO()
    fastkm.show_config(file=buf)
    cfg = {}
    for line in buf.getvalue().splitlines():
        key, sep, value = line.partition(" : ")
        if sep:
            cfg[key.strip()] = value.strip()
    return cfg


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add what the Markdown report needs to the JSON's machine_info."""
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": bench_threads(),
        "numpy": np.__version__,
        "fastkm": _fastkm_config(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        info["sklearn"] = None
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                   "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    machine_info["fastkm_bench"] = info
