"""Initial centers: greedy k-means++ (``kmeans_plusplus``), k-means||
(``_scalable``), 'random', a callable or an array.

Greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's local
trials) draws the same random numbers in the same order as scikit-learn. Its
O(n) work per step runs in the compiled kernels through one of two strategies:
``_DirectSeeding`` (few features: exact sums of squared differences over tile
layout) and ``_DotSeeding`` (many features: dot-product tiles with exact
pruning of the rows no candidate can bring nearer). Both keep each row's D^2
and per-block potentials; the draws walk the input's rows (``FitData``), so
that deduplicated, reordered data give the centers the input itself gives.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import seeding, seeding_dot
from fastkm._kernels import layout, stats
from fastkm.kmeans import _policy


def seeding_slack(x_sq, n_features, dtype):
    """Per-row rounding slack of the seeding's D^2, and the factor ``rel``: the
    pruning radius of row i is ``2 sqrt(D2_i rel + slack_i)`` (seeding_dot).

    A computed D^2 is within (d + 3) eps (||x_i||^2 + max_j ||x_j||^2) of the
    exact one; ``slack`` takes the kernels' rounding scale 8 (d + 4) times
    eps times that norm sum, plus the same scale times tiny for underflow, and
    ``rel = 1 + 4 eps`` covers the rounding of the stored D2_i. The proof that
    a row outside the radius keeps its D^2 bit for bit is in docs/design.md
    ("Exact pruning in the seeding").
    """
    info = np.finfo(dtype)
    scale = layout.rounding_scale(n_features)
    slack = scale * (float(info.eps) * (x_sq + x_sq.max()) + float(info.tiny))
    return slack, 1.0 + 4.0 * float(info.eps)


class _Draws:
    """Where D^2 sampling walks: the input's rows (possibly mapped onto X's
    distinct, reordered rows), their weights, and the block potentials of that
    walk."""

    def __init__(self, data, block_pot, rows_per_block, n_threads):
        self.data = data
        self.weights = data.input_weights
        self.inverse = data.input_rows
        if self.inverse is None:
            self.pot, self.rows_per_block = block_pot, rows_per_block
        else:
            n_blocks, self.rows_per_block = layout.block_layout(self.inverse.shape[0])
            self.pot = np.empty(n_blocks)
        self.n_threads = n_threads

    def total(self, pot, closest):
        """The potential of the walk, given X's rows' total ``pot`` and D^2."""
        if self.inverse is None:
            return pot
        r = _threads.region("seed-map", self.inverse.shape[0], self.pot.shape[0],
                            self.n_threads)
        pot = seeding.mapped_potentials(self.weights, self.inverse, closest, self.pot,
                                        self.rows_per_block, r)
        _threads.record(r)
        return pot

    def sample(self, closest, targets, out):
        seeding.sample_d2(self.weights, closest, self.pot, self.rows_per_block, targets, out,
                          self.inverse)


class _DirectSeeding:
    """Few features: D^2 as sums of squared differences, X in tile layout."""

    def __init__(self, data, n_clusters, n_trials, n_threads):
        X = data.X
        n, d = X.shape
        self.X, self.w = X, data.weights
        self.n_blocks, self.rows_per_block = layout.block_layout(n)
        self.n_threads = n_threads
        self.units = n * d
        self.tiles = data.tiles
        if self.tiles is None:
            # transpose X into the kernels' tile layout once, not once per call
            from fastkm.kmeans._prepare import tile_layout

            self.tiles = tile_layout(X, n_threads)
        self.closest = np.full(n, np.inf)
        self.block_pot = np.empty(self.n_blocks)
        self.cand_pot = np.empty((n_trials, self.n_blocks))
        # rows in spatial order: a step skips the chunks a center cannot reach
        self.bounds = seeding.chunk_bounds(self.tiles, n) if data.sorted_rows else None

    def first(self, center):
        return self._lower(center)

    def score(self, candidates, centers, c):
        r = _threads.region("seed-score", self.units * candidates.shape[0], self.n_blocks,
                            self.n_threads)
        seeding.candidate_potentials(self.X, self.w, self.closest, candidates, self.cand_pot,
                                     self.rows_per_block, r, self.tiles, self.bounds)
        _threads.record(r)
        return self.cand_pot

    def choose(self, best, center, c):
        return self._lower(center)

    def _lower(self, center):
        r = _threads.region("seed-lower", self.units, self.n_blocks, self.n_threads)
        pot = seeding.update_closest(self.X, self.w, self.closest, center, self.block_pot,
                                     self.rows_per_block, r, self.tiles, self.bounds)
        _threads.record(r)
        return pot


class _DotSeeding:
    """Many features: D^2 through dot products of 8 rows x 8 candidates, with
    exact pruning: a row is evaluated only while some candidate may come
    nearer to it than its own center (``seeding_dot``)."""

    def __init__(self, data, n_clusters, n_trials, n_threads):
        X = data.X
        n, d = X.shape
        self.X, self.w = X, data.weights
        self.n_blocks, self.rows_per_block = layout.block_layout(n)
        self.n_threads = n_threads
        self.units = n * d
        self.closest = np.full(n, np.inf)
        self.block_pot = np.empty(self.n_blocks)
        self.cand_pot = np.empty((n_trials, self.n_blocks))
        self.x_sq = stats.row_sq_norms(X, _threads.threads_for("norms", X.size, n_threads))
        self.d2 = np.empty((n_trials, n), dtype=X.dtype)  # as scikit-learn's
        # the chosen center nearest to each row, the radius beyond which a
        # candidate cannot get nearer, and which rows the last pass evaluated
        self.owner = np.zeros(n, dtype=np.int32)
        self.radius = np.full(n, np.inf)  # the first center evaluates every row
        self.ev_rows = np.empty(n, dtype=np.int32)
        self.ev_counts = np.empty(self.n_blocks, dtype=np.intp)
        self.slack, self.rel = seeding_slack(self.x_sq, d, X.dtype)
        self.gap = np.zeros(n_clusters)  # lower bound of min_t ||cand_t - center_a||
        self.evaluated = n

    def first(self, center):
        # the candidates' machinery with one candidate
        one = np.empty((1, self.X.shape[0]), dtype=self.X.dtype)
        first_pot = self.block_pot[None, :]
        self._potentials(center[None, :], first_pot, one, True)
        return self._lower(one, 0, 0, first_pot)

    def score(self, candidates, centers, c):
        # prune when the last test left few rows to evaluate, and test again
        # every few steps (exact either way: the choice only costs time)
        prune = self.evaluated < _policy.SEED_PRUNE_BELOW * self.X.shape[0] or \
            c % _policy.SEED_RETEST == 0
        if prune:
            seeding_dot.center_gaps(candidates, centers, self.gap)
        count = self._potentials(candidates, self.cand_pot, self.d2, prune)
        if prune:
            self.evaluated = count
        return self.cand_pot

    def choose(self, best, center, c):
        return self._lower(self.d2, best, c, self.cand_pot)

    def _potentials(self, candidates, cand_pot, d2, prune):
        r = _threads.region("seed-dot", self.units * candidates.shape[0], self.n_blocks,
                            self.n_threads)
        count = seeding_dot.dot_potentials(
            self.X, self.w, self.closest, self.x_sq, candidates, self.owner, self.radius,
            self.gap, cand_pot, d2, self.ev_rows, self.ev_counts, self.rows_per_block, r, prune)
        _threads.record(r)
        return count

    def _lower(self, d2, t, c, cand_pot):
        r = _threads.region("seed-lower-dot", self.X.shape[0], self.n_blocks, self.n_threads)
        pot = seeding_dot.lower_to(self.closest, self.owner, self.radius, self.slack, self.rel,
                                   d2, self.ev_rows, self.ev_counts, t, c, cand_pot,
                                   self.block_pot, self.rows_per_block, r)
        _threads.record(r)
        return pot


def kmeans_plusplus_data(data, n_clusters, random_state, n_local_trials, n_threads):
    """Greedy k-means++ on a ``FitData``. Returns (centers in X's coordinates,
    indices of the input rows they were taken from)."""
    X = data.X
    n_features = X.shape[1]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    dot = (n_features > layout.FEW_FEATURES
           and n_local_trials <= seeding_dot.MAX_CANDIDATES_PER_PASS)
    strategy = (_DotSeeding if dot else _DirectSeeding)(data, n_clusters, n_local_trials,
                                                         n_threads)
    draws = _Draws(data, strategy.block_pot, strategy.rows_per_block, n_threads)
    centers = np.empty((n_clusters, n_features), dtype=X.dtype)
    indices = np.full(n_clusters, -1, dtype=np.intp)
    cand_ids = np.empty(n_local_trials, dtype=np.intp)

    p = draws.weights.astype(np.float64)
    center_id = random_state.choice(p.shape[0], p=p / p.sum())
    centers[0] = X[data.row_of_input(center_id)]
    indices[0] = center_id
    pot = draws.total(strategy.first(centers[0]), strategy.closest)
    for c in range(1, n_clusters):
        targets = random_state.uniform(size=n_local_trials) * pot
        draws.sample(strategy.closest, targets, cand_ids)
        candidates = X[data.row_of_input(cand_ids)]
        cand_pot = strategy.score(candidates, centers[:c], c)
        pots = cand_pot.sum(axis=1)  # n_blocks values per row, fixed order
        best = int(np.argmin(pots))
        centers[c] = candidates[best]
        indices[c] = cand_ids[best]
        pot = draws.total(strategy.choose(best, centers[c], c), strategy.closest)
    return centers, indices


def init_centers(data, n_clusters, init, random_state, n_threads):
    """Initial centers (in X's coordinates) for one run of a fit."""
    X, w = data.X, data.weights
    if isinstance(init, str) and init == "k-means++":
        centers, _ = kmeans_plusplus_data(data, n_clusters, random_state, None, n_threads)
    elif isinstance(init, str) and init == "k-means||":
        from fastkm.kmeans._scalable import kmeans_parallel_data

        centers = kmeans_parallel_data(data, n_clusters, random_state, n_threads)
    elif isinstance(init, str) and init == "random":
        p = w.astype(np.float64)
        seeds = random_state.choice(X.shape[0], size=n_clusters, replace=False, p=p / p.sum())
        centers = X[seeds]
    elif callable(init):
        from fastkm._validation import check_init_result

        centers = check_init_result(init(X, n_clusters, random_state=random_state), n_clusters,
                                    X.shape[1], X.dtype)
    else:
        centers = data.fit_centers(init)
    return np.array(centers, dtype=X.dtype, order="C")


def kmeans_plusplus(
    X, n_clusters, *, sample_weight=None, x_squared_norms=None, random_state=None,
    n_local_trials=None, n_threads=None,
):
    """Initial cluster centers by greedy k-means++ (as ``sklearn.cluster.kmeans_plusplus``).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The data to pick the centers from (not modified). Sparse input is read
        as CSR without densifying it (see ``KMeans``); the centers are dense.
    n_clusters : int
        Number of centers.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights: a row is drawn with probability proportional to
        its weight times its squared distance to the nearest chosen center.
    x_squared_norms : array-like of shape (n_samples,), default=None
        Accepted for scikit-learn compatibility; its length is checked, its
        values are not used (fastkm computes what it needs).
    random_state : int, RandomState instance or None, default=None
        Seed of the draws; the same seed gives scikit-learn's draws in the same
        order, and the same centers for any number of threads.
    n_local_trials : int, default=None
        Candidates drawn per center; the one that lowers the potential most is
        kept. None: ``2 + int(ln(n_clusters))``.
    n_threads : int, default=None
        As in ``KMeans``.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        In X's dtype (float32 stays float32, else float64).
    indices : ndarray of shape (n_clusters,)
        Row of X each center was taken from.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import kmeans_plusplus
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> centers, indices = kmeans_plusplus(X, n_clusters=2, random_state=0)
    >>> centers
    array([[10.,  2.],
           [ 1.,  0.]])
    >>> indices
    array([3, 2])
    """
    from fastkm._validation import (
        check_array,
        check_int,
        check_random_state,
        check_sample_weight,
    )
    from fastkm.kmeans._prepare import FitData

    n_threads = _threads.resolve(n_threads)
    X = check_array(X, estimator="kmeans_plusplus", n_threads=n_threads, accept_sparse=True)
    n_clusters = check_int(n_clusters, "n_clusters", 1)
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    if x_squared_norms is not None and len(x_squared_norms) != X.shape[0]:
        raise ValueError(
            f"The length of x_squared_norms {len(x_squared_norms)} should be equal to the "
            f"length of n_samples {X.shape[0]}."
        )
    if n_local_trials is not None:
        n_local_trials = check_int(n_local_trials, "n_local_trials", 1)
    sw = check_sample_weight(sample_weight, X.shape[0], X.dtype)
    if not isinstance(X, np.ndarray):  # sparse input (a validated _csr.SparseX)
        from fastkm.kmeans._sparse_seeding import kmeans_plusplus_csr

        return kmeans_plusplus_csr(X, n_clusters, sw, check_random_state(random_state),
                                   n_local_trials, n_threads)
    data = FitData(X, sw, None, sw, False, None, None)
    return kmeans_plusplus_data(data, n_clusters, check_random_state(random_state),
                                n_local_trials, n_threads)
