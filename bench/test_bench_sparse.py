"""fastkm vs scikit-learn on sparse TF-IDF input, one pytest-benchmark group per
workload (see bench/README.md, "Sparse input").

    PYTHONPATH=. python -m pytest bench/test_bench_sparse.py --benchmark-only \
        --benchmark-json=bench/results/sparse.json
    python bench/report.py bench/results/sparse.json

Data: ``tfidf.tfidf_matrix()``, 20,000 generated documents of 50-500 tokens
from 20 topics over a Zipf vocabulary of 100,000 terms, TF-IDF weighted by
scikit-learn's TfidfTransformer (CSR float64). Both implementations run with
the same thread count ``T`` (``FASTKM_BENCH_THREADS``).
"""
import math

import numpy as np
import pytest
from conftest import _IMPLS
from tfidf import tfidf_matrix

SPARSE_IMPLEMENTATIONS = ["fastkm", "sklearn"]
KS = (20, 100)


@pytest.fixture(params=SPARSE_IMPLEMENTATIONS)
def sparse_impl(request):
    return _IMPLS[request.param]()


@pytest.fixture(scope="session")
def tfidf():
    """The 20,000 x 100,000 TF-IDF matrix (CSR float64)."""
    pytest.importorskip("scipy.sparse")
    pytest.importorskip("sklearn")
    return tfidf_matrix()


@pytest.fixture(scope="session")
def tfidf_inits(tfidf):
    """k -> initial centers shared by every implementation: greedy k-means++
    with seed 0 (fastkm's; scikit-learn's draws the same rows)."""
    import fastkm

    return {k: fastkm.kmeans_plusplus(tfidf, k, random_state=0)[0] for k in KS}


def _info(impl, X, k, threads, workload):
    return {
        "workload": workload,
        "implementation": impl.name,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_clusters": int(k),
        "nnz": int(X.nnz),
        "dtype": f"{X.dtype} CSR",
        "threads": int(threads),
    }


def _timed_fits(benchmark, impl, X, k, threads, workload, params, rounds):
    """Time ``rounds`` fits of a fresh estimator; record inertia and n_iter."""
    fitted = []

    def setup():
        est = impl.kmeans(k, threads, **params)
        fitted.append(est)
        return (est, X), {}

    def fit(est, X):
        est.fit(X)

    benchmark.extra_info.update(_info(impl, X, k, threads, workload))
    with impl.limits(threads):
        benchmark.pedantic(fit, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    inertias = [float(est.inertia_) for est in fitted]
    n_iters = [int(est.n_iter_) for est in fitted]
    assert all(math.isfinite(v) and v >= 0 for v in inertias)
    benchmark.extra_info["inertia"] = float(np.mean(inertias))
    benchmark.extra_info["n_iter"] = float(np.mean(n_iters))
    benchmark.extra_info["repeatable"] = len(set(zip(inertias, n_iters))) == 1
    algorithm = getattr(fitted[-1], "algorithm_", None)
    if algorithm is not None:
        benchmark.extra_info["algorithm"] = algorithm
    stats = getattr(benchmark, "stats", None)
    if stats:
        benchmark.extra_info["ms_per_iteration"] = 1000.0 * stats.stats.median / n_iters[-1]
    del fitted[:]


@pytest.mark.parametrize("k", KS)
def test_tfidf_default_fit(benchmark, sparse_impl, tfidf, threads, rounds_for, k):
    """``KMeans(k, n_init=1, random_state=0).fit(X)``: every other parameter at
    its default (k-means++, tol=1e-4, max_iter=300; fastkm's algorithm 'auto',
    scikit-learn's 'lloyd')."""
    benchmark.group = f"tfidf-k{k}-fit"
    _timed_fits(benchmark, sparse_impl, tfidf, k, threads, f"tfidf-k{k}-fit",
                dict(n_init=1, random_state=0), rounds_for(1))


@pytest.mark.parametrize("k", KS)
def test_tfidf_lloyd_10(benchmark, sparse_impl, tfidf, tfidf_inits, threads, rounds_for, k):
    """10 Lloyd iterations (tol=0) from the same initial centers; both stop
    early, at the same iteration, if the labels stop changing."""
    benchmark.group = f"tfidf-k{k}-lloyd10"
    params = dict(init=tfidf_inits[k], n_init=1, max_iter=10, tol=0.0, algorithm="lloyd")
    _timed_fits(benchmark, sparse_impl, tfidf, k, threads, f"tfidf-k{k}-lloyd10", params,
                rounds_for(1 if sparse_impl.name == "sklearn" else 3))
