"""Time every exact algorithm on sparse TF-IDF data: the measurements behind
algorithm='auto' for sparse input (``fastkm.kmeans._policy.choose_sparse_algorithm``).

    PYTHONPATH=. python bench/sparse_algorithms.py [--threads T] [--repeats R] [--cpu]

Each fit starts from the same k-means++ centers and runs to convergence
(tol=1e-4); every algorithm must reach the same inertia and iteration count
(they give Lloyd's labels), which the script checks. Prints a Markdown table
of median seconds per fit and the fastest algorithm per row. ``--cpu`` times
process CPU seconds instead of wall seconds (steadier on a shared machine;
use it with --threads 1).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfidf import tfidf_matrix

from fastkm import KMeans, kmeans_plusplus, show_config

ALGORITHMS = ("lloyd", "hamerly", "exponion", "elkan")
# (documents, vocabulary, topics, k)
GRID = [
    (20_000, 100_000, 20, 8), (20_000, 100_000, 20, 20), (20_000, 100_000, 20, 100),
    (20_000, 100_000, 20, 300), (5_000, 20_000, 10, 50), (50_000, 50_000, 50, 50),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    ap.add_argument("--rows", type=str, default=None, help="comma-separated grid rows to run")
    args = ap.parse_args(argv)
    show_config()
    clock = time.process_time if args.cpu else time.perf_counter
    grid = GRID if args.rows is None else [GRID[int(i)] for i in args.rows.split(",")]
    print(f"\nthreads={args.threads or 'default'}, {'CPU' if args.cpu else 'wall'} seconds, "
          f"median of {args.repeats}, TF-IDF (bench/tfidf.py) float64\n")
    print("| docs | terms | nnz/row | k | " + " | ".join(ALGORITHMS) + " | fastest | n_iter |")
    print("|---|---|---|---|" + "---|" * len(ALGORITHMS) + "---|---|")
    for n, d, topics, k in grid:
        X = tfidf_matrix(n_docs=n, n_terms=d, n_topics=topics)
        C0, _ = kmeans_plusplus(X, k, random_state=0, n_threads=args.threads)
        times, results = {}, {}
        for alg in ALGORITHMS:
            ts = []
            for _ in range(args.repeats):
                t0 = clock()
                km = KMeans(k, init=C0, n_init=1, algorithm=alg, n_threads=args.threads).fit(X)
                ts.append(clock() - t0)
            times[alg] = statistics.median(ts)
            results[alg] = (km.inertia_, km.n_iter_)
        if len(set(results.values())) != 1:
            print(f"MISMATCH for {(n, d, k)}: {results}", file=sys.stderr)
            return 1
        best = min(times, key=times.get)
        cells = " | ".join(f"{times[a]:.2f}" for a in ALGORITHMS)
        print(f"| {n:,} | {d:,} | {X.nnz / n:.0f} | {k} | {cells} | {best} | "
              f"{results[best][1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
