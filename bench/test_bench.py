"""fastkm vs. peer K-Means implementations, one pytest-benchmark group per workload.

    PYTHONPATH=. python -m pytest bench --benchmark-only \
        --benchmark-json=bench/results/latest.json
    python bench/report.py bench/results/latest.json

Each fit round builds a fresh estimator in ``setup`` (untimed) and times one
``fit``; the fitted inertia and n_iter are read afterwards (untimed).
"""
import math

import numpy as np
import pytest
from conftest import _numpy_blobs

CHINA_SEEDS = (0, 1, 2)


def base_info(impl, X, n_clusters, threads, workload):
    return {
        "workload": workload,
        "implementation": impl.name,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_clusters": int(n_clusters),
        "dtype": str(X.dtype),
        "threads": int(threads),
    }


def median_seconds(benchmark):
    """Median time of the rounds just measured, or None with --benchmark-disable."""
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return None
    return float(stats.stats.median)


def _record_fit(benchmark, results):
    """inertia/n_iter of the measured fits -> extra_info (mean over the fits)."""
    inertias = [r[0] for r in results]
    n_iters = [r[1] for r in results]
    benchmark.extra_info["inertia"] = float(np.mean(inertias))
    benchmark.extra_info["n_iter"] = float(np.mean(n_iters))
    for inertia in inertias:
        assert math.isfinite(inertia) and inertia >= 0.0
    assert min(n_iters) >= 1


# --------------------------------------------------------------------------- china-k64-fit

@pytest.mark.benchmark(group="china-k64-fit")
def test_china_k64_fit(benchmark, impl, china, threads, rounds_for):
    """Default fit (k-means++, n_init='auto', max_iter=300, tol=1e-4) of the
    china.jpg pixels, k=64; rounds cycle through seeds 0, 1, 2."""
    k = 64
    impl.kmeans(k, threads, random_state=0)  # skips early if the peer can't do this workload
    rounds = rounds_for(2 * len(CHINA_SEEDS))
    warmup_rounds = 1
    seeds = iter([CHINA_SEEDS[0]] * warmup_rounds
                 + [CHINA_SEEDS[i % len(CHINA_SEEDS)] for i in range(rounds)])
    fitted = []  # (collected from setup: pytest-benchmark skips teardown when disabled)

    def setup():
        est = impl.kmeans(k, threads, random_state=next(seeds))
        fitted.append(est)
        return (est, china), {}

    def fit(est, X):
        est.fit(X)

    benchmark.extra_info.update(base_info(impl, china, k, threads, "china-k64-fit"))
    with impl.limits(threads):
        benchmark.pedantic(fit, setup=setup, rounds=rounds,
                           warmup_rounds=warmup_rounds, iterations=1)

    per_seed = {}
    for est in fitted:
        per_seed.setdefault(est.random_state, []).append((float(est.inertia_), int(est.n_iter_)))
    del fitted[:]
    seeds_seen = sorted(per_seed)
    first = [per_seed[s][0] for s in seeds_seen]  # one result per seed: means are per seed
    _record_fit(benchmark, first)
    benchmark.extra_info["repeatable"] = all(len(set(v)) == 1 for v in per_seed.values())
    benchmark.extra_info["seeds"] = seeds_seen
    benchmark.extra_info["inertia_per_seed"] = [r[0] for r in first]
    benchmark.extra_info["n_iter_per_seed"] = [r[1] for r in first]


_FASTKM_LABELS = {}  # workload -> fastkm's labels, for the peers' agreement figure


def _fit_once(benchmark, impl, X, k, threads, workload, params, rounds):
    """Time ``rounds`` fits of a fresh estimator; record inertia, n_iter and the
    peers' label agreement with fastkm. Returns the last fit's n_iter."""
    impl.kmeans(k, threads, **params)  # skips early if the peer can't do this workload
    fitted = []

    def setup():
        est = impl.kmeans(k, threads, **params)
        fitted.append(est)
        return (est, X), {}

    def fit(est, X):
        est.fit(X)

    benchmark.extra_info.update(base_info(impl, X, k, threads, workload))
    with impl.limits(threads):
        benchmark.pedantic(fit, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    results = [(float(est.inertia_), int(est.n_iter_)) for est in fitted]
    _record_fit(benchmark, results)
    benchmark.extra_info["repeatable"] = len(set(results)) == 1
    labels = getattr(fitted[-1], "labels_", None)  # the faiss adapter keeps none
    if impl.name == "fastkm":
        _FASTKM_LABELS[workload] = np.asarray(labels)
    elif labels is not None and workload in _FASTKM_LABELS:
        benchmark.extra_info["label_agreement_vs_fastkm"] = float(
            np.mean(np.asarray(labels) == _FASTKM_LABELS[workload]))
    del fitted[:]
    return results[-1][1]


# --------------------------------------------------------------------------- lloyd-500k-iter

@pytest.mark.benchmark(group="lloyd-500k-iter")
def test_lloyd_500k_iter(benchmark, impl, blobs_500k, threads, rounds_for):
    """20 Lloyd iterations (tol=0) on 500k x 32 float32 blobs, k=256, from the
    same initial centers for every implementation."""
    X, C0, source = blobs_500k
    params = dict(init=C0, n_init=1, max_iter=20, tol=0.0, algorithm="lloyd")
    n_iter = _fit_once(benchmark, impl, X, C0.shape[0], threads, "lloyd-500k-iter", params,
                       rounds_for(3))
    benchmark.extra_info["data"] = source
    benchmark.extra_info["max_iter"] = 20
    median = median_seconds(benchmark)
    if median is not None:
        benchmark.extra_info["ms_per_iteration"] = 1000.0 * median / n_iter


# --------------------------------------------------------------------------- converge-500k

@pytest.mark.benchmark(group="converge-500k")
def test_converge_500k(benchmark, impl, blobs_500k, threads, rounds_for):
    """Fit to convergence (tol=1e-4, max_iter=300) on 500k x 32 float32 blobs,
    k=256, from the same initial centers; each implementation's default
    algorithm (fastkm: 'auto', scikit-learn: 'lloyd')."""
    X, C0, source = blobs_500k
    if impl.name == "faiss":
        pytest.skip("faiss has no tolerance-based convergence")
    _fit_once(benchmark, impl, X, C0.shape[0], threads, "converge-500k",
              dict(init=C0, n_init=1), rounds_for(1))
    benchmark.extra_info["data"] = source


# --------------------------------------------------------------------------- kmeans256-200k

@pytest.fixture(scope="session")
def blobs_200k():
    """200,000 x 32 float32 blobs with 256 centers."""
    try:
        from sklearn.datasets import make_blobs

        X, _ = make_blobs(200_000, 32, centers=256, random_state=0)
    except ImportError:
        X = _numpy_blobs(200_000, 32, 256, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32)


@pytest.mark.benchmark(group="kmeans256-200k")
def test_kmeans256_200k(benchmark, impl, blobs_200k, threads, rounds_for):
    """``KMeans(256)`` with default parameters (k-means++, n_init='auto', tol=1e-4)
    on 200k x 32 float32 blobs, random_state=0."""
    _fit_once(benchmark, impl, blobs_200k, 256, threads, "kmeans256-200k",
              dict(random_state=0), rounds_for(1))


# --------------------------------------------------------------------------- predict-1M-k64

@pytest.mark.benchmark(group="predict-1M-k64")
def test_predict_1m_k64(benchmark, impl, uniform_1m, uniform_1m_reference_labels, threads,
                        rounds_for):
    """predict() of 1M x 3 float32 uniform points with identical k=64 centers."""
    X, sub, centers = uniform_1m
    k = centers.shape[0]
    with impl.limits(threads):
        # A real fit (so the estimator is in its normal fitted state, and sklearn
        # records its thread count under the limit), then the shared centers are
        # installed so every implementation predicts with bitwise identical centers.
        est = impl.kmeans(k, threads, init=centers, n_init=1, max_iter=1).fit(sub)
        est.cluster_centers_ = centers.copy()
        benchmark.extra_info.update(base_info(impl, X, k, threads, "predict-1M-k64"))
        labels = benchmark.pedantic(est.predict, args=(X,), rounds=rounds_for(15),
                                    warmup_rounds=1, iterations=1)

    labels = np.asarray(labels)
    assert labels.shape == (X.shape[0],)
    agreement = float(np.mean(labels == uniform_1m_reference_labels))
    benchmark.extra_info["label_agreement_vs_numpy"] = agreement
    assert agreement > 0.999
