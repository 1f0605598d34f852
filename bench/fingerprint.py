"""Bitwise fingerprints of fastkm's results, for refactoring: record them, change the
code, check that nothing moved.

    python bench/fingerprint.py --write bench/fingerprints.json
    python bench/fingerprint.py --check bench/fingerprints.json      # exit 1 on any change

Every case goes through the public API only (``KMeans``, ``k_means``,
``kmeans_plusplus``, ``quantize``, ``Palette``), so the internals can move freely.
A case's fingerprint is the SHA-256 of its outputs' bytes (centers, labels,
inertia, n_iter, predict/transform/score, palette and index bytes). The kernels
are compiled per instruction set and FMA contraction differs between them, so
fingerprints are recorded per kernel build: the JSON has one section per
``fastkm.show_config()`` "kernels" value (run once per ``FASTKM_ISA``).
Results never depend on the thread count; the check runs with 2 threads and
the recording with 1 to show it.
"""
import argparse
import hashlib
import json
import os
import sys
import warnings

import numpy as np

import fastkm


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def _blobs(n, d, k, seed, dtype=np.float64):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-10, 10, size=(k, d))
    return (C[rng.randint(0, k, n)] + rng.normal(size=(n, d))).astype(dtype)


def _china():
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


def _digits():
    from sklearn.datasets import load_digits

    return load_digits().data


def _km(X, threads, sample_weight=None, **params):
    km = fastkm.KMeans(n_threads=threads, **params).fit(X, sample_weight=sample_weight)
    Xq = X[: min(len(X), 5000)]
    return _digest(km.cluster_centers_, km.labels_, np.float64(km.inertia_), np.int64(km.n_iter_),
                   km.predict(Xq), km.transform(Xq[:500]), np.float64(km.score(Xq)))


def cases(threads):
    """name -> fingerprint."""
    out = {}
    china = _china()
    china_x = np.ascontiguousarray((china / 255.0).reshape(-1, 3))
    digits = _digits()
    small = _blobs(3000, 5, 6, 0)
    mid = _blobs(20000, 12, 16, 1, np.float32)
    big = _blobs(500_000, 32, 256, 2, np.float32)[::5]   # a float32 100k x 32 sample
    weights = np.random.RandomState(3).uniform(0.0, 3.0, size=small.shape[0])
    dup = np.repeat(_blobs(3000, 3, 8, 4), 4, axis=0)[np.random.RandomState(5).permutation(12000)]

    for alg in ("auto", "lloyd", "hamerly", "exponion", "elkan"):
        out[f"blobs-5d-{alg}"] = _km(small, threads, n_clusters=6, random_state=0, algorithm=alg)
        out[f"blobs-12d-f32-{alg}"] = _km(mid, threads, n_clusters=16, random_state=1,
                                          algorithm=alg)
        out[f"weighted-{alg}"] = _km(small, threads, weights, n_clusters=6, random_state=2,
                                     algorithm=alg)
        out[f"duplicates-{alg}"] = _km(dup, threads, n_clusters=8, random_state=3, algorithm=alg)
    for alg in ("auto", "lloyd", "hamerly", "exponion"):
        out[f"big-f32-k64-{alg}"] = _km(big, threads, n_clusters=64, random_state=0,
                                        algorithm=alg, max_iter=30)
    out["digits-k10"] = _km(digits, threads, n_clusters=10, random_state=0)
    out["digits-k10-random-n3"] = _km(digits, threads, n_clusters=10, random_state=0,
                                      init="random", n_init=3)
    out["digits-k10-f32-nocopy"] = _km(digits.astype(np.float32), threads, n_clusters=10,
                                       random_state=0, copy_x=False)
    out["china-k64"] = _km(china_x, threads, n_clusters=64, random_state=0)
    out["china-f32-k16-hamerly"] = _km(china_x.astype(np.float32), threads, n_clusters=16,
                                       random_state=1, algorithm="hamerly")
    init = small[::500][:6].copy()
    out["init-array"] = _km(small, threads, n_clusters=6, init=init, n_init=1)
    out["tol0-maxiter5"] = _km(mid, threads, n_clusters=16, random_state=4, tol=0.0, max_iter=5)
    c, lab, inertia, n_iter = fastkm.k_means(small, 6, random_state=5, return_n_iter=True,
                                             n_threads=threads)
    out["k_means"] = _digest(c, lab, np.float64(inertia), np.int64(n_iter))
    for name, X, k in (("pp-small", small, 6), ("pp-digits", digits, 10), ("pp-big", big, 64),
                       ("pp-china", china_x, 64)):
        centers, idx = fastkm.kmeans_plusplus(X, k, random_state=0, n_threads=threads)
        out[name] = _digest(centers, idx)
    centers, idx = fastkm.kmeans_plusplus(small, 6, sample_weight=weights, random_state=1,
                                          n_threads=threads)
    out["pp-weighted"] = _digest(centers, idx)

    rgba = np.dstack([china[:200, :300], np.tile((np.arange(300) % 256).astype(np.uint8),
                                                 (200, 1))])
    rgba[:20, :, 3] = 0
    for label, img, kw in (
        ("china-64", china, {}),
        ("china-16-fast", china, {"preset": "fast"}),
        ("china-256-best", china[:200], {"preset": "converged"}),  # the old name of the preset
        ("china-64-oklab", china, {"color_space": "oklab"}),
        ("china-32-lab-dither", china[:160], {"color_space": "lab", "dither": True}),
        ("china-64-dither", china, {"dither": True}),
        ("rgba-48", rgba, {}),
        ("rgba-16-dither", rgba, {"dither": True}),
        ("gray-8", china[:, :, 1], {}),
    ):
        n = int(label.split("-")[1])
        q = fastkm.quantize(img, n, n_threads=threads, **kw)
        out[f"quantize-{label}"] = _digest(q.palette, q.indices, q.counts)
    pal = fastkm.Palette.fit([china[:200], china[200:]], 40, n_threads=threads)
    q = pal.quantize(china, n_threads=threads)
    out["palette-shared-40"] = _digest(pal.colors, pal.counts, q.indices)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    build = fastkm._config.config()["kernels"]
    path = args.write or args.check
    stored = {}
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
    if args.write:
        stored[build] = cases(threads=1)
        with open(path, "w") as f:
            json.dump(stored, f, indent=1, sort_keys=True)
        print(f"{len(stored[build])} fingerprints of the {build} build written to {path}")
        return 0
    if build not in stored:
        print(f"no fingerprints recorded for the {build} build in {path}")
        return 2
    now = cases(threads=2)
    want = stored[build]
    changed = sorted(k for k in want if now.get(k) != want[k])
    missing = sorted(set(now) - set(want))
    for k in changed:
        print(f"CHANGED  {k}")
    for k in missing:
        print(f"new      {k} (not recorded)")
    print(f"{build}: {len(want) - len(changed)} of {len(want)} fingerprints unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
