"""Time every exact algorithm on a grid of (n, d, k): the data behind algorithm='auto'.

    python bench/algorithms.py [--threads T] [--repeats R] [--quick]

Each fit starts from the same initial centers (k rows drawn from X) and runs to
convergence; every algorithm must reach the same inertia and iteration count
(they give Lloyd's labels), which the script checks. Prints a Markdown table of
median seconds and the fastest algorithm per row.
"""
import argparse
import statistics
import sys
import time

import numpy as np

from fastkm import KMeans, show_config

ALGORITHMS = ("lloyd", "hamerly", "exponion", "elkan")
GRID = [
    (200_000, 2, 32), (200_000, 3, 64), (200_000, 4, 64), (200_000, 6, 64),
    (200_000, 8, 64), (200_000, 16, 128), (200_000, 32, 256), (50_000, 64, 256),
    (20_000, 128, 64),
]


def blobs(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    X = centers[rng.randint(0, k, size=n)] + rng.normal(size=(n, d))
    return X.astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="first four grid rows only")
    args = ap.parse_args(argv)
    show_config()
    grid = GRID[:4] if args.quick else GRID
    print(f"\nthreads={args.threads or 'default'}, float32 blobs, median of {args.repeats}\n")
    print("| n | d | k | " + " | ".join(ALGORITHMS) + " | fastest | n_iter |")
    print("|---|---|---|" + "---|" * len(ALGORITHMS) + "---|---|")
    for n, d, k in grid:
        X = blobs(n, d, k)
        C0 = X[np.random.RandomState(1).choice(n, k, replace=False)]
        times, results = {}, {}
        for alg in ALGORITHMS:
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                km = KMeans(k, init=C0, n_init=1, algorithm=alg, n_threads=args.threads).fit(X)
                ts.append(time.perf_counter() - t0)
            times[alg] = statistics.median(ts)
            results[alg] = (km.inertia_, km.n_iter_)
        if len(set(results.values())) != 1:
            print(f"MISMATCH for {(n, d, k)}: {results}", file=sys.stderr)
            return 1
        best = min(times, key=times.get)
        cells = " | ".join(f"{times[a]:.3f}" for a in ALGORITHMS)
        print(f"| {n:,} | {d} | {k} | {cells} | {best} | {results[best][1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
