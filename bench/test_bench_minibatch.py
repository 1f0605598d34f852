"""MiniBatchKMeans: fastkm vs scikit-learn, side by side in one run, same thread count.

    PYTHONPATH=. python -m pytest bench/test_bench_minibatch.py --benchmark-only \\
        --benchmark-json=bench/results/minibatch.json -q
    python bench/report.py bench/results/minibatch.json

Data: ``make_blobs(1_000_000, 32, centers=256, random_state=0)`` as float32.
Every implementation runs under ``threadpool_limits(T)``; fastkm also gets
``n_threads=T``.

* ``minibatch-1M-fit``: ``MiniBatchKMeans(256, random_state=seed).fit(X)`` with
  the defaults, one round per seed 0, 1, 2 (fastkm: plus one warm-up round);
  the mean full-data inertia (``inertia_``, from the final labels) and the
  steps per seed. Untimed, for fastkm: where the time goes (init + steps
  without the final labels, the final labels pass, ms per step). The
  scikit-learn entry also records fastkm's time as a fraction of its own and
  fastkm's mean inertia over its own (targets: <= 0.1 and <= 1.01).
* ``minibatch-1M-partial-fit``: ``partial_fit`` on consecutive 1024-row slices;
  each round times 100 calls after an untimed first call (the initialisation);
  batches per second (target: fastkm >= 3x scikit-learn's).
* ``minibatch-1M-kmeans``: full ``fastkm.KMeans(256, random_state=seed)`` on the
  same data (seeds 0, 1, 2), for reference: its inertia against fastkm's
  mini-batch inertia, how many Lloyd iterations (and how long a fit) KMeans
  needs to pass the mini-batch inertia, and the mini-batch inertia after 10
  passes without early stopping (it plateaus above KMeans's).
"""
import time

import numpy as np
import pytest
from conftest import _numpy_blobs

SEEDS = (0, 1, 2)
K = 256
BATCH = 1024
CALLS = 100        # partial_fit calls timed per round

_RESULTS = {}      # (workload, implementation) -> {"median": s, "inertia": mean}


@pytest.fixture(scope="session")
def blobs_1m():
    """1,000,000 x 32 float32 blobs with 256 centers."""
    try:
        from sklearn.datasets import make_blobs

        X, _ = make_blobs(1_000_000, 32, centers=K, random_state=0)
        source = "sklearn.datasets.make_blobs"
    except ImportError:
        X = _numpy_blobs(1_000_000, 32, K, random_state=0)
        source = "numpy blobs"
    return np.ascontiguousarray(X, dtype=np.float32), source


def _estimator(name, threads, **params):
    if name == "fastkm":
        import fastkm

        return fastkm.MiniBatchKMeans(K, n_threads=threads, **params)
    cls = pytest.importorskip("sklearn.cluster").MiniBatchKMeans
    return cls(K, **params)


def _limits(threads):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def _info(name, X, threads, workload):
    return {"workload": workload, "implementation": name, "n_samples": int(X.shape[0]),
            "n_features": int(X.shape[1]), "n_clusters": K, "dtype": str(X.dtype),
            "threads": int(threads), "batch_size": BATCH}


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats else None


def _time_split(X, threads, seed):
    """fastkm, untimed by pytest-benchmark: init + steps, the final labels, ms per step."""
    import fastkm

    with _limits(threads):
        est = fastkm.MiniBatchKMeans(K, random_state=seed, n_threads=threads,
                                     compute_labels=False)
        t0 = time.perf_counter()
        est.fit(X)
        t_steps = time.perf_counter() - t0
        t0 = time.perf_counter()
        est.predict(X)
        t_labels = time.perf_counter() - t0
    return {"seconds_init_and_steps": t_steps, "seconds_final_labels": t_labels,
            "ms_per_step": 1e3 * t_steps / est.n_steps_}


@pytest.mark.benchmark(group="minibatch-1M-fit")
@pytest.mark.parametrize("impl", ["fastkm", "sklearn"])
def test_minibatch_fit(benchmark, impl, blobs_1m, threads, rounds_for):
    X, source = blobs_1m
    _estimator(impl, threads)  # skips early if scikit-learn is missing
    rounds = rounds_for(len(SEEDS))
    warmup = 1 if impl == "fastkm" else 0   # a scikit-learn fit takes ~20 s
    seeds = iter([SEEDS[0]] * warmup + [SEEDS[i % len(SEEDS)] for i in range(rounds)])
    fitted = []

    def setup():
        est = _estimator(impl, threads, random_state=next(seeds))
        fitted.append(est)
        return (est, X), {}

    benchmark.extra_info.update(_info(impl, X, threads, "minibatch-1M-fit"))
    benchmark.extra_info["data"] = source
    with _limits(threads):
        benchmark.pedantic(lambda est, X: est.fit(X), setup=setup, rounds=rounds,
                           warmup_rounds=warmup, iterations=1)
    per_seed = {}
    for est in fitted:
        per_seed.setdefault(est.random_state, []).append(
            (float(est.inertia_), int(est.n_steps_), int(est.n_iter_)))
    del fitted[:]
    first = [per_seed[s][0] for s in sorted(per_seed)]
    inertia = float(np.mean([r[0] for r in first]))
    benchmark.extra_info.update({
        "inertia": inertia, "inertia_per_seed": [r[0] for r in first],
        "n_steps_per_seed": [r[1] for r in first], "n_steps": float(np.mean([r[1] for r in first])),
        "n_iter": float(np.mean([r[2] for r in first])), "seeds": sorted(per_seed),
        "repeatable": all(len(set(v)) == 1 for v in per_seed.values()),
    })
    median = _median(benchmark)
    _RESULTS[("fit", impl)] = {"median": median, "inertia": inertia}
    if impl == "fastkm":
        benchmark.extra_info.update(_time_split(X, threads, SEEDS[0]))
    elif ("fit", "fastkm") in _RESULTS and median:
        ours = _RESULTS[("fit", "fastkm")]
        if ours["median"]:
            benchmark.extra_info["fastkm_time_fraction"] = ours["median"] / median
        benchmark.extra_info["fastkm_inertia_ratio"] = ours["inertia"] / inertia


@pytest.mark.benchmark(group="minibatch-1M-partial-fit")
@pytest.mark.parametrize("impl", ["fastkm", "sklearn"])
def test_minibatch_partial_fit(benchmark, impl, blobs_1m, threads, rounds_for):
    X = blobs_1m[0]
    _estimator(impl, threads)
    rounds = rounds_for(5)
    starts = iter(range(0, X.shape[0], (CALLS + 1) * BATCH))

    def setup():
        est = _estimator(impl, threads, random_state=0)
        s = next(starts)
        with _limits(threads):
            est.partial_fit(X[s:s + BATCH])     # initialisation: untimed
        chunks = [X[s + i * BATCH:s + (i + 1) * BATCH] for i in range(1, CALLS + 1)]
        return (est, chunks), {}

    def run(est, chunks):
        for chunk in chunks:
            est.partial_fit(chunk)

    benchmark.extra_info.update(_info(impl, X, threads, "minibatch-1M-partial-fit"))
    benchmark.extra_info["calls_per_round"] = CALLS
    with _limits(threads):
        benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    median = _median(benchmark)
    if median:
        benchmark.extra_info["batches_per_s"] = CALLS / median
        _RESULTS[("partial_fit", impl)] = {"median": median}
        ours = _RESULTS.get(("partial_fit", "fastkm"))
        if impl != "fastkm" and ours:
            benchmark.extra_info["fastkm_throughput_ratio"] = median / ours["median"]


def _kmeans_passing(X, threads, seed, target):
    """The fewest Lloyd iterations after which KMeans's inertia is at most
    ``target``, and that fit's time (None if 30 do not suffice)."""
    import fastkm

    for max_iter in range(1, 31):
        t0 = time.perf_counter()
        km = fastkm.KMeans(K, random_state=seed, max_iter=max_iter, n_threads=threads).fit(X)
        seconds = time.perf_counter() - t0
        if km.inertia_ <= target:
            return max_iter, seconds
        if km.n_iter_ < max_iter:   # converged above the target
            break
    return None, None


@pytest.mark.benchmark(group="minibatch-1M-kmeans")
def test_kmeans_reference(benchmark, blobs_1m, threads, rounds_for):
    import warnings

    import fastkm

    X = blobs_1m[0]
    seeds = iter([SEEDS[i % len(SEEDS)] for i in range(rounds_for(len(SEEDS)))])
    fitted = []

    def setup():
        est = fastkm.KMeans(K, random_state=next(seeds), n_threads=threads)
        fitted.append(est)
        return (est, X), {}

    benchmark.extra_info.update(_info("fastkm", X, threads, "minibatch-1M-kmeans"))
    benchmark.extra_info["estimator"] = "fastkm.KMeans (exact, defaults)"
    with _limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark.pedantic(lambda est, X: est.fit(X), setup=setup, rounds=len(SEEDS),
                           warmup_rounds=0, iterations=1)
        inertia = float(np.mean([est.inertia_ for est in fitted]))
        benchmark.extra_info.update({
            "inertia": inertia, "inertia_per_seed": [float(e.inertia_) for e in fitted],
            "n_iter": float(np.mean([e.n_iter_ for e in fitted]))})
        mb = _RESULTS.get(("fit", "fastkm"))
        if mb:
            benchmark.extra_info["minibatch_inertia_over_kmeans"] = mb["inertia"] / inertia
            its, secs = _kmeans_passing(X, threads, SEEDS[0], mb["inertia"])
            benchmark.extra_info["kmeans_iterations_to_pass_minibatch"] = its
            benchmark.extra_info["kmeans_seconds_to_pass_minibatch"] = secs
        long = fastkm.MiniBatchKMeans(K, random_state=SEEDS[0], n_threads=threads,
                                      max_no_improvement=None, max_iter=10)
        t0 = time.perf_counter()
        long.fit(X)
        benchmark.extra_info["minibatch_10_passes_seconds"] = time.perf_counter() - t0
        benchmark.extra_info["minibatch_10_passes_inertia_over_kmeans"] = \
            long.inertia_ / fitted[0].inertia_
