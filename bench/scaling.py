"""Thread scaling of one dense Lloyd iteration on 500,000 x 32 float32, k=256.

    python bench/scaling.py [--max-threads N] [--iterations I]

Runs ``KMeans(256, init=C0, n_init=1, max_iter=I, tol=0, algorithm='lloyd')``
for 1, 2, 4, ... threads (and scikit-learn with the same thread limits when it
is installed) and prints ms/iteration and the speed-up over one thread. It also
checks that fastkm's centers are bitwise identical for every thread count.
"""
import argparse
import os
import sys
import time

import numpy as np

from fastkm import KMeans, show_config


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-threads", type=int, default=os.cpu_count())
    ap.add_argument("--iterations", type=int, default=10)
    args = ap.parse_args(argv)
    show_config()
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
    print(f"\n500,000 x 32 float32, k=256, {args.iterations} Lloyd iterations\n")
    print("| threads | fastkm ms/iter | speed-up | sklearn ms/iter | speed-up |")
    print("|---|---|---|---|---|")
    base = {}
    ref = None
    for t in threads:
        row = [str(t)]
        t0 = time.perf_counter()
        km = KMeans(256, init=C0, n_init=1, max_iter=args.iterations, tol=0, algorithm="lloyd",
                    n_threads=t).fit(X)
        ms = (time.perf_counter() - t0) * 1e3 / km.n_iter_
        ref = km.cluster_centers_.tobytes() if ref is None else ref
        if km.cluster_centers_.tobytes() != ref:
            print(f"centers differ with {t} threads", file=sys.stderr)
            return 1
        base.setdefault("fastkm", ms)
        row += [f"{ms:.1f}", f"{base['fastkm'] / ms:.2f}x"]
        if SKKMeans is not None:
            with threadpool_limits(limits=t):
                t0 = time.perf_counter()
                sk = SKKMeans(256, init=C0, n_init=1, max_iter=args.iterations, tol=0).fit(X)
                ms = (time.perf_counter() - t0) * 1e3 / sk.n_iter_
            base.setdefault("sklearn", ms)
            row += [f"{ms:.1f}", f"{base['sklearn'] / ms:.2f}x"]
        else:
            row += ["-", "-"]
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
