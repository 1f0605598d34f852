"""The "main job" demo: the classic notebook "Color Compression using K-Means",
run with fastkm and timed against scikit-learn.

Steps (each fitted by ``fastkm.KMeans`` and by ``sklearn.cluster.KMeans`` with the
same parameters, the same ``random_state`` and the same number of threads, with
scikit-learn limited by threadpoolctl):

1. ``make_blobs(300 x 2, 3 centers, cluster_std=0.60, random_state=0)``, k=3 and k=4;
2. the digits data set (1797 x 64), k=10: the 10 centers drawn as 8x8 images, and
   how well the clusters agree with the digit labels (accuracy once each cluster is
   mapped to its majority label);
3. ``china.jpg`` scaled to [0, 1] and reshaped to (273280, 3), compressed to 64 colors.

The result is one PNG (written atomically) and a text summary::

    >>> from fastkm.demo import run_demo, format_summary
    >>> result = run_demo("fastkm-demo.png", n_threads=2)   # doctest: +SKIP
    >>> print(format_summary(result))                       # doctest: +SKIP

scikit-learn, matplotlib and threadpoolctl are optional dependencies of fastkm
(``pip install "fastkm[demo]"``).
"""
import os
import secrets
import time

import numpy as np

__all__ = ["DemoError", "MissingDependencyError", "format_summary", "run_demo"]

INSTALL_HINT = 'pip install "fastkm[demo]"'

# Every fit gets these (fastkm's defaults, spelled out so that scikit-learn does
# exactly the same work whatever its version's defaults are).
_FIT_PARAMS = dict(init="k-means++", n_init=1, max_iter=300, tol=1e-4)

# Timing: repeat a fit (results are deterministic) at least _MIN_REPEATS times and
# until this much time has been spent or _MAX_REPEATS runs were made; keep the
# fastest run. When the runs of one side spread more than _BUSY_SPREAD (slowest /
# fastest), the machine is busy and a ratio would mislead: none is printed.
_TIME_BUDGET_S = 0.3
_MIN_REPEATS = 3
_MAX_REPEATS = 7
_BUSY_SPREAD = 2.0


class DemoError(Exception):
    """An error the demo reports to the user as one line (bad output path, ...)."""


class MissingDependencyError(DemoError, ImportError):
    """An optional dependency of the demo is not installed."""


def _require_demo_deps():
    """Import the optional dependencies, or raise MissingDependencyError naming them."""
    missing = []
    for module, dist in (("sklearn", "scikit-learn"), ("matplotlib", "matplotlib"),
                         ("threadpoolctl", "threadpoolctl")):
        try:
            __import__(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise MissingDependencyError(
            f"the demo needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; "
            f"install the demo extra with: {INSTALL_HINT}"
        )


# --------------------------------------------------------------------------- output file

class _AtomicOutput:
    """A temporary file next to ``path``, opened at once (so an unwritable
    destination fails before any work), moved onto ``path`` by ``commit()``
    and removed by ``discard()`` otherwise: no half-written file is ever left."""

    def __init__(self, path):
        path = os.fspath(path)
        if not path:
            raise DemoError("the output path is empty")
        self.path = os.path.abspath(path)
        if os.path.isdir(self.path):
            raise DemoError(f"cannot write {self.path}: it is a directory")
        directory, base = os.path.split(self.path)
        if not os.path.isdir(directory):
            why = "is not a directory" if os.path.exists(directory) else "does not exist"
            raise DemoError(f"cannot write {self.path}: {directory} {why}")
        self.tmp_path = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666 & ~umask, like any newly created file (mkstemp would give 0o600)
            fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise DemoError(f"cannot write {self.path}: {e.strerror or e}") from e
        self.file = os.fdopen(fd, "wb")

    def commit(self):
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp_path, self.path)
        except OSError as e:
            self.discard()
            raise DemoError(f"cannot write {self.path}: {e.strerror or e}") from e

    def discard(self):
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- fitting

def _fit_timed(make_model, X):
    """Fit fresh models on X; return (fastest run's seconds, slowest / fastest, model)."""
    times = []
    for _ in range(_MAX_REPEATS):
        model = make_model()
        t0 = time.perf_counter()
        model.fit(X)
        times.append(time.perf_counter() - t0)
        if len(times) >= _MIN_REPEATS and sum(times) >= _TIME_BUDGET_S:
            break
    best = min(times)
    return best, (max(times) / best if best > 0 else 1.0), model


def _majority_accuracy(labels, y, n_clusters):
    """Accuracy once each cluster is mapped to the most common true label in it;
    returns (accuracy, mapping) with mapping[c] the label cluster c stands for."""
    labels = np.asarray(labels, dtype=np.intp)
    y = np.asarray(y, dtype=np.intp)
    counts = np.zeros((n_clusters, int(y.max()) + 1), dtype=np.intp)
    np.add.at(counts, (labels, y), 1)
    mapping = counts.argmax(axis=1)
    return float(np.mean(mapping[labels] == y)), mapping


def _compare(name, X, k, seed, n_threads, y=None):
    """Fit fastkm and scikit-learn on X; return (step dict, fastkm model)."""
    from sklearn.cluster import KMeans as SKKMeans

    import fastkm

    t_fk, spread_fk, fk = _fit_timed(
        lambda: fastkm.KMeans(k, random_state=seed, n_threads=n_threads, **_FIT_PARAMS), X)
    t_sk, spread_sk, sk = _fit_timed(lambda: SKKMeans(k, random_state=seed, **_FIT_PARAMS), X)
    step = {
        "name": name,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_clusters": int(k),
        "fastkm_time": float(t_fk),
        "sklearn_time": float(t_sk),
        "speedup": float(t_sk / t_fk) if t_fk > 0 else float("inf"),
        "spread": float(max(spread_fk, spread_sk)),
        "busy": bool(max(spread_fk, spread_sk) > _BUSY_SPREAD),
        "fastkm_inertia": float(fk.inertia_),
        "sklearn_inertia": float(sk.inertia_),
        "fastkm_n_iter": int(fk.n_iter_),
        "sklearn_n_iter": int(sk.n_iter_),
    }
    if y is not None:
        step["fastkm_accuracy"], step["fastkm_mapping"] = _majority_accuracy(fk.labels_, y, k)
        step["sklearn_accuracy"], _ = _majority_accuracy(sk.labels_, y, k)
    return step, fk


def _resolve_threads(n_threads):
    from fastkm._validation import effective_n_threads

    try:
        return effective_n_threads(n_threads)
    except (TypeError, ValueError) as e:
        raise DemoError(str(e)) from e


# --------------------------------------------------------------------------- text

def _fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _fmt_inertia(value):
    return f"{value:.6g}" if abs(value) >= 1e5 else f"{value:.3f}"


def _fmt_speedup(s):
    if s.get("busy"):
        return f"busy ({min(s['spread'], 99.9):.1f}x)"
    return f"{s['speedup']:.2f}x"


def format_summary(result):
    """The text summary of a ``run_demo`` result: a header, a table (one row per
    step, under 100 columns) and, if timings spread, a note that the machine
    looks busy."""
    steps = result["steps"]
    n = result["n_threads"]
    lines = [
        f"fastkm {result['versions']['fastkm']} vs scikit-learn {result['versions']['sklearn']}:"
        f" {n} thread{'s' if n != 1 else ''} each, random_state={result['seed']},"
        f" fastest of {_MIN_REPEATS}-{_MAX_REPEATS} fits",
        "",
        f"{'step':<19} {'n x d':>8} {'fastkm':>9} {'sklearn':>9} {'speed-up':>12}"
        f" {'accuracy':>11} inertia fastkm / sklearn",
    ]
    for s in steps:
        shape = f"{s['n_samples']}x{s['n_features']}"
        inertia = f"{_fmt_inertia(s['fastkm_inertia'])} / {_fmt_inertia(s['sklearn_inertia'])}"
        acc = (f"{s['fastkm_accuracy']:.3f}/{s['sklearn_accuracy']:.3f}"
               if "fastkm_accuracy" in s else "")
        lines.append(
            f"{s['name']:<19} {shape:>8} {_fmt_time(s['fastkm_time']):>9}"
            f" {_fmt_time(s['sklearn_time']):>9} {_fmt_speedup(s):>12} {acc:>11} {inertia}"
        )
    busy = [s["name"] for s in steps if s.get("busy")]
    if busy:
        lines += ["", f"The machine looks busy: repeated timings of {', '.join(busy)} spread "
                      f"more than {_BUSY_SPREAD:.0f}x,",
                  f"so no speed-up is shown for {'it' if len(busy) == 1 else 'them'}. "
                  "Run the demo again when the machine is quieter."]
    return "\n".join(lines)


def _panel_title(head, s):
    ratio = ("machine busy: no ratio" if s.get("busy") else f"speed-up {s['speedup']:.1f}x")
    title = (
        f"{head}\n"
        f"time: fastkm {_fmt_time(s['fastkm_time'])} vs sklearn {_fmt_time(s['sklearn_time'])}"
        f" ({ratio})\n"
        f"inertia: fastkm {_fmt_inertia(s['fastkm_inertia'])}"
        f" vs sklearn {_fmt_inertia(s['sklearn_inertia'])}"
    )
    if "fastkm_accuracy" in s:
        title += (f"\nlabel accuracy: fastkm {s['fastkm_accuracy']:.3f}"
                  f" vs sklearn {s['sklearn_accuracy']:.3f}")
    return title


# --------------------------------------------------------------------------- figure

def _digits_mosaic(centers, order, rows=3, cols=4, pad=1):
    """The 8x8 centers in a rows x cols grid, NaN between tiles."""
    tile = 8
    out = np.full((rows * (tile + pad) - pad, cols * (tile + pad) - pad), np.nan)
    for pos, c in enumerate(order):
        r, q = divmod(pos, cols)
        out[r * (tile + pad): r * (tile + pad) + tile,
            q * (tile + pad): q * (tile + pad) + tile] = centers[c].reshape(tile, tile)
    return out


def _draw_figure(fileobj, *, blobs, blob_fits, digits_fit, digits_step, img, img_compressed,
                 img_step, steps_by_name, n_threads, dpi=100):
    # The object-oriented API with the Agg canvas: no pyplot, so no global
    # backend switch and nothing left open in a caller's session.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 10.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(
        f"fastkm vs scikit-learn K-Means -- {n_threads} thread{'s' if n_threads != 1 else ''}"
        " each, same random_state (after 'Color Compression using K-Means')",
        fontsize=14,
    )
    gs = fig.add_gridspec(2, 6, height_ratios=[1, 1.25])
    colors = matplotlib.colormaps["tab10"]

    # -- blobs, colored by fastkm's labels
    for col, (k, model) in zip((0, 2), blob_fits):
        ax = fig.add_subplot(gs[0, col:col + 2])
        ax.scatter(blobs[:, 0], blobs[:, 1], c=colors(model.labels_ % 10), s=18,
                   edgecolors="none")
        ax.scatter(*model.cluster_centers_.T, marker="X", s=140, c="black",
                   edgecolors="white", linewidths=1.0, label="fastkm centers")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(_panel_title(f"make_blobs 300x2 (std 0.60), k={k}: fastkm labels",
                                  steps_by_name[f"blobs k={k}"]), fontsize=10)

    # -- digits centers as 8x8 images, ordered by the digit each cluster stands for
    ax = fig.add_subplot(gs[0, 4:6])
    mapping = digits_step["fastkm_mapping"]
    order = np.lexsort((np.arange(len(mapping)), mapping))
    cmap = matplotlib.colormaps["binary"].with_extremes(bad="white")
    ax.imshow(_digits_mosaic(digits_fit.cluster_centers_, order), cmap=cmap,
              interpolation="nearest")
    for pos, c in enumerate(order):
        r, q = divmod(pos, 4)
        ax.text(q * 9 - 0.4, r * 9 - 0.4, str(mapping[c]), color="tab:red", fontsize=11,
                ha="left", va="top", fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        _panel_title("digits 1797x64, k=10: fastkm centers (red: majority digit)", digits_step),
        fontsize=10,
    )

    # -- china.jpg, original and compressed
    n_colors = int(np.unique(img.reshape(-1, 3).astype(np.uint32) @ np.array([65536, 256, 1],
                                                                             np.uint32)).size)
    ax = fig.add_subplot(gs[1, 0:3])
    ax.imshow(img)
    ax.set_axis_off()
    ax.set_title(f"china.jpg original: {img.shape[0]}x{img.shape[1]}, {n_colors} colors",
                 fontsize=11)
    ax = fig.add_subplot(gs[1, 3:6])
    ax.imshow(img_compressed)
    ax.set_axis_off()
    ax.set_title(_panel_title(f"compressed to {img_step['n_clusters']} colors by fastkm",
                              img_step), fontsize=11)

    fig.savefig(fileobj, format="png", dpi=dpi)


# --------------------------------------------------------------------------- entry point

def run_demo(out_path="fastkm-demo.png", n_threads=None, seed=0):
    """Run the demo, write the figure to ``out_path`` (PNG) and return the numbers.

    Parameters
    ----------
    out_path : str or path-like, default="fastkm-demo.png"
        Where the PNG goes. It is written to a temporary file in the same
        directory and moved into place, so a failure never leaves a partial file.
    n_threads : int, default=None
        Threads for fastkm and for scikit-learn (limited with threadpoolctl).
        None: fastkm's default (``OMP_NUM_THREADS``, or the CPUs this process may
        use capped by its cgroup quota: ``fastkm.show_config()``); -1: every CPU.
    seed : int, default=0
        ``random_state`` of every fit (the data sets themselves are fixed).

    Returns
    -------
    dict with keys ``out_path`` (absolute), ``n_threads``, ``seed``, ``versions``,
    ``steps`` (a list of dicts, one per step: ``name``, ``n_samples``, ``n_features``,
    ``n_clusters``, ``fastkm_time``, ``sklearn_time`` (seconds, fastest run),
    ``speedup`` (sklearn time / fastkm time), ``spread`` (slowest / fastest run of the
    noisier side), ``busy`` (spread above 2: no ratio shown), ``fastkm_inertia``,
    ``sklearn_inertia``, ``fastkm_n_iter``, ``sklearn_n_iter``, and for steps with true labels
    ``fastkm_accuracy``, ``sklearn_accuracy``, ``fastkm_mapping``) and ``summary``
    (the text of :func:`format_summary`).

    Raises
    ------
    MissingDependencyError
        scikit-learn, matplotlib or threadpoolctl is missing.
    DemoError
        The output cannot be written, or a bad argument.
    """
    _require_demo_deps()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= seed < 2**32):
        raise DemoError(f"seed must be an int in [0, 2**32 - 1]; got {seed!r}")
    seed = int(seed)
    n_threads = _resolve_threads(n_threads)

    import sklearn
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.datasets import load_digits, load_sample_image, make_blobs
    from threadpoolctl import threadpool_limits

    import fastkm

    out = _AtomicOutput(out_path)  # fail now, not after the work, if it cannot be written
    try:
        with threadpool_limits(limits=n_threads):
            # warm both up (OpenMP thread pools, lazy imports) outside the timings
            warm = np.random.RandomState(0).normal(size=(256, 4))
            fastkm.KMeans(2, random_state=0, n_threads=n_threads, **_FIT_PARAMS).fit(warm)
            SKKMeans(2, random_state=0, **_FIT_PARAMS).fit(warm)

            steps = []
            blobs, blobs_y = make_blobs(n_samples=300, centers=3, cluster_std=0.60,
                                        random_state=0)
            blob_fits = []
            for k in (3, 4):
                # label accuracy only where k is the true number of blobs
                step, model = _compare(f"blobs k={k}", blobs, k, seed, n_threads,
                                       y=blobs_y if k == 3 else None)
                steps.append(step)
                blob_fits.append((k, model))

            digits = load_digits()
            digits_step, digits_fit = _compare("digits k=10", digits.data, 10, seed, n_threads,
                                               y=digits.target)
            steps.append(digits_step)

            img = load_sample_image("china.jpg")
            pixels = (img / 255.0).reshape(-1, 3)
            img_step, img_fit = _compare("china.jpg 64 colors", pixels, 64, seed, n_threads)
            steps.append(img_step)
            compressed = np.clip(img_fit.cluster_centers_[img_fit.labels_], 0, 1).reshape(img.shape)

        for s in steps:  # ndarray -> list, so the result is plain data
            if "fastkm_mapping" in s:
                s["fastkm_mapping"] = [int(v) for v in s["fastkm_mapping"]]
        steps_by_name = {s["name"]: s for s in steps}

        _draw_figure(out.file, blobs=blobs, blob_fits=blob_fits, digits_fit=digits_fit,
                     digits_step=digits_step, img=img, img_compressed=compressed,
                     img_step=img_step, steps_by_name=steps_by_name, n_threads=n_threads)
        out.commit()
    except BaseException:
        out.discard()
        raise

    result = {
        "out_path": out.path,
        "n_threads": n_threads,
        "seed": seed,
        "versions": {"fastkm": fastkm.__version__, "sklearn": sklearn.__version__},
        "steps": steps,
    }
    result["summary"] = format_summary(result)
    return result
