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
window size, and the same as ``fastkm.dask.KMeans`` on the same rows.
"""
import mmap
import types
import warnings

import numpy as np

from fastkm import _threads
from fastkm._compat import ConvergenceWarning
from fastkm._dispatch import elkan, hamerly, lloyd, seeding, seeding_dot
from fastkm._kernels import layout, stats
from fastkm._kernels.reduce import BlockSums
from fastkm._validation import check_array, check_random_state, check_sample_weight
from fastkm.kmeans import _policy
from fastkm.kmeans._core import same_clustering
from fastkm.kmeans._pieces import (
    FAR_ROWS,
    IterResult,
    column_nodes,
    merge_far,
    piece_far,
    piece_partials,
    run_pieces,
    unpack,
    variance_from_nodes,
)
from fastkm.kmeans._scalable import MemorySource, kmeans_parallel
from fastkm.kmeans._solver import ElkanStep, ExponionStep, HamerlyStep
from fastkm.kmeans._tree import block_rows, tree_sum, tree_total

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


def _region(kind, units, items, n_threads):
    return _threads.region(kind, units, items, n_threads)


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


# ---------------------------------------------------------------- solver steps by windows


class _Windowed:
    """A solver step (``_solver``) run window by window: the step's own kernel
    on each window, per-block partials in the fixed tree (``_pieces``)."""

    kind = "lloyd"

    def __init__(self, src, w, centers, n_threads):
        self.src, self.w, self.n_threads = src, w, n_threads
        self.k, self.d = centers.shape
        self.win = list(src.layout())
        self.win_sums = [BlockSums(e - s, self.k, self.d, src.block) for _, s, e in self.win]
        self.shift = np.zeros(self.k)
        self._bounds()
        self._prepare(centers)

    def _bounds(self):
        pass

    def _prepare(self, centers):
        pass

    def centers_moved(self, old, new):
        pass

    def _kernel(self, Xw, ww, centers, lab, sums, first, s, e, r):
        return lloyd.lloyd_iter(Xw, ww, centers, lab, sums, r)

    def iterate(self, centers, labels, first):
        nodes, fars, changed = [], [], 0
        for (b0, s, e, Xw), sums in zip(self.src.windows(), self.win_sums):
            ww, lab = self.w[s:e], labels[s:e]
            kind = self.kind + ("-first" if first and self.kind != "lloyd" else "")
            r = _region(kind, (e - s) * self.k * self.d, sums.n_blocks, self.n_threads)
            changed += self._kernel(Xw, ww, centers, lab, sums, first, s, e, r)
            _threads.record(r)
            part, (td, tr) = piece_partials(Xw, ww, centers, lab, sums, b0, self._nt(Xw))
            nodes += part
            fars.append(piece_far(Xw, ww, lab, td, tr, s, FAR_ROWS))
        merged, inertia = unpack(tree_total(nodes, self.src.n_blocks), self.k, self.d)
        return IterResult(merged, inertia, merge_far(fars, FAR_ROWS), changed)

    def _nt(self, Xw):
        return _threads.threads_for("inertia", Xw.size, self.n_threads)


class _WindowedHamerly(_Windowed):
    kind = "hamerly"
    _prepare = HamerlyStep._prepare
    _extra = HamerlyStep._extra
    centers_moved = HamerlyStep.centers_moved

    def _bounds(self):
        self.upper = np.empty(self.src.n)
        self.lower = np.empty(self.src.n)

    def _kernel(self, Xw, ww, centers, lab, sums, first, s, e, r):
        return hamerly.hamerly_iter(Xw, ww, centers, lab, sums, self.half_sep, self.shift, first,
                                    self.upper[s:e], self.lower[s:e], r, **self._extra())


class _WindowedExponion(_WindowedHamerly):
    kind = "exponion"
    _prepare = ExponionStep._prepare
    _extra = ExponionStep._extra


class _WindowedElkan(_WindowedHamerly):
    kind = "elkan"
    _prepare = ElkanStep._prepare
    centers_moved = ElkanStep.centers_moved

    def _bounds(self):
        self.upper = np.empty(self.src.n)
        self.lower = np.empty((self.src.n, self.k), dtype=self.src.dtype)

    def _kernel(self, Xw, ww, centers, lab, sums, first, s, e, r):
        return elkan.elkan_iter(Xw, ww, centers, lab, sums, self.half_cc, self.half_sep,
                                self.shift, first, self.upper[s:e], self.lower[s:e], r)


WINDOWED = {"lloyd": _Windowed, "hamerly": _WindowedHamerly, "exponion": _WindowedExponion,
            "elkan": _WindowedElkan}


class _StreamOps:
    """``run_pieces``' operations over the windows of one run."""

    def __init__(self, src, w, centers, algorithm, labels, n_threads):
        self.src, self.w, self.labels, self.n_threads = src, w, labels, n_threads
        self.n_samples = src.n
        self.step = WINDOWED[algorithm](src, w, centers, n_threads)

    def iterate(self, centers, first):
        return self.step.iterate(centers, self.labels, first)

    def centers_moved(self, old, new):
        self.step.centers_moved(old, new)

    def farthest(self, centers, m):
        fars = []
        for _, s, e, Xw in self.src.windows():
            dist = np.empty(e - s)
            stats.distances_to_assigned(Xw, centers, self.labels[s:e], dist,
                                        _threads.threads_for("relocate", Xw.size, self.n_threads))
            mm = min(m, dist.size)
            # every row at or beyond the mm-th largest distance (ties included),
            # farthest first, the lower row first on ties
            kth = np.partition(dist, dist.size - mm)[dist.size - mm]
            top = np.flatnonzero(dist >= kth)
            top = top[np.lexsort((top, -dist[top]))][:mm]
            fars.append(piece_far(Xw, self.w[s:e], self.labels[s:e], dist[top][None, :],
                                  top[None, :], s, mm))
        return merge_far(fars, m)

    def final(self, centers):
        return self.step.iterate(centers, self.labels, False).inertia


# ---------------------------------------------------------------- seeding


class StreamSource(MemorySource):
    """k-means|| passes (``_scalable``) over the windows of a memory-mapped X."""

    def __init__(self, src, w, n_clusters, n_threads):
        self.src = src
        self.w = w
        self.inverse = None
        self.n = src.n
        self.block = block_rows(n_clusters, src.d)
        self.n_blocks = max(1, -(-self.n // self.block))
        self.n_threads = n_threads
        self.closest = np.full(self.n, np.inf)
        self.owner = np.zeros(self.n, dtype=np.int32)

    def rows(self, idx):
        return self.src.take(idx)

    def lower(self, candidates, offset):
        for _, s, e, Xw in self.src.windows():
            self._lower(Xw, candidates, self.closest[s:e], self.owner[s:e], offset)
        return self.potentials()


class _PlusPlusPasses:
    """The two passes of one greedy k-means++ step over the windows: the
    candidates' per-block potentials, then D^2 lowered to the chosen one. The
    kernels of the in-memory seeding, without its pruning (exact either way),
    so that only D^2 is kept per row."""

    def __init__(self, src, w, n_clusters, n_trials, n_threads):
        self.src, self.w, self.n_threads = src, w, n_threads
        self.dot = src.d > layout.FEW_FEATURES and \
            n_trials <= seeding_dot.MAX_CANDIDATES_PER_PASS
        self.closest = np.full(src.n, np.inf)
        self.block_pot = np.empty(src.n_blocks)
        self.gap = np.zeros(n_clusters)

    def _window_scratch(self, Xw, m):
        n = Xw.shape[0]
        nb = -(-n // self.src.block)
        nt = _threads.threads_for("norms", Xw.size, self.n_threads)
        return (stats.row_sq_norms(Xw, nt), np.zeros(n, dtype=np.int32), np.full(n, np.inf),
                np.empty((m, nb)), np.empty((m, n), dtype=Xw.dtype), np.empty(n, dtype=np.int32),
                np.empty(nb, dtype=np.intp))

    def score(self, candidates):
        """(n_trials, n_blocks) potentials of the candidates."""
        m = candidates.shape[0]
        out = np.empty((m, self.src.n_blocks))
        for b0, s, e, Xw in self.src.windows():
            r = _region("seed-score", Xw.size * m, -(-(e - s) // self.src.block), self.n_threads)
            if self.dot:
                xx, owner, radius, pot, d2, rows, n_rows = self._window_scratch(Xw, m)
                seeding_dot.dot_potentials(Xw, self.w[s:e], self.closest[s:e], xx, candidates,
                                           owner, radius, self.gap, pot, d2, rows, n_rows,
                                           self.src.block, r, False)
            else:
                pot = np.empty((m, -(-(e - s) // self.src.block)))
                seeding.candidate_potentials(Xw, self.w[s:e], self.closest[s:e], candidates, pot,
                                             self.src.block, r)
            _threads.record(r)
            out[:, b0:b0 + pot.shape[1]] = pot
        return out

    def lower(self, center, c):
        """Lower D^2 to ``center`` (the c-th); the new total potential."""
        for b0, s, e, Xw in self.src.windows():
            nb = -(-(e - s) // self.src.block)
            bp = self.block_pot[b0:b0 + nb]
            r = _region("seed-lower", Xw.size, nb, self.n_threads)
            if self.dot:
                xx, owner, radius, pot, d2, rows, n_rows = self._window_scratch(Xw, 1)
                seeding_dot.dot_potentials(Xw, self.w[s:e], self.closest[s:e], xx, center[None, :],
                                           owner, radius, self.gap, pot, d2, rows, n_rows,
                                           self.src.block, r, False)
                slack = np.zeros(e - s)
                seeding_dot.lower_to(self.closest[s:e], owner, radius, slack, 1.0, d2, rows,
                                     n_rows, 0, c, pot, bp, self.src.block, r)
            else:
                seeding.update_closest(Xw, self.w[s:e], self.closest[s:e], center, bp,
                                       self.src.block, r)
            _threads.record(r)
        return float(tree_sum(self.block_pot))


def kmeans_plusplus_streamed(src, w, n_clusters, random_state, n_threads):
    """Greedy k-means++ over the windows, with the in-memory seeding's draws:
    the first row by weight, then ``2 + int(ln k)`` candidates per center by
    D^2, the one that lowers the potential most kept."""
    n_trials = 2 + int(np.log(n_clusters))
    passes = _PlusPlusPasses(src, w, n_clusters, n_trials, n_threads)
    centers = np.empty((n_clusters, src.d), dtype=src.dtype)
    cand_ids = np.empty(n_trials, dtype=np.intp)
    p = w.astype(np.float64)
    centers[0] = src.take([random_state.choice(p.shape[0], p=p / p.sum())])[0]
    pot = passes.lower(centers[0], 0)
    for c in range(1, n_clusters):
        targets = random_state.uniform(size=n_trials) * pot
        seeding.sample_d2(w, passes.closest, passes.block_pot, src.block, targets, cand_ids)
        candidates = src.take(cand_ids)
        cand_pot = passes.score(candidates)
        best = int(np.argmin([tree_sum(row) for row in cand_pot]))
        centers[c] = candidates[best]
        pot = passes.lower(centers[c], c)
    return centers


def init_streamed(src, w, n_clusters, init, random_state, n_threads):
    """Initial centers of one run, in the fit's dtype."""
    if isinstance(init, str) and init == "k-means++":
        return kmeans_plusplus_streamed(src, w, n_clusters, random_state, n_threads)
    if isinstance(init, str) and init == "k-means||":
        source = StreamSource(src, w, n_clusters, n_threads)
        return kmeans_parallel(source, n_clusters, random_state, n_threads)[0]
    if isinstance(init, str) and init == "random":
        p = w.astype(np.float64)
        seeds = random_state.choice(src.n, size=n_clusters, replace=False, p=p / p.sum())
        return src.take(seeds)
    if callable(init):
        centers = check_array(init(src.X, n_clusters, random_state=random_state),
                              dtype=src.dtype, name="init(...) result")
        if centers.shape != (n_clusters, src.d):
            raise ValueError(f"The init callable returned centers of shape {centers.shape}; "
                             f"expected ({n_clusters}, {src.d}).")
        return centers
    return np.array(init, dtype=src.dtype, order="C")


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
        ops = _StreamOps(src, w, centers, algorithm, labels, n_threads)
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
        r = _region("assign", Xw.shape[0] * C.size, -(-(e - s) // layout.CHUNK_ROWS),
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
        r = _region("transform", Xw.shape[0] * C.size, e - s, est._resolved_threads())
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
        r = _region("assign", Xw.shape[0] * C.size, -(-(e - s) // layout.CHUNK_ROWS), n_threads)
        lloyd.assign_labels(Xw, C, lab, r)
        _threads.record(r)
        nb = -(-(e - s) // src.block)
        stats.inertia(Xw, w[s:e], C, lab, parts[b0:b0 + nb], src.block,
                      _threads.threads_for("inertia", Xw.size, n_threads))
    return -float(tree_sum(parts))
