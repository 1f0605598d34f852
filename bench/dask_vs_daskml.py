"""fastkm.dask.KMeans against dask-ml's KMeans on the same LocalCluster.

Workload (issue 15): 2,000,000 x 32 float32 in 16 chunks, k=64, the same
initial centers for every fit, 30 iterations (tol=0). For 1 and 2 workers (one
thread each, processes) it times, with the data persisted on the workers:

- fastkm.dask.KMeans with algorithm='lloyd' (the algorithm dask-ml runs) and
  'auto' (fastkm's default; every algorithm gives Lloyd's labels);
- dask_ml.cluster.KMeans;

and single-machine fastkm.KMeans (same init, same iterations, copy_x=False so
that it fits the rows as stored, as the Dask fit does) with as many threads
as workers. It reports each fit's inertia_, and for dask-ml also the inertia
its own centers give (its inertia_ sums unsquared distances).

    PYTHONPATH=. python bench/dask_vs_daskml.py            # the issue's workload
    PYTHONPATH=. python bench/dask_vs_daskml.py --rows 400000 --repeat 1   # quick

The data: 256 overlapping Gaussian blobs (make_blobs, cluster_std=4), where
the distance bounds of 'auto' prune little (a Lloyd-bound case); ``--centers
64 --std 3`` makes 64 blobs, where they prune more. The
chunks are 131,072 rows (15 full chunks and one of 33,920 rows), whole
canonical blocks of fastkm (``fastkm.dask.block_rows(64, 32)`` = 65,536 rows),
so fastkm keeps the chunking as given; ``--chunk-rows 125000`` makes the
chunks unaligned and fastkm realigns them once (timed).
"""
import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np


def make_data(rows, features, centers=256, std=4.0, seed=0):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(rows, features, centers=centers, cluster_std=std, random_state=seed)
    X = X.astype(np.float32)
    init = X[np.random.RandomState(seed).permutation(rows)[:64]].copy()
    return X, init


def true_inertia(X, centers):
    import fastkm

    km = fastkm.KMeans(centers.shape[0], init=centers.astype(X.dtype), n_init=1, max_iter=1)
    km.cluster_centers_ = centers.astype(X.dtype)
    km.n_features_in_ = X.shape[1]
    return -km.score(X)


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(args):
    import dask.array as da
    from distributed import Client, LocalCluster

    import fastkm
    import fastkm.dask

    X, init = make_data(args.rows, args.features, args.centers, args.std)
    k = init.shape[0]
    rows = []
    for workers in args.workers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        with cluster, Client(cluster) as client:
            Xd = da.from_array(X, chunks=(args.chunk_rows, -1)).persist()
            client.wait_for_workers(workers)
            Xd = Xd.persist()
            _ = Xd.sum().compute()  # the chunks are on the workers before any timing
            for alg in ("lloyd", "auto"):
                km = fastkm.dask.KMeans(k, init=init, max_iter=args.iters, tol=0, algorithm=alg)
                t, km = timed(lambda km=km, Xd=Xd: km.fit(Xd), args.repeat)
                rows.append({"impl": f"fastkm.dask ({alg})", "workers": workers, "time": t,
                             "inertia_": km.inertia_, "true_inertia": km.inertia_,
                             "n_iter": km.n_iter_, "algorithm": km.algorithm_})
                centers_fastkm = km.cluster_centers_
            if not args.no_daskml:
                from dask_ml.cluster import KMeans as DaskMLKMeans

                km = DaskMLKMeans(n_clusters=k, init=init, max_iter=args.iters, tol=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t, km = timed(lambda km=km, Xd=Xd: km.fit(Xd), args.daskml_repeat)
                rows.append({"impl": "dask-ml", "workers": workers, "time": t,
                             "inertia_": km.inertia_,
                             "true_inertia": true_inertia(X, km.cluster_centers_),
                             "n_iter": km.n_iter_, "algorithm": "lloyd (full)"})
        for alg in ("lloyd", "auto"):
            km = fastkm.KMeans(k, init=init, max_iter=args.iters, tol=0, algorithm=alg,
                               copy_x=False, n_threads=workers)
            t, km = timed(lambda km=km: km.fit(X), args.repeat)
            rows.append({"impl": f"fastkm.KMeans ({alg}, single machine)", "workers": workers,
                         "time": t, "inertia_": km.inertia_, "true_inertia": km.inertia_,
                         "n_iter": km.n_iter_, "algorithm": km.algorithm_,
                         "same_centers_as_dask": bool(np.array_equal(km.cluster_centers_,
                                                                     centers_fastkm))
                         if alg == "auto" else None})
    return rows


def report(rows, args):
    print(f"\n{args.rows:,} x {args.features} float32 blobs ({args.centers} centers, "
          f"cluster_std={args.std}), chunks of {args.chunk_rows:,} rows, "
          f"k=64, {args.iters} iterations, tol=0, the same initial centers; median of "
          f"{args.repeat} (dask-ml: {args.daskml_repeat}) fits, data persisted first\n")
    print("| workers | implementation | fit time (s) | n_iter | inertia_ | inertia of its centers |"
          " dask-ml time / this |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peer = [q for q in rows if q["impl"] == "dask-ml" and q["workers"] == r["workers"]]
        ratio = f"{peer[0]['time'] / r['time']:.1f}x" if peer else ""
        print(f"| {r['workers']} | {r['impl']} | {r['time']:.2f} | {r['n_iter']} | "
              f"{r['inertia_']:.6e} | {r['true_inertia']:.6e} | {ratio} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--chunk-rows", type=int, default=131_072)
    ap.add_argument("--centers", type=int, default=256, help="true centers of the blobs")
    ap.add_argument("--std", type=float, default=4.0, help="cluster_std of the blobs")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--daskml-repeat", type=int, default=1)
    ap.add_argument("--no-daskml", action="store_true")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    rows = run(args)
    report(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
