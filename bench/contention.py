"""fastkm on a busy machine: the same workloads quiet and with competing busy processes.

    python bench/contention.py [--rounds 5] [--busy 0,1,2] [--only china,digits,...]
                               [--no-sklearn] [--json out.json]

For each condition (quiet, then 1 and 2 competing busy processes) every workload
is timed for

* ``fastkm``    : its default thread count (``n_threads=None``),
* ``fastkm-1``  : ``n_threads=1``,
* a peer        : scikit-learn with the same default thread count (threadpoolctl
  limits), or libimagequant for the color quantization (one thread, it has no
  other mode).

Runs alternate between the contenders, round by round, so that a burst of
machine noise hits all of them; each cell reports the median and the maximum
(and the minimum) of ``--rounds`` runs. The busy processes are plain
``while True: pass`` loops that this script starts, bounds in time (they exit by
themselves after ``--busy-limit`` seconds) and ends by their PIDs when the
condition is over (also on Ctrl-C).

Workloads:

* ``china``     china.jpg (273,280 x 3 float64), ``KMeans(64)`` defaults, seed 0;
* ``quantize``  ``fastkm.quantize(china, 64)`` (peer: libimagequant, 64 colors, no dithering);
* ``digits``    the digits data set (1,797 x 64), ``KMeans(10)`` defaults, seed 0;
* ``blobs``     make_blobs(300, 2, 4 centers, std 0.6), ``KMeans(4)`` defaults, seed 0;
* ``lloyd500k`` one Lloyd iteration on 500,000 x 32 float32 blobs, k=256, from the same
  centers (``max_iter=1, tol=0, algorithm='lloyd'``: the iteration, the final E-step
  and the inertia);
* ``kmeans256`` 200,000 x 32 float32 blobs, ``KMeans(256)`` defaults, seed 0.
"""
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np

import fastkm

WORKLOADS = ("china", "quantize", "digits", "blobs", "lloyd500k", "kmeans256")
BUSY_CODE = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


# --------------------------------------------------------------------------- busy processes

@contextlib.contextmanager
def busy_processes(count, limit_s):
    """``count`` competing busy processes, each exiting by itself after ``limit_s``
    seconds; killed by PID on exit from the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE.format(limit=limit_s)])
             for _ in range(count)]
    try:
        time.sleep(0.3 if count else 0.0)  # let them reach their loop
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()


# --------------------------------------------------------------------------- data

def _china_pixels():
    from PIL import Image

    path = os.path.join(os.path.dirname(__file__), "..", "fastkm", "data", "china.jpg")
    if os.path.exists(path):
        return np.asarray(Image.open(path).convert("RGB"))
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


def _blobs(n, d, centers, seed, std=1.0):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-10.0, 10.0, size=(centers, d))
    X = C[rng.randint(0, centers, n)] + std * rng.normal(size=(n, d))
    return X


def build_data(names):
    data = {}
    if "china" in names or "quantize" in names:
        img = _china_pixels()
        data["china_img"] = img
        data["china"] = np.ascontiguousarray((img / 255.0).reshape(-1, 3))
    if "digits" in names:
        from sklearn.datasets import load_digits

        data["digits"] = load_digits().data
    if "blobs" in names:
        try:
            from sklearn.datasets import make_blobs

            data["blobs"] = make_blobs(300, centers=4, cluster_std=0.60, random_state=0)[0]
        except ImportError:
            data["blobs"] = _blobs(300, 2, 4, 0, 0.6)
    if "lloyd500k" in names:
        X = _blobs(500_000, 32, 256, 0).astype(np.float32)
        data["lloyd500k"] = (X, np.ascontiguousarray(X[np.random.RandomState(1).permutation(
            X.shape[0])[:256]]))
    if "kmeans256" in names:
        data["kmeans256"] = _blobs(200_000, 32, 256, 0).astype(np.float32)
    return data


# --------------------------------------------------------------------------- contenders

def _fastkm_fit(n_threads, X, **params):
    return lambda: fastkm.KMeans(n_threads=n_threads, **params).fit(X)


def _sklearn_fit(threads, X, **params):
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    def run():
        with threadpool_limits(threads):
            return KMeans(**params).fit(X)

    return run


def contenders(name, data, default_threads, with_sklearn):
    """{label: callable} for one workload."""
    if name == "quantize":
        img = data["china_img"]
        out = {
            "fastkm": lambda: fastkm.quantize(img, 64),
            "fastkm-1": lambda: fastkm.quantize(img, 64, n_threads=1),
        }
        try:
            import imagequant
            from PIL import Image

            pil = Image.fromarray(img)
            out["libimagequant"] = lambda: imagequant.quantize_pil_image(
                pil, max_colors=64, dithering_level=0.0)
        except ImportError:
            pass
        return out
    if name == "lloyd500k":
        X, C0 = data["lloyd500k"]
        params = dict(n_clusters=256, init=C0, n_init=1, max_iter=1, tol=0.0, algorithm="lloyd")
    else:
        X = data[name]
        k = {"china": 64, "digits": 10, "blobs": 4, "kmeans256": 256}[name]
        params = dict(n_clusters=k, random_state=0)
    out = {"fastkm": _fastkm_fit(None, X, **params), "fastkm-1": _fastkm_fit(1, X, **params)}
    if with_sklearn:
        out["sklearn"] = _sklearn_fit(default_threads, X, **params)
    return out


# --------------------------------------------------------------------------- timing

def time_rounds(runs, rounds):
    """Alternate the contenders for ``rounds`` rounds (the order rotates every round)."""
    times = {label: [] for label in runs}
    labels = list(runs)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            t0 = time.perf_counter()
            runs[label]()
            times[label].append(time.perf_counter() - t0)
    return times


def _fmt(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--busy", default="0,1,2", help="competing busy processes per condition")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--busy-limit", type=float, default=900.0,
                    help="seconds after which a busy process exits by itself")
    ap.add_argument("--json", help="write every timing to this file")
    args = ap.parse_args(argv)
    names = [w for w in args.only.split(",") if w]
    bad = sorted(set(names) - set(WORKLOADS))
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {', '.join(WORKLOADS)}")
    busy = [int(b) for b in args.busy.split(",")]
    if args.rounds < 1 or min(busy) < 0:
        ap.error("--rounds must be >= 1 and --busy counts >= 0")
    warnings.filterwarnings("ignore")  # 1-iteration fits, duplicate points: not timed
    with_sklearn = not args.no_sklearn
    if with_sklearn:
        try:
            import sklearn  # noqa: F401
            import threadpoolctl  # noqa: F401
        except ImportError:
            with_sklearn = False
    fastkm.show_config()
    default_threads = fastkm._config.config()["openmp_max_threads"]
    print(f"\ndefault threads: {default_threads}; {args.rounds} rounds per cell\n")
    data = build_data(names)
    results = []
    for n_busy in busy:
        with busy_processes(n_busy, args.busy_limit) as pids:
            if pids:
                print(f"-- {n_busy} busy process(es): PIDs {pids}", flush=True)
            for name in names:
                runs = contenders(name, data, default_threads, with_sklearn)
                for f in runs.values():  # warm-up (imports, page faults), not timed
                    f()
                times = time_rounds(runs, args.rounds)
                row = {"workload": name, "busy": n_busy, "times": times}
                results.append(row)
                t_def, t_one = np.median(times["fastkm"]), np.median(times["fastkm-1"])
                cells = [f"{lab} {_fmt(np.median(t))} (max {_fmt(max(t))})"
                         for lab, t in times.items()]
                peer = next((lab for lab in times if not lab.startswith("fastkm")), None)
                ratio = f", peer/default {np.median(times[peer]) / t_def:.2f}x" if peer else ""
                print(f"{name:10s} busy={n_busy}: " + "; ".join(cells)
                      + f"; default/1-thread {t_def / t_one:.2f}x{ratio}", flush=True)
    print()
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": fastkm._config.config(), "default_threads": default_threads,
                       "rounds": args.rounds, "results": results}, f, indent=1)


def print_table(results):
    print("| workload | busy | fastkm default: median (max) | fastkm 1 thread: median (max) "
          "| default / 1 thread | peer: median (max) | peer / default |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        t = row["times"]
        d, o = t["fastkm"], t["fastkm-1"]
        peer = next((lab for lab in t if not lab.startswith("fastkm")), None)
        pcell = f"{peer} {_fmt(np.median(t[peer]))} ({_fmt(max(t[peer]))})" if peer else "—"
        pratio = f"{np.median(t[peer]) / np.median(d):.2f}×" if peer else "—"
        print(f"| {row['workload']} | {row['busy']} | {_fmt(np.median(d))} ({_fmt(max(d))}) | "
              f"{_fmt(np.median(o))} ({_fmt(max(o))}) | {np.median(d) / np.median(o):.2f}× | "
              f"{pcell} | {pratio} |")


if __name__ == "__main__":
    main()
