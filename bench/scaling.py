"""Thread scaling on 500,000 x 32 float32, k=256.

    python bench/scaling.py [--max-threads N] [--iterations n_it] [--no-default-fit]

Part 1: ``KMeans(256, init=C0, n_init=1, max_iter=n_it, tol=0, algorithm='lloyd')``
for 1, 2, 4, ... threads (and scikit-learn with the same thread limits when it
is installed). It prints the whole fit's ms/iteration, the marginal cost of one
iteration ((t(n_it) - t(1)) / (n_it - 1), which leaves out input checks and the
final E-step), and the speed-up over one thread.

Part 2: the default fit, ``KMeans(256, random_state=0)`` (k-means++ seeding,
``algorithm='auto'``, tol=1e-4), against scikit-learn's defaults.

Part 3 (``--ceiling``): what the machine allows. P independent processes, one
thread each, run the part 1 fit at once on their own n/P_max rows (together the
data of part 1); throughput = P * t(1 process) / t(P processes). A program with
no serial part and no shared state scales this far, no further (clock drop with
more busy cores, shared caches and memory bandwidth, SMT siblings).

Every fastkm result is checked to be bitwise identical for every thread count.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

from fastkm import KMeans, kmeans_plusplus, show_config


def _timed(make, X):
    t0 = time.perf_counter()
    est = make().fit(X)
    return time.perf_counter() - t0, est


def _same(est, ref):
    got = (est.cluster_centers_.tobytes(), est.labels_.tobytes(), est.n_iter_)
    return ref is None or got == ref, got


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-threads", type=int, default=os.cpu_count())
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--no-default-fit", action="store_true",
                    help="skip part 2 (default fits, slow for scikit-learn on one thread)")
    ap.add_argument("--no-sklearn", action="store_true", help="time fastkm alone")
    ap.add_argument("--ceiling", action="store_true",
                    help="part 3: throughput of independent one-thread processes")
    args = ap.parse_args(argv)
    if args.iterations < 2:
        ap.error("--iterations must be at least 2")
    show_config()
    # sklearn warns when a 1-iteration fit leaves clusters empty; the timing does not care
    warnings.filterwarnings("ignore", message="Number of distinct clusters")
    rng = np.random.RandomState(0)
    centers = rng.uniform(-10, 10, size=(256, 32))
    X = (centers[rng.randint(0, 256, 500_000)] + rng.normal(size=(500_000, 32))).astype(np.float32)
    C0 = X[rng.choice(len(X), 256, replace=False)]
    threads = sorted({t for t in (1, 2, 4, 8, 12, 16, 24, 32, 64) if t <= args.max_threads}
                     | {args.max_threads})
    try:
        from sklearn.cluster import KMeans as SKKMeans
        from threadpoolctl import threadpool_limits
    except ImportError:
        SKKMeans = None
    if args.no_sklearn:
        SKKMeans = None
    n_it = args.iterations

    print(f"\n500,000 x 32 float32, k=256, {n_it} Lloyd iterations from the same centers\n")
    print("| threads | fastkm fit ms/iter | marginal ms/iter | speed-up | "
          "sklearn fit ms/iter | marginal ms/iter | speed-up | fastkm vs sklearn |")
    print("|---|---|---|---|---|---|---|---|")
    base, ref = {}, None
    for t in threads:
        row = [str(t)]

        def fk(m, t=t):
            return lambda: KMeans(256, init=C0, n_init=1, max_iter=m, tol=0, algorithm="lloyd",
                                  n_threads=t)

        _timed(fk(1), X)  # warm-up: thread pool, page faults
        t1, _ = _timed(fk(1), X)
        tI, km = _timed(fk(n_it), X)
        ok, ref = _same(km, ref)
        if not ok:
            print(f"fastkm's result differs with {t} threads", file=sys.stderr)
            return 1
        marg = (tI - t1) * 1e3 / (n_it - 1)
        base.setdefault("fastkm", marg)
        row += [f"{tI * 1e3 / n_it:.1f}", f"{marg:.1f}", f"{base['fastkm'] / marg:.2f}x"]
        if SKKMeans is not None:
            with threadpool_limits(limits=t):
                def sk(m):
                    return lambda: SKKMeans(256, init=C0, n_init=1, max_iter=m, tol=0)

                s1, _ = _timed(sk(1), X)
                sI, _ = _timed(sk(n_it), X)
            smarg = (sI - s1) * 1e3 / (n_it - 1)
            base.setdefault("sklearn", smarg)
            row += [f"{sI * 1e3 / n_it:.1f}", f"{smarg:.1f}", f"{base['sklearn'] / smarg:.2f}x",
                    f"{smarg / marg:.2f}x"]
        else:
            row += ["-"] * 4
        print("| " + " | ".join(row) + " |", flush=True)

    if args.no_default_fit:
        return 0
    print("\nDefault fit: KMeans(256, random_state=0) on the same data (k-means++, "
          "algorithm='auto', tol=1e-4)\n")
    print("| threads | fastkm s | speed-up | of which seeding s | seeding speed-up | n_iter | "
          "sklearn s | speed-up | n_iter | fastkm vs sklearn | inertia fastkm / sklearn |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base, ref = {}, None
    for t in threads:
        tf, km = _timed(lambda t=t: KMeans(256, random_state=0, n_threads=t), X)
        ok, ref = _same(km, ref)
        if not ok:
            print(f"fastkm's default fit differs with {t} threads", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        kmeans_plusplus(X, 256, random_state=np.random.RandomState(0).randint(2**31 - 1),
                        n_threads=t)
        ts = time.perf_counter() - t0
        base.setdefault("fastkm", tf)
        base.setdefault("seeding", ts)
        row = [str(t), f"{tf:.3f}", f"{base['fastkm'] / tf:.2f}x", f"{ts:.3f}",
               f"{base['seeding'] / ts:.2f}x", str(km.n_iter_)]
        if SKKMeans is not None:
            with threadpool_limits(limits=t):
                ts, sk = _timed(lambda: SKKMeans(256, random_state=0), X)
            base.setdefault("sklearn", ts)
            row += [f"{ts:.3f}", f"{base['sklearn'] / ts:.2f}x", str(sk.n_iter_),
                    f"{ts / tf:.2f}x", f"{km.inertia_ / sk.inertia_:.5f}"]
        else:
            row += ["-"] * 5
        print("| " + " | ".join(row) + " |", flush=True)

    if args.ceiling:
        return _ceiling(X, C0, threads, n_it)
    return 0


def _ceiling_worker(path, part, n_parts, iterations, barrier, results):
    warnings.filterwarnings("ignore", message="Number of distinct clusters")
    X = np.load(os.path.join(path, "X.npy"), mmap_mode="r")
    rows = X.shape[0] // n_parts
    X = np.array(X[part * rows:(part + 1) * rows])
    C0 = np.load(os.path.join(path, "C0.npy"))

    def fit(m):
        t0 = time.perf_counter()
        KMeans(256, init=C0, n_init=1, max_iter=m, tol=0, algorithm="lloyd", n_threads=1).fit(X)
        return time.perf_counter() - t0

    fit(1)
    barrier.wait()
    t1 = fit(1)
    tI = fit(iterations)
    results.put((tI - t1) / (iterations - 1))


def _ceiling(X, C0, threads, iterations):
    import multiprocessing as mp
    import tempfile

    n_parts = max(threads)
    print(f"\nCeiling: P processes at once, one thread each, each on its own "
          f"{X.shape[0] // n_parts:,} rows (k=256, {iterations} Lloyd iterations)\n")
    print("| processes | marginal ms/iter per process | throughput vs 1 process |")
    print("|---|---|---|")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as path:
        np.save(os.path.join(path, "X.npy"), X)
        np.save(os.path.join(path, "C0.npy"), C0)
        one = None
        for p in threads:
            barrier, results = ctx.Barrier(p), ctx.Queue()
            procs = [ctx.Process(target=_ceiling_worker,
                                 args=(path, i, n_parts, iterations, barrier, results))
                     for i in range(p)]
            for proc in procs:
                proc.start()
            times = [results.get() for _ in procs]
            for proc in procs:
                proc.join()
            per = max(times)
            one = per if one is None else one
            print(f"| {p} | {per * 1e3:.2f} (mean {np.mean(times) * 1e3:.2f}) | "
                  f"{p * one / per:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
