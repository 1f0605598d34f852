"""Out-of-core fits: ``KMeans.fit``, ``predict``, ``transform`` and ``score``
on X memory-mapped from disk (``np.memmap``, ``np.load(path, mmap_mode='r')``),
read in windows of whole canonical row blocks, never copied whole.

X is read where it lies when it is float32/float64 in C order (the page cache
holds its pages; they are file-backed, not the process's own memory); any
other dtype, byte order or layout is converted one window at a time into one
reused buffer. Nothing else of X's size is made: no deduplication, no spatial
reordering, no mean-centring (the rows are fitted as stored, as
``copy_x=False`` fits them in memory). The fit's own memory is O(k x d) per
canonical block (``_tree.block_rows``: at most 1/32 of the block's rows), one
window, and per-row state:

- every algorithm: the labels (4 bytes a row) and the weights (X's dtype);
- 'hamerly', 'exponion': two float64 bounds (16 bytes a row);
- 'elkan': one float64 and n_clusters bounds in X's dtype a row (capped as in
  memory: beyond 1 GiB it runs 'hamerly');
- seeding: 'k-means||' one float64 D^2 and one int32 candidate a row,
  'k-means++' one float64 D^2 a row (and two passes over X per center: prefer
  'k-means||' on data that does not fit in RAM).

The windows are pieces of a fit in the sense of ``_pieces``: per-block sums
in a fixed tree, so the result is the same bits for any thread count and any
window size, and the same as ``fastkm.dask.KMeans`` on the same rows. This
module reads the windows and provides the estimator's methods; the solver
steps and the seeding over windows are in ``_windowed``.
"""
import mmap
import types
import warnings

import numpy as np

from fastkm import _threads
from fastkm._compat import ConvergenceWarning
from fastkm._dispatch import lloyd
from fastkm._kernels import layout, stats
from fastkm._validation import check_random_state, check_sample_weight
from fastkm.kmeans import _policy
from fastkm.kmeans._core import same_clustering
from fastkm.kmeans._pieces import column_nodes, run_pieces, variance_from_nodes
from fastkm.kmeans._tree import block_rows, tree_sum, tree_total
from fastkm.kmeans._windowed import StreamOps, init_streamed

WINDOW_BYTES = 64 << 20     # a converted window holds at most this much, at least one block


def is_memmap(X):
    """True for an ndarray over a memory map: an ``np.memmap`` with its file
    mapped, or any view whose chain of bases (through buffer objects, as
    ``np.frombuffer`` makes) reaches an ``mmap.mmap``."""
    if not isinstance(X, np.ndarray):
        return False
    obj, depth = X, 0
    while obj is not None and depth < 64:
        if isinstance(obj, mmap.mmap):
            return True
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
        depth += 1
    return False


def fit_dtype(X):
    """float32 stays float32 (any byte order); everything else is fitted in float64."""
    return np.dtype(np.float32) if X.dtype.kind == "f" and X.dtype.itemsize == 4 else \
        np.dtype(np.float64)


class RowSource:
    """The rows of a memory-mapped X as C-contiguous float arrays, window by
    window: views of X itself where it is already float32/float64 in C order,
    else converted into one reused buffer."""

    def __init__(self, X, dtype, block, n_threads):
        self.X = X
        self.n, self.d = X.shape
        self.dtype = np.dtype(dtype)
        self.direct = X.dtype == self.dtype and X.flags.c_contiguous and X.dtype.isnative
        self.block = block
        self.n_blocks = max(1, -(-self.n // block))
        row_bytes = max(1, self.d * self.dtype.itemsize)
        per = max(1, min(self.n_blocks, max(n_threads, WINDOW_BYTES // (block * row_bytes))))
        self.blocks_per_window = per
        self._buf = None

    def layout(self):
        """(first block, first row, end row) of every window."""
        step = self.blocks_per_window * self.block
        for start in range(0, self.n, step):
            yield start // self.block, start, min(self.n, start + step)

    def read(self, start, end):
        """Rows start..end as a C-contiguous array of the fit's dtype."""
        if self.direct:
            return np.asarray(self.X[start:end])
        if self._buf is None:
            rows = min(self.n, self.blocks_per_window * self.block)
            self._buf = np.empty((rows, self.d), dtype=self.dtype)
        out = self._buf[:end - start]
        np.copyto(out, self.X[start:end], casting="unsafe")
        return out

    def windows(self):
        """(first block, first row, end row, rows) of every window, in order."""
        for b0, start, end in self.layout():
            yield b0, start, end, self.read(start, end)

    def take(self, idx):
        """Rows ``idx`` (sorted reads), in the fit's dtype."""
        idx = np.asarray(idx, dtype=np.intp)
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.shape[0], self.d), dtype=self.dtype)
        out[order] = self.X[idx[order]]
        return out


def check_finite_and_tolerance(src, tol, n_threads):
    """One pass (two with tol > 0) over the windows: NaN/infinity raise, and the
    tolerance is tol times the mean column variance, from per-block sums."""
    nodes = []
    for b0, _, _, Xw in src.windows():
        if not stats.all_finite(Xw, _threads.threads_for("finite", Xw.size, n_threads)):
            what = "NaN" if np.isnan(Xw).any() else f"infinity or a value too large for {Xw.dtype}"
            raise ValueError(f"Input X contains {what}.")
        if tol > 0:
            nodes += column_nodes(Xw, None, src.block, b0, n_threads)
    if tol == 0:
        return 0.0
    mean = tree_total(nodes, src.n_blocks) / src.n
    nodes = []
    for b0, _, _, Xw in src.windows():
        nodes += column_nodes(Xw, mean, src.block, b0, n_threads)
    return variance_from_nodes(nodes, src.n_blocks, src.n) * tol


# ---------------------------------------------------------------- the estimator's methods


def _check_memmap(X):
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D memory-mapped array for X; got shape {X.shape}.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must be numeric; got a memory map of dtype {X.dtype}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"Found array with shape {X.shape}; KMeans needs at least one sample "
                         "and one feature.")


def fit(est, X, sample_weight):
    """``est.fit(X)`` for a memory-mapped X: sets the fitted attributes, returns est."""
    _check_memmap(X)
    n_threads = est._resolved_threads()
    dtype = fit_dtype(X)
    p = est._check_params(types.SimpleNamespace(shape=X.shape, dtype=dtype), n_threads)
    w = check_sample_weight(sample_weight, X.shape[0], dtype)
    algorithm = "lloyd" if (est.algorithm == "elkan" and p.n_clusters == 1) else est.algorithm
    algorithm = _policy.choose_algorithm(algorithm, X.shape[0], X.shape[1], p.n_clusters,
                                         dtype.itemsize)
    src = RowSource(X, dtype, block_rows(p.n_clusters, X.shape[1]), n_threads)
    tol = check_finite_and_tolerance(src, p.tol, n_threads)
    random_state = check_random_state(est.random_state)
    best = None
    labels = np.full(src.n, -1, dtype=np.int32)
    for _ in range(p.n_init):
        centers = init_streamed(src, w, p.n_clusters, p.init, random_state, n_threads)
        if est.verbose:
            print("Initialization complete")
        labels.fill(-1)
        ops = StreamOps(src, w, centers, algorithm, labels, n_threads)
        centers, inertia, n_iter = run_pieces(ops, centers, p.max_iter, tol, est.verbose)
        if best is None or (inertia < best[1]
                            and not same_clustering(labels, best[0], p.n_clusters)):
            best = (labels.copy() if p.n_init > 1 else labels, inertia, centers, n_iter)
    labels, inertia, centers, n_iter = best
    n_distinct = int(np.count_nonzero(np.bincount(labels, minlength=p.n_clusters)))
    if n_distinct < p.n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters "
            f"({p.n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning, stacklevel=3,
        )
    est.cluster_centers_ = centers
    est.labels_ = labels
    est.inertia_ = float(inertia)
    est.n_iter_ = int(n_iter)
    est.algorithm_ = algorithm
    est.n_features_in_ = X.shape[1]
    if hasattr(est, "feature_names_in_"):
        del est.feature_names_in_
    return est


def _test_source(est, X):
    """The windows of a memory-mapped X to predict on, in the centers' dtype."""
    est._check_is_fitted()
    _check_memmap(X)
    if getattr(est, "feature_names_in_", None) is not None:
        warnings.warn(f"X does not have valid feature names, but {type(est).__name__} was "
                      "fitted with feature names", UserWarning, stacklevel=3)
    if X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    k, d = est.cluster_centers_.shape
    return RowSource(X, est.cluster_centers_.dtype, block_rows(k, d), est._resolved_threads())


def _checked_windows(src):
    for b0, s, e, Xw in src.windows():
        if not stats.all_finite(Xw):
            raise ValueError("Input X contains NaN or infinity.")
        yield b0, s, e, Xw


def predict(est, X):
    """Labels of a memory-mapped X, window by window."""
    src = _test_source(est, X)
    labels = np.empty(src.n, dtype=np.int32)
    C = est.cluster_centers_
    for _, s, e, Xw in _checked_windows(src):
        r = _threads.region("assign", Xw.shape[0] * C.size, -(-(e - s) // layout.CHUNK_ROWS),
                    est._resolved_threads())
        lloyd.assign_labels(Xw, C, labels[s:e], r)
        _threads.record(r)
    return labels


def transform(est, X):
    """Distances of a memory-mapped X to the centers, window by window."""
    src = _test_source(est, X)
    C = est.cluster_centers_
    out = np.empty((src.n, C.shape[0]), dtype=C.dtype)
    for _, s, e, Xw in _checked_windows(src):
        r = _threads.region("transform", Xw.shape[0] * C.size, e - s, est._resolved_threads())
        lloyd.pairwise_distances(Xw, C, out[s:e], r)
        _threads.record(r)
    return out


def score(est, X, sample_weight):
    """-inertia of a memory-mapped X, window by window (per-block sums in the tree)."""
    src = _test_source(est, X)
    C = est.cluster_centers_
    w = check_sample_weight(sample_weight, src.n, C.dtype)
    n_threads = est._resolved_threads()
    parts = np.empty(src.n_blocks)
    for b0, s, e, Xw in _checked_windows(src):
        lab = np.empty(e - s, dtype=np.int32)
        r = _threads.region("assign", Xw.shape[0] * C.size, -(-(e - s) // layout.CHUNK_ROWS),
                            n_threads)
        lloyd.assign_labels(Xw, C, lab, r)
        _threads.record(r)
        nb = -(-(e - s) // src.block)
        stats.inertia(Xw, w[s:e], C, lab, parts[b0:b0 + nb], src.block,
                      _threads.threads_for("inertia", Xw.size, n_threads))
    return -float(tree_sum(parts))
