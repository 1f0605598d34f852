"""init='k-means||' (Bahmani et al. 2012, "Scalable K-Means++"): a few rounds
that each draw about l = oversampling x k candidates at once by their D^2,
then the candidates, weighted by the input weight nearest to each, reclustered
into k centers by fastkm's weighted greedy k-means++ and Lloyd iterations.

``kmeans_parallel`` is the algorithm over a *source* of rows: an in-memory fit
(``MemorySource``, on a ``FitData``), an out-of-core one (``_outofcore``) and a
Dask one (``fastkm.dask``) provide the same few passes, so the three give the
same candidates, bit for bit, from the same rows and seed:

- every row's D^2 and nearest candidate depend on that row alone
  (``scalable.lower_closest``);
- round t draws row i when u(key, t, i) potential < l w_i D_i^2, with u a
  Philox uniform of the global row index (``scalable.sample_rows``): no
  stream is consumed in an order that depends on threads or chunks;
- the potential, the total weight and the candidates' weights are per-block
  partials over canonical row blocks (``_tree.block_rows``) summed in the
  fixed tree of ``_tree``.

Deduplicated or reordered rows (``FitData``) are walked as the input's rows,
so the draws are those of the input itself.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import scalable
from fastkm.kmeans._tree import TreeSum, block_rows, tree_sum, tree_total

ROUNDS = 5                  # sampling rounds (the paper's r)
OVERSAMPLING = 2.0          # l = OVERSAMPLING x n_clusters candidates expected per round
RECLUSTER_MAX_ITER = 50     # weighted Lloyd iterations on the candidates, at most


def find_in_block(weights, local):
    """Row of a block (its ``weights``) where the running weight first exceeds
    ``local``; past the end (rounding), the block's last row of positive weight."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    i = int(np.searchsorted(cum, local, side="right"))
    if i >= cum.shape[0]:
        positive = np.flatnonzero(np.asarray(weights) > 0)
        i = int(positive[-1]) if positive.size else cum.shape[0] - 1
    return i


def walk_blocks(totals, target):
    """(block, remainder): the block where the running total of ``totals``
    first exceeds ``target``, and ``target`` less the blocks before it."""
    cum = 0.0
    last = 0
    for b, t in enumerate(totals):
        t = float(t)
        if t > 0:
            last = b
        if cum + t > target:
            return b, target - cum
        cum += t
    return last, float(totals[last])


class MemorySource:
    """k-means|| passes over a ``FitData``: D^2 per row of X, draws and weights
    over the input's rows (mapped onto X's rows when deduplicated or reordered)."""

    def __init__(self, data, n_clusters, n_threads):
        self.X = data.X
        self.w = data.input_weights
        self.inverse = data.input_rows
        self.data = data
        self.n = self.w.shape[0]
        self.block = block_rows(n_clusters, self.X.shape[1])
        self.n_blocks = max(1, -(-self.n // self.block))
        self.n_threads = n_threads
        self.closest = np.full(self.X.shape[0], np.inf)
        self.owner = np.zeros(self.X.shape[0], dtype=np.int32)

    def _threads(self, units):
        return _threads.threads_for("kmeans||-rows", units, self.n_threads)

    def weight_totals(self):
        out = np.empty(self.n_blocks)
        scalable.block_potentials(self.w, None, None, self.block, out, self._threads(self.n))
        return out

    def find_row(self, block, local):
        rows = slice(block * self.block, (block + 1) * self.block)
        return block * self.block + find_in_block(self.w[rows], local)

    def rows(self, idx):
        return np.ascontiguousarray(self.X[self.data.row_of_input(np.asarray(idx))])

    def lower(self, candidates, offset):
        self._lower(self.X, candidates, self.closest, self.owner, offset)
        return self.potentials()

    def _lower(self, X, candidates, closest, owner, offset):
        n, d = X.shape
        units = n * candidates.shape[0] * d
        r = _threads.region("kmeans||-lower", units, -(-n // 256), self.n_threads)
        scalable.lower_closest(X, candidates, closest, owner, offset, r)
        _threads.record(r)

    def potentials(self):
        out = np.empty(self.n_blocks)
        scalable.block_potentials(self.w, self.closest, self.inverse, self.block, out,
                                  self._threads(self.n))
        return out

    def sample(self, potential, oversampling, key, round_):
        picked = np.empty(self.n, dtype=np.uint8)
        scalable.sample_rows(self.w, self.closest, self.inverse, potential, oversampling,
                             key[0], key[1], round_, 0, picked, self._threads(self.n))
        idx = np.flatnonzero(picked)
        return idx, self.rows(idx)

    def candidate_weights(self, m):
        """The input weight nearest to each of the m candidates, as tree nodes."""
        acc = TreeSum()
        for b in range(self.n_blocks):
            rows = slice(b * self.block, min(self.n, (b + 1) * self.block))
            owner = self.owner[rows] if self.inverse is None else \
                self.owner[self.inverse[rows]]
            w64 = np.asarray(self.w[rows], dtype=np.float64)
            acc.add(b, np.bincount(owner, weights=w64, minlength=m))
        return acc.nodes()


def recluster(candidates, weights, n_clusters, random_state, n_threads):
    """k centers from the weighted candidates: greedy k-means++ and at most
    RECLUSTER_MAX_ITER weighted Lloyd iterations (an exact fastkm fit)."""
    from fastkm.kmeans import _core

    w = np.ascontiguousarray(weights, dtype=candidates.dtype)
    result = _core.fit(candidates, w, n_clusters, init="k-means++", n_init=1,
                       max_iter=RECLUSTER_MAX_ITER, tol=1e-4, random_state=random_state,
                       algorithm="auto", copy_x=True, verbose=0, n_threads=n_threads)
    return result.centers


def draw_key(random_state):
    """The 64-bit Philox key of one k-means|| run, from the run's random state."""
    k = random_state.randint(0, 2**32, size=2, dtype=np.uint32)
    return int(k[0]), int(k[1])


def kmeans_parallel(source, n_clusters, random_state, n_threads, rounds=ROUNDS,
                    oversampling=OVERSAMPLING, verbose=0):
    """k-means|| over ``source``: returns (centers, candidates, candidate weights)."""
    key = draw_key(random_state)
    totals = source.weight_totals()
    total = float(tree_sum(totals))
    first = source.find_row(*walk_blocks(totals, random_state.uniform() * total))
    chosen = [source.rows([first])]
    potential = float(tree_sum(source.lower(chosen[0], 0)))
    m = 1
    ell = float(oversampling) * n_clusters
    for t in range(1, rounds + 1):
        if not potential > 0.0:
            break  # every row sits on a candidate
        _, rows = source.sample(potential, ell, key, t)
        if verbose:
            print(f"k-means|| round {t}: {rows.shape[0]} candidates, potential {potential}")
        if rows.shape[0] == 0:
            continue
        chosen.append(rows)
        potential = float(tree_sum(source.lower(rows, m)))
        m += rows.shape[0]
    if m < n_clusters:
        # too few candidates (tiny or repetitive data): add input rows drawn by
        # weight, as one more round, so that their weights are counted too
        extra = [source.find_row(*walk_blocks(totals, random_state.uniform() * total))
                 for _ in range(n_clusters - m)]
        rows = source.rows(extra)
        chosen.append(rows)
        source.lower(rows, m)
        m += rows.shape[0]
    weights = tree_total(source.candidate_weights(m), source.n_blocks)
    candidates = np.ascontiguousarray(np.concatenate(chosen))
    centers = recluster(candidates, weights, n_clusters, random_state, n_threads)
    return centers, candidates, weights


def kmeans_parallel_data(data, n_clusters, random_state, n_threads, verbose=0):
    """k-means|| on a ``FitData``: centers in X's coordinates."""
    source = MemorySource(data, n_clusters, n_threads)
    return kmeans_parallel(source, n_clusters, random_state, n_threads, verbose=verbose)[0]
