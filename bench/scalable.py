"""init='k-means||' against fastkm's own greedy k-means++ (issue 15's target).

Workload: 1,000,000 x 32 float32 overlapping blobs (make_blobs, 256 centers,
cluster_std=4, random_state=0), k=1024, seeds 0, 1, 2. For each seed it times
the seeding alone on the rows as given (``fastkm.kmeans_plusplus`` and the
k-means|| of ``KMeans(init='k-means||')``, 5 rounds of 2k draws), then fits
``KMeans(1024, init=..., random_state=seed)`` to convergence (defaults:
tol=1e-4, algorithm='auto') and records the inertia.

Target: k-means|| seeding at least 1.5x faster, and its mean inertia after
convergence at most 1.01x that of k-means++.

    PYTHONPATH=. python bench/scalable.py                  # the full table
    PYTHONPATH=. python bench/scalable.py --rows 200000 --clusters 256 --seeds 0  # quick
"""
import argparse
import json
import sys
import time

import numpy as np


def seed_times(X, k, seed, n_threads):
    import fastkm
    from fastkm.kmeans._prepare import FitData
    from fastkm.kmeans._scalable import kmeans_parallel_data

    t0 = time.perf_counter()
    fastkm.kmeans_plusplus(X, k, random_state=seed, n_threads=n_threads)
    t_pp = time.perf_counter() - t0
    w = np.ones(X.shape[0], dtype=X.dtype)
    data = FitData(X, w, None, w, False, None, None)
    t0 = time.perf_counter()
    kmeans_parallel_data(data, k, np.random.RandomState(seed), n_threads)
    t_par = time.perf_counter() - t0
    return t_pp, t_par


def fit(X, k, init, seed, n_threads):
    import fastkm

    t0 = time.perf_counter()
    km = fastkm.KMeans(k, init=init, random_state=seed, n_threads=n_threads).fit(X)
    return km.inertia_, km.n_iter_, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--clusters", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-fit", action="store_true", help="time the seeding only")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from sklearn.datasets import make_blobs

    import fastkm
    from fastkm import _threads

    X, _ = make_blobs(args.rows, args.features, centers=256, cluster_std=4.0, random_state=0)
    X = X.astype(np.float32)
    n_threads = _threads.resolve(args.threads)
    rows = []
    for seed in args.seeds:
        t_pp, t_par = seed_times(X, args.clusters, seed, n_threads)
        row = {"seed": seed, "seed_pp": t_pp, "seed_par": t_par}
        if not args.no_fit:
            for name in ("k-means++", "k-means||"):
                inertia, n_iter, t = fit(X, args.clusters, name, seed, n_threads)
                row[name] = {"inertia": inertia, "n_iter": n_iter, "fit_time": t}
        rows.append(row)
        print(json.dumps(row), flush=True)

    from fastkm._dispatch import ISA

    print(f"\n{args.rows:,} x {args.features} float32 overlapping blobs (256 centers, "
          f"cluster_std=4), k={args.clusters}, {n_threads} threads, kernels {ISA}, "
          f"fastkm {fastkm.__version__}")
    print("\n| seed | k-means++ seeding (s) | k-means|| seeding (s) | speed-up |"
          " inertia after convergence, k-means++ | k-means|| | ratio | n_iter ++ / || |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r.get("k-means++"), r.get("k-means||")
        conv = (f"{a['inertia']:.6e} | {b['inertia']:.6e} | {b['inertia'] / a['inertia']:.4f} | "
                f"{a['n_iter']} / {b['n_iter']}") if a else "— | — | — | —"
        print(f"| {r['seed']} | {r['seed_pp']:.2f} | {r['seed_par']:.2f} | "
              f"{r['seed_pp'] / r['seed_par']:.1f}x | {conv} |")
    if rows and not args.no_fit:
        pp = np.mean([r["k-means++"]["inertia"] for r in rows])
        par = np.mean([r["k-means||"]["inertia"] for r in rows])
        sp = np.mean([r["seed_pp"] for r in rows]) / np.mean([r["seed_par"] for r in rows])
        print(f"| mean | {np.mean([r['seed_pp'] for r in rows]):.2f} | "
              f"{np.mean([r['seed_par'] for r in rows]):.2f} | {sp:.1f}x | {pp:.6e} | "
              f"{par:.6e} | {par / pp:.4f} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
