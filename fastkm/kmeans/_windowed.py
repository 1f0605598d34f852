"""Solver steps and seeding over the windows of a memory-mapped X
(``_outofcore.RowSource``): the in-memory step classes' kernels run window by
window with per-block partials in the fixed tree (``_pieces``), k-means||
passes (``_scalable``) and greedy k-means++ with only D^2 kept per row."""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import elkan, hamerly, lloyd, seeding, seeding_dot
from fastkm._kernels import layout, stats
from fastkm._kernels.reduce import BlockSums
from fastkm._validation import check_init_result
from fastkm.kmeans._pieces import (
    FAR_ROWS,
    IterResult,
    merge_far,
    piece_far,
    piece_partials,
    unpack,
)
from fastkm.kmeans._scalable import MemorySource, kmeans_parallel
from fastkm.kmeans._solver import ElkanStep, ExponionStep, HamerlyStep
from fastkm.kmeans._tree import block_rows, tree_sum, tree_total


def _region(kind, units, items, n_threads):
    return _threads.region(kind, units, items, n_threads)


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

    def iterate(self, centers, labels, first, with_stats=False):
        nodes, fars, changed = [], [], 0
        for (b0, s, e, Xw), sums in zip(self.src.windows(), self.win_sums):
            ww, lab = self.w[s:e], labels[s:e]
            kind = self.kind + ("-first" if first and self.kind != "lloyd" else "")
            r = _region(kind, (e - s) * self.k * self.d, sums.n_blocks, self.n_threads)
            changed += self._kernel(Xw, ww, centers, lab, sums, first, s, e, r)
            _threads.record(r)
            part, far = piece_partials(Xw, ww, centers, lab, sums, b0, self._nt(Xw),
                                       with_stats)
            nodes += part
            if with_stats:
                fars.append(piece_far(Xw, ww, lab, *far, s, FAR_ROWS))
        merged, inertia = unpack(tree_total(nodes, self.src.n_blocks), self.k, self.d)
        if not with_stats:
            return IterResult(merged, None, None, changed)
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


class StreamOps:
    """``run_pieces``' operations over the windows of one run."""

    def __init__(self, src, w, centers, algorithm, labels, n_threads):
        self.src, self.w, self.labels, self.n_threads = src, w, labels, n_threads
        self.n_samples = src.n
        self.step = WINDOWED[algorithm](src, w, centers, n_threads)

    def iterate(self, centers, first, with_stats=False):
        return self.step.iterate(centers, self.labels, first, with_stats)

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
        return self.step.iterate(centers, self.labels, False, True).inertia


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
        return check_init_result(init(src.X, n_clusters, random_state=random_state), n_clusters,
                                 src.d, src.dtype)
    return np.array(init, dtype=src.dtype, order="C")


