"""K-Means estimator and functions, API-compatible with scikit-learn's.

All numeric work happens in the compiled kernels (``_lloyd``, ``_kmeanspp``,
``_common``); this module validates input, allocates buffers, draws random
numbers and runs the iteration loop.
"""
import warnings

import numpy as np

from fastkm import _common
from fastkm._dispatch import elkan as _elkan, hamerly as _hamerly, kmeanspp as _kmeanspp, lloyd as _lloyd
from fastkm._compat import (
    BaseEstimator, ClusterMixin, ConvergenceWarning, NotFittedError, TransformerMixin,
)
from fastkm._validation import (
    check_array, check_float, check_int, check_random_state, check_sample_weight,
    effective_n_threads, feature_names,
)

_ALGORITHMS = ("auto", "lloyd", "elkan", "hamerly", "exponion")
_MIN_WORK_PER_THREAD = 1 << 16  # point-center-feature products below which one thread is used


def _threads_for(n_threads, n_blocks, work):
    """Threads worth starting: never more than blocks, one for tiny problems.

    Results do not depend on it (block layout is fixed); it only avoids paying
    OpenMP start-up and barrier costs, which dominate tiny fits on busy machines.
    """
    return max(1, min(n_threads, n_blocks, work // _MIN_WORK_PER_THREAD))
_DIRECT_MAX_D = 8  # same threshold as DIRECT_MAX_D in _common.pxd


# --------------------------------------------------------------------------- duplicates

_DEDUP_MIN_SAMPLES = 1 << 12   # below this a fit is too cheap to bother
_DEDUP_MAX_FRACTION = 0.8      # more distinct rows than this fraction: fit X as it is
_DEDUP_SAMPLE = 4096           # rows checked for repeats before the full pass
_PRUNE_MAX_D = _DIRECT_MAX_D   # spatial order + box-pruned Lloyd tiles up to this many features
_PRUNE_MIN_CLUSTERS = 8
_SEED_PRUNE_BELOW = 0.3  # seeding: test rows while the last test left fewer to evaluate
_SEED_RETEST = 8         # ... and every this many steps


def _deduplicate(X, sample_weight, n_clusters, n_threads=1):
    """Distinct rows of X with their summed weights, and the map back to X's rows.

    K-Means on the distinct rows, each weighted by the total weight of its
    copies, is K-Means on X: identical rows always get the same label, so the
    weighted sums, the centers, the labels and the inertia are those of the full
    data (up to the order of float64 additions), and k-means++ (given the map
    back, see ``_kmeans_plusplus``) draws the same centers. Images have many repeated colors (china.jpg:
    96,615 distinct among 273,280 pixels). Returns None when it would not pay.
    """
    n = X.shape[0]
    if n < _DEDUP_MIN_SAMPLES:
        return None
    # A spread-out sample of rows without a single repeat: almost surely data
    # with few repeats (continuous features); don't pay for the full pass.
    sample = np.ascontiguousarray(X[:: max(1, n // _DEDUP_SAMPLE)][:_DEDUP_SAMPLE])
    if _common.unique_rows(sample, sample.shape[0] - 1) is None:
        return None
    found = _common.unique_rows(X, int(_DEDUP_MAX_FRACTION * n), n_threads)
    if found is None or found[0].shape[0] < n_clusters:
        return None
    X_u, inverse = found
    weights = np.bincount(inverse, weights=sample_weight, minlength=X_u.shape[0])
    return X_u, weights.astype(X.dtype), inverse


# --------------------------------------------------------------------------- seeding

def _tile_layout(X, n_threads):
    """X as (n_chunks, n_features, CHUNK) tiles: what the few-feature kernels read."""
    n_chunks = -(-X.shape[0] // _common.CHUNK_ROWS)
    xt = np.empty((n_chunks, X.shape[1], _common.CHUNK_ROWS), dtype=X.dtype)
    _kmeanspp.transpose_chunks(X, xt, n_threads)
    return xt


def _seeding_slack(x_sq, n_features, dtype):
    """Per-row rounding slack of the seeding's D^2, and the factor ``rel``: the
    pruning radius of row i is ``2 sqrt(D2_i rel + slack_i)`` (see _kmeanspp).

    A computed D^2 = fl(2 h + ||x||^2), h = 0.5||c||^2 - x.c accumulated in X's
    precision (u = eps/2) over d features from fl(0.5||c||^2): the classic dot
    product bound gives |h - exact| <= gamma_{d+2} (||x||^2 + ||c||^2), so the
    double before the final rounding is within E_i = (d + 3) eps (||x_i||^2 +
    max_j ||x_j||^2) (1 + o(1)) of the exact D^2 (candidates and centers are rows
    of X). ``slack`` takes 8 (d + 4) eps times that norm sum, plus 8 (d + 4) tiny
    for underflow (an absolute error of at most tiny per operation, even when
    flushed to zero), and ``rel = 1 + 4 eps`` covers the rounding of the stored
    D2_i. Then with true D_i^2 <= D2_i + E_i, a candidate t farther than the
    radius from row i's center has exact ||x_i - c_t||^2 > D2_i + E_i, its
    computed value before the final rounding is > D2_i, and after it (monotone,
    D2_i representable) >= D2_i: row i keeps D2_i bit for bit.
    """
    info = np.finfo(dtype)
    scale = 8.0 * (n_features + 4)
    slack = scale * (float(info.eps) * (x_sq + x_sq.max()) + float(info.tiny))
    return slack, 1.0 + 4.0 * float(info.eps)


def _kmeans_plusplus(X, n_clusters, sample_weight, random_state, n_local_trials, n_threads,
                     full=None, xt=None):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's local
    trials). Draws the same random numbers in the same order as scikit-learn.

    ``full=(inverse, full_weight)`` says that X holds the distinct rows of the
    data (``X[inverse]``) weighted by their copies: distances are computed once
    per distinct row, but the draws walk the full data's rows, so the centers are
    the ones the full data would give, for the same random stream. ``indices``
    are then rows of the full data.
    """
    n_samples, n_features = X.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    n_blocks, rows_per_block = _common.block_layout(n_samples)
    n_threads = _threads_for(n_threads, n_blocks, n_samples * n_features * n_local_trials)
    centers = np.empty((n_clusters, n_features), dtype=X.dtype)
    indices = np.full(n_clusters, -1, dtype=np.intp)
    closest = np.full(n_samples, np.inf)
    block_pot = np.empty(n_blocks)
    cand_pot = np.empty((n_local_trials, n_blocks))
    cand_ids = np.empty(n_local_trials, dtype=np.intp)

    # Few features: transpose X into the kernels' tile layout once, instead of
    # once per kernel call (a copy of X's size; the dot path needs none).
    if xt is None and n_features <= _DIRECT_MAX_D:
        xt = _tile_layout(X, n_threads)

    if full is None:
        draw_weight, inverse, draw_pot, draw_rows = sample_weight, None, block_pot, rows_per_block
    else:
        inverse, draw_weight = full
        n_draw_blocks, draw_rows = _common.block_layout(inverse.shape[0])
        draw_pot = np.empty(n_draw_blocks)

    # Many features: distances through dot products (8 rows x 16 candidates
    # register tiles), as scikit-learn's seeding does with GEMM.
    use_dot = n_features > _DIRECT_MAX_D and n_local_trials <= 16
    if use_dot:
        x_sq = _common.row_sq_norms(X, n_threads)
        d2 = np.empty((n_local_trials, n_samples), dtype=X.dtype)  # as scikit-learn's
        # exact pruning (see _kmeanspp): the chosen center nearest to each row,
        # the radius beyond which a candidate cannot get nearer, and which rows
        # the last dot_potentials evaluated
        owner = np.zeros(n_samples, dtype=np.int32)
        radius = np.full(n_samples, np.inf)  # the first center evaluates every row
        ev_rows = np.empty(n_samples, dtype=np.int32)
        ev_counts = np.empty(n_blocks, dtype=np.intp)
        slack, rel = _seeding_slack(x_sq, n_features, X.dtype)
        gap = np.zeros(n_clusters)
        evaluated = n_samples

    def lower_closest(center, chosen=None, position=0):
        if use_dot and chosen is not None:
            pot = _kmeanspp.lower_to(closest, owner, radius, slack, rel, d2, ev_rows, ev_counts,
                                     chosen, position, cand_pot, block_pot, rows_per_block,
                                     n_threads)
        elif use_dot:
            # the first center: candidates' machinery with one candidate
            one = np.empty((1, n_samples), dtype=X.dtype)
            first_pot = block_pot[None, :]
            _kmeanspp.dot_potentials(X, sample_weight, closest, x_sq, center[None, :], owner,
                                     radius, gap, first_pot, one, ev_rows, ev_counts,
                                     rows_per_block, n_threads)
            pot = _kmeanspp.lower_to(closest, owner, radius, slack, rel, one, ev_rows, ev_counts,
                                     0, 0, first_pot, block_pot, rows_per_block, n_threads)
        else:
            pot = _kmeanspp.update_closest(
                X, sample_weight, closest, center, block_pot, rows_per_block, n_threads, xt
            )
        if full is not None:
            pot = _kmeanspp.mapped_potentials(draw_weight, inverse, closest, draw_pot, draw_rows,
                                              n_threads)
        return pot

    p = draw_weight.astype(np.float64)
    center_id = random_state.choice(p.shape[0], p=p / p.sum())
    centers[0] = X[center_id if full is None else inverse[center_id]]
    indices[0] = center_id
    current_pot = lower_closest(centers[0])
    for c in range(1, n_clusters):
        targets = random_state.uniform(size=n_local_trials) * current_pot
        _kmeanspp.sample_d2(draw_weight, closest, draw_pot, draw_rows, targets, cand_ids, inverse)
        rows = cand_ids if full is None else inverse[cand_ids]
        candidates = X[rows]
        if use_dot:
            # prune when the last test left few rows to evaluate, and test again
            # every few steps (exact either way: the choice only costs time)
            prune = evaluated < _SEED_PRUNE_BELOW * n_samples or c % _SEED_RETEST == 0
            if prune:
                _kmeanspp.center_gaps(candidates, centers[:c], gap)
            count = _kmeanspp.dot_potentials(X, sample_weight, closest, x_sq, candidates, owner,
                                             radius, gap, cand_pot, d2, ev_rows, ev_counts,
                                             rows_per_block, n_threads, prune)
            if prune:
                evaluated = count
        else:
            _kmeanspp.candidate_potentials(
                X, sample_weight, closest, candidates, cand_pot, rows_per_block, n_threads, xt
            )
        pots = cand_pot.sum(axis=1)  # n_blocks values per row, fixed order
        best = int(np.argmin(pots))
        centers[c] = candidates[best]
        indices[c] = cand_ids[best]
        current_pot = lower_closest(centers[c], best, c)
    return centers, indices


def kmeans_plusplus(
    X, n_clusters, *, sample_weight=None, x_squared_norms=None, random_state=None,
    n_local_trials=None, n_threads=None,
):
    """Initial cluster centers by greedy k-means++ (as ``sklearn.cluster.kmeans_plusplus``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    sample_weight : array-like of shape (n_samples,), default=None
    x_squared_norms : ignored, accepted for scikit-learn compatibility.
    random_state : int, RandomState instance or None
    n_local_trials : int, default=None (``2 + int(ln(n_clusters))``)
    n_threads : int, default=None (all threads OpenMP allows)

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row of X each center was taken from.
    """
    n_threads = effective_n_threads(n_threads)
    X = check_array(X, estimator="kmeans_plusplus", n_threads=n_threads)
    n_clusters = check_int(n_clusters, "n_clusters", 1)
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    if n_local_trials is not None:
        n_local_trials = check_int(n_local_trials, "n_local_trials", 1)
    sw = check_sample_weight(sample_weight, X.shape[0], X.dtype)
    return _kmeans_plusplus(
        X, n_clusters, sw, check_random_state(random_state), n_local_trials, n_threads,
    )


# --------------------------------------------------------------------------- Lloyd

class _LloydBuffers:
    """Every buffer one Lloyd run needs, allocated once per fit."""

    def __init__(self, n_samples, n_clusters, n_features):
        self.n_blocks, self.rows_per_block = _common.block_layout(n_samples, n_clusters, n_features)
        self.block_sums = np.empty((self.n_blocks, n_clusters, n_features))
        self.block_weights = np.empty((self.n_blocks, n_clusters))
        self.block_changed = np.empty(self.n_blocks, dtype=np.intp)
        self.block_partials = np.empty(self.n_blocks)
        self.sums = np.empty((n_clusters, n_features))
        self.weights = np.empty(n_clusters)


def _inertia(X, sample_weight, centers, labels, buf, n_threads):
    return _common.inertia(X, sample_weight, centers, labels, buf.block_partials,
                           buf.rows_per_block, n_threads)


def _relocate_empty_clusters(X, sample_weight, centers, labels, buf, empty, n_threads):
    """Give each empty cluster the sample farthest from its center (as scikit-learn),
    moving that sample's weight between the float64 sums."""
    dist = np.empty(X.shape[0])
    _common.distances_to_assigned(X, centers, labels, dist, n_threads)
    # farthest first; ties go to the lower index: deterministic. Only the rows at
    # or beyond the m-th largest distance are sorted (O(n), not O(n log n)).
    m = min(empty.size, dist.size)
    kth = np.partition(dist, dist.size - m)[dist.size - m]
    top = np.flatnonzero(dist >= kth)
    far = top[np.argsort(-dist[top], kind="stable")][:m]
    for new_id, idx in zip(empty, far):
        w = float(sample_weight[idx])
        old_id = labels[idx]
        x = X[idx].astype(np.float64)
        buf.sums[old_id] -= w * x
        buf.weights[old_id] -= w
        buf.sums[new_id] = w * x
        buf.weights[new_id] = w


def _center_sq_distances(C, n_threads=1):
    """Squared distances between all pairs of centers (float64, exact differences;
    each row by one thread in a fixed order, so the same bits for any thread count)."""
    return _common.center_sq_distances(np.ascontiguousarray(C, dtype=np.float64), n_threads)


def _half_separation(centers, n_threads=1):
    """0.5 * distance from each center to its nearest other center (a lower bound)."""
    C = centers.astype(np.float64)
    k = C.shape[0]
    if k == 1:
        return np.full(1, np.inf)
    D = _center_sq_distances(C, n_threads)
    np.fill_diagonal(D, np.inf)
    return 0.5 * np.sqrt(D.min(axis=1))


class _LloydStep:
    """Assignment + sums by the fused Lloyd pass (tiles pruned by their bounding
    box when ``prune``)."""

    prune = False
    xt = None

    def __init__(self, n_samples, n_clusters):
        pass

    def __call__(self, X, sample_weight, centers, labels, buf, first, n_threads):
        return _lloyd.lloyd_iter(
            X, sample_weight, centers, buf.block_sums, buf.block_weights, buf.sums, buf.weights,
            labels, buf.rows_per_block, n_threads, self.prune, self.xt,
        )

    def centers_moved(self, old, new):
        pass


class _HamerlyStep:
    """Assignment + sums with Hamerly's bounds (two float64 values per sample)."""

    n_threads = 1

    def __init__(self, n_samples, n_clusters):
        self.upper = np.empty(n_samples)
        self.lower = np.empty(n_samples)
        self.shift = np.zeros(n_clusters)
        self.half_sep = None

    def _prepare(self, centers):
        self.half_sep = _half_separation(centers, self.n_threads)

    def _extra(self):
        return {}

    def __call__(self, X, sample_weight, centers, labels, buf, first, n_threads):
        if self.half_sep is None:
            self._prepare(centers)
        return _hamerly.hamerly_iter(
            X, sample_weight, centers, self.half_sep, self.shift, first, self.upper, self.lower,
            buf.block_sums, buf.block_weights, buf.block_changed, buf.sums, buf.weights, labels,
            buf.rows_per_block, n_threads, **self._extra(),
        )

    def centers_moved(self, old, new):
        self.shift = np.sqrt(((new.astype(np.float64) - old) ** 2).sum(axis=1))
        self._prepare(new)


class _ExponionStep(_HamerlyStep):
    """Hamerly's bounds; a failing sample searches only the centers within twice
    its upper bound of its own. Each center's 16 nearest centers are kept packed
    as vector lanes (k x 16 x d values); a ball that reaches past them falls
    back to the full scan."""

    def _prepare(self, centers):
        self.ball, self.beyond, self.half_sep = _hamerly.ball_tables(
            _center_sq_distances(centers, self.n_threads))

    def _extra(self):
        return {"ball": self.ball, "beyond": self.beyond}


def _half_center_distances(centers, n_threads=1):
    """0.5 * distance between every pair of centers (float64 lower bounds), and
    each row's minimum over the other centers."""
    C = centers.astype(np.float64)
    k = C.shape[0]
    out = 0.5 * np.sqrt(_center_sq_distances(C, n_threads))
    np.fill_diagonal(out, 0.0)
    masked = out + np.diag(np.full(k, np.inf))
    return out, masked.min(axis=1)


class _ElkanStep:
    """Assignment + sums with Elkan's bounds (n_samples x n_clusters lower bounds)."""

    n_threads = 1

    def __init__(self, n_samples, n_clusters, dtype=np.float64):
        self.upper = np.empty(n_samples)
        self.lower = np.empty((n_samples, n_clusters), dtype=dtype)
        self.shift = np.zeros(n_clusters)
        self.half_cc = None

    def __call__(self, X, sample_weight, centers, labels, buf, first, n_threads):
        if self.half_cc is None:
            self.half_cc, self.half_sep = _half_center_distances(centers, self.n_threads)
        return _elkan.elkan_iter(
            X, sample_weight, centers, self.half_cc, self.half_sep, self.shift, first,
            self.upper, self.lower, buf.block_sums, buf.block_weights, buf.block_changed,
            buf.sums, buf.weights, labels, buf.rows_per_block, n_threads,
        )

    def centers_moved(self, old, new):
        self.shift = np.sqrt(((new.astype(np.float64) - old) ** 2).sum(axis=1))
        self.half_cc, self.half_sep = _half_center_distances(new, self.n_threads)


_STEPS = {"lloyd": _LloydStep, "hamerly": _HamerlyStep, "elkan": _ElkanStep,
          "exponion": _ExponionStep}


def _kmeans_single(X, sample_weight, centers_init, max_iter, verbose, tol, n_threads,
                   algorithm="lloyd", prune=False, xt=None):
    """One run from ``centers_init``. Returns labels, inertia, centers, n_iter.

    Every exact algorithm produces the labels (and so the float64 sums and the
    centers) of plain Lloyd; only the way labels are found differs. ``prune``
    says that X's rows are in ``spatial_order``: Lloyd's tiles then skip the
    centers their bounding box rules out; ``xt`` is X in tile layout, if made.
    """
    n_samples, n_features = X.shape
    n_clusters = centers_init.shape[0]
    buf = _LloydBuffers(n_samples, n_clusters, n_features)
    n_threads = _threads_for(n_threads, buf.n_blocks, n_samples * n_clusters * n_features)
    if algorithm == "elkan":
        step = _ElkanStep(n_samples, n_clusters, X.dtype)
    else:
        step = _STEPS[algorithm](n_samples, n_clusters)
    step.prune = prune
    step.n_threads = n_threads
    step.xt = xt
    centers = np.array(centers_init, dtype=X.dtype, order="C")
    labels = np.full(n_samples, -1, dtype=np.int32)
    strict_convergence = False
    for it in range(max_iter):
        n_changed = step(X, sample_weight, centers, labels, buf, it == 0, n_threads)
        empty = np.flatnonzero(buf.weights <= 0)
        if empty.size:
            _relocate_empty_clusters(X, sample_weight, centers, labels, buf, empty, n_threads)
        filled = buf.weights > 0
        new_centers = centers.copy()
        new_centers[filled] = buf.sums[filled] / buf.weights[filled, None]
        shift = float(np.sum((new_centers.astype(np.float64) - centers) ** 2))
        if verbose:
            inertia = _inertia(X, sample_weight, centers, labels, buf, n_threads)
            print(f"Iteration {it}, inertia {inertia}.")
        step.centers_moved(centers, new_centers)
        centers = new_centers
        if it > 0 and n_changed == 0:
            strict_convergence = True
            if verbose:
                print(f"Converged at iteration {it}: strict convergence.")
            break
        if shift <= tol:
            if verbose:
                print(f"Converged at iteration {it}: center shift {shift} within tolerance {tol}.")
            break
    if not strict_convergence:
        # final E-step so that labels_ match cluster_centers_. The bounded
        # algorithms' bounds are valid for the new centers: one more step of
        # theirs finds the labels without a full pass (its sums go unused).
        if algorithm == "lloyd":
            _lloyd.assign_labels(X, centers, labels, n_threads, prune, xt)
        else:
            step(X, sample_weight, centers, labels, buf, False, n_threads)
    inertia = _inertia(X, sample_weight, centers, labels, buf, n_threads)
    return labels, inertia, centers, it + 1


ELKAN_MAX_BYTES = 1 << 30  # Elkan's n x k lower bounds beyond this: Hamerly instead
BALL_MAX_BYTES = 32 << 20  # Exponion's packed ball lists (k x 16 x d) beyond this: Hamerly


def _choose_algorithm(algorithm, n_samples, n_features, n_clusters, itemsize=8, sorted_rows=False):
    """Resolve 'auto', and keep 'elkan' and 'exponion' within memory.

    Measured with bench/algorithms.py (table in the README; float32 blobs,
    2 threads, to convergence from the same centers). With few features the
    rows are put in spatial order and Lloyd's tiles skip the centers their
    bounding box rules out (``sorted_rows``): Lloyd is then fastest up to d = 4
    (d = 2, 3, 4: 0.049 / 0.030 / 0.043 s against Exponion's 0.066 / 0.057 /
    0.057 s). From d = 6 up Exponion is fastest everywhere measured (d = 6:
    0.057 s against Hamerly's 0.065 and Lloyd's 0.081 s; d = 32, k = 256: 0.212
    against 0.320 and 0.756 s; 20k x 128, k = 64: 0.049, tied with Hamerly,
    against Lloyd's 0.086 s). Unsorted rows (small n, 'random' or callable init): Lloyd only
    at d = 3. Elkan (explicit ``algorithm='elkan'``) was slowest from d = 6 up
    and needs n x k bounds, so 'auto' never picks it; they are used only below
    ELKAN_MAX_BYTES, and above, Hamerly gives the same labels in O(n) memory.
    Exponion's ball lists are k x 16 x d values; above BALL_MAX_BYTES Hamerly
    runs instead (same labels, no lists).
    """
    ball_bytes = n_clusters * 16 * n_features * itemsize
    if algorithm == "auto":
        if n_clusters == 1 or n_features == 3 or (sorted_rows and n_features <= 4):
            return "lloyd"
        return "exponion" if ball_bytes <= BALL_MAX_BYTES else "hamerly"
    if algorithm == "elkan":
        need = n_samples * n_clusters * itemsize
        if need > ELKAN_MAX_BYTES:
            warnings.warn(
                f"algorithm='elkan' needs {need / 2**30:.1f} GiB of distance bounds "
                f"(n_samples x n_clusters); using 'hamerly' instead, which gives the same "
                "labels with two bounds per sample.",
                RuntimeWarning,
                stacklevel=3,
            )
            return "hamerly"
    if algorithm == "exponion" and ball_bytes > BALL_MAX_BYTES:
        warnings.warn(
            f"algorithm='exponion' needs {ball_bytes / 2**20:.0f} MiB of packed center lists "
            f"(n_clusters x 16 x n_features); using 'hamerly' instead, which gives the same "
            "labels without them.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "hamerly"
    return algorithm


def _tolerance(X, tol, n_threads=1):
    """tol scaled by the mean per-feature variance of X (as scikit-learn).

    Compiled, two passes over fixed row blocks in float64: no temporary of X's
    size, the same value for any thread count.
    """
    if tol == 0:
        return 0.0
    return _common.mean_variance(X, n_threads)[1] * tol


def _is_same_clustering(labels1, labels2, n_clusters):
    """True if two labelings are the same up to a permutation of the labels."""
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    first = np.unique(labels1, return_index=True)[1]
    mapping[labels1[first]] = labels2[first]
    return bool(np.array_equal(mapping[labels1], labels2))


# --------------------------------------------------------------------------- estimator

class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """K-Means clustering, a drop-in replacement for ``sklearn.cluster.KMeans``.

    The assignment and center-update passes run in compiled, GIL-free OpenMP
    loops. Results are bitwise identical for any number of threads.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centroids) to find.
    init : {'k-means++', 'random'}, callable or array-like of shape (n_clusters, n_features), \
default='k-means++'
        'k-means++' is greedy k-means++ seeding (``2 + int(ln k)`` local trials);
        'random' picks ``n_clusters`` distinct rows with probability proportional to
        their weight; a callable is called as ``init(X, n_clusters, random_state)``.
    n_init : 'auto' or int, default='auto'
        Number of runs with different seeds; the best by inertia is kept. 'auto'
        is 1 for 'k-means++' or an array, 10 for 'random' or a callable.
    max_iter : int, default=300
        Maximum number of iterations of one run.
    tol : float, default=1e-4
        Convergence tolerance on the summed squared center shift, relative to the
        mean per-feature variance of X.
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=None
    copy_x : bool, default=True
        With many features the data is mean-centred for accuracy; copy_x=False
        skips that (and its copy). The input is never modified either way.
    algorithm : {'auto', 'lloyd', 'hamerly', 'exponion', 'elkan'}, default='auto'
        Exact variants: all give the labels plain Lloyd gives from the same initial
        centers. 'hamerly' keeps two distance bounds per sample and skips most
        distance computations; 'exponion' adds, per center, its 16 nearest
        centers, which a sample failing its bounds searches first (k x 16 x
        n_features memory; above 32 MiB it falls back to 'hamerly' with a
        warning); 'elkan' keeps one lower bound per (sample, center) pair
        (n_samples x n_clusters memory; above 1 GiB it falls back to 'hamerly'
        with a warning); 'auto' picks by the data shape (see
        ``_choose_algorithm``).
    n_threads : int, default=None
        OpenMP threads. None uses OpenMP's current maximum (``OMP_NUM_THREADS``,
        threadpoolctl limits); -1 uses every CPU.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
    inertia_ : float
        Sum of (weighted) squared distances of samples to their closest center.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names (e.g. a pandas DataFrame).
    """

    def __init__(
        self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4,
        verbose=0, random_state=None, copy_x=True, algorithm="auto", n_threads=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.n_threads = n_threads

    # ---- parameter checks (in fit, never in __init__)
    def _check_params(self, X):
        n_samples, n_features = X.shape
        self._n_clusters = check_int(self.n_clusters, "n_clusters", 1)
        if n_samples < self._n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self._n_clusters}.")
        self._max_iter = check_int(self.max_iter, "max_iter", 1)
        self._tol_rel = check_float(self.tol, "tol", 0.0)
        check_int(int(self.verbose) if isinstance(self.verbose, (bool, np.bool_)) else self.verbose,
                  "verbose", 0)
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {_ALGORITHMS}; got {self.algorithm!r}.")

        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "random"):
                raise ValueError(
                    f"init must be 'k-means++', 'random', a callable or an array of shape "
                    f"(n_clusters, n_features); got {init!r}."
                )
        elif not callable(init):
            init = check_array(init, dtype=X.dtype, name="init", estimator="KMeans")
            if init.shape != (self._n_clusters, n_features):
                raise ValueError(
                    f"The shape of the initial centers {init.shape} does not match "
                    f"(n_clusters, n_features) = ({self._n_clusters}, {n_features})."
                )
        self._init = init
        if isinstance(self.n_init, str):
            if self.n_init != "auto":
                raise ValueError(f"n_init must be 'auto' or an int >= 1; got {self.n_init!r}.")
            self._n_init = 1 if (isinstance(init, np.ndarray) or init == "k-means++") else 10
        else:
            self._n_init = check_int(self.n_init, "n_init", 1)
        if isinstance(init, np.ndarray) and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"KMeans instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._n_init = 1
        if not isinstance(self.copy_x, (bool, np.bool_)):
            raise TypeError(f"copy_x must be a bool; got {self.copy_x!r}.")
        self._n_threads = effective_n_threads(self.n_threads)

    def _init_centroids(self, X, sample_weight, init, random_state, n_threads, full=None,
                        xt=None):
        k = self._n_clusters
        if isinstance(init, str) and init == "k-means++":
            centers, _ = _kmeans_plusplus(X, k, sample_weight, random_state, None, n_threads, full,
                                          xt)
        elif isinstance(init, str) and init == "random":
            p = sample_weight.astype(np.float64)
            seeds = random_state.choice(X.shape[0], size=k, replace=False, p=p / p.sum())
            centers = X[seeds]
        elif callable(init):
            centers = init(X, k, random_state=random_state)
            centers = check_array(centers, dtype=X.dtype, name="init(...) result")
            if centers.shape != (k, X.shape[1]):
                raise ValueError(
                    f"The init callable returned centers of shape {centers.shape}; expected "
                    f"({k}, {X.shape[1]})."
                )
        else:
            centers = init
        return np.array(centers, dtype=X.dtype, order="C")

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 data stays float32; every other numeric type becomes float64.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self
        """
        names = feature_names(X)
        X = check_array(X, estimator=type(self).__name__,
                        n_threads=effective_n_threads(self.n_threads))
        self._check_params(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        random_state = check_random_state(self.random_state)
        n_threads = self._n_threads
        init = self._init

        n_features = X.shape[1]
        tol = _tolerance(X, self._tol_rel, n_threads)
        # Repeated rows (image colors) are fitted once, with their total weight;
        # labels are mapped back at the end. 'random' and callable inits pick
        # from the rows of X itself, so they keep X as it is.
        inverse = full = None
        prune = False
        if isinstance(init, np.ndarray) or init == "k-means++":
            found = _deduplicate(X, sample_weight, self._n_clusters, n_threads)
            if found is not None:
                full = (found[2], sample_weight)
                X, sample_weight, inverse = found
                if self.verbose:
                    print(f"{X.shape[0]} distinct rows among {inverse.shape[0]}: fitting those.")
            # Few features: put close rows together so that Lloyd's tiles can
            # skip the centers their bounding box rules out.
            if (n_features <= _PRUNE_MAX_D and X.shape[0] >= _DEDUP_MIN_SAMPLES
                    and self._n_clusters >= _PRUNE_MIN_CLUSTERS):
                perm = _common.spatial_order(X)
                rank = np.empty(perm.shape[0], dtype=np.int32)
                rank[perm] = np.arange(perm.shape[0], dtype=np.int32)
                if full is None:
                    full = (rank, sample_weight)
                    inverse = rank
                else:
                    inverse = rank[inverse]
                    full = (inverse, full[1])
                X = X[perm]
                sample_weight = sample_weight[perm]
                prune = True
        xt = _tile_layout(X, n_threads) if prune else None
        self._algorithm = _choose_algorithm(self.algorithm, X.shape[0], n_features,
                                            self._n_clusters, X.dtype.itemsize, prune)

        # The dot-product kernel (many features) loses precision far from the
        # origin: centre the data, on a copy (we never modify the input).
        X_mean = None
        if n_features > _DIRECT_MAX_D and self.copy_x:
            # into our own copy of the distinct rows, else a new array: the
            # input is never modified
            out = X if inverse is not None else np.empty_like(X)
            X_mean = _common.centre_columns(X, out, n_threads)
            X = out
            if isinstance(init, np.ndarray):
                init = (init - X_mean).astype(X.dtype)

        best = None
        for _ in range(self._n_init):
            centers_init = self._init_centroids(X, sample_weight, init, random_state, n_threads,
                                                full, xt)
            if self.verbose:
                print("Initialization complete")
            labels, inertia, centers, n_iter = _kmeans_single(
                X, sample_weight, centers_init, self._max_iter, self.verbose, tol, n_threads,
                self._algorithm, prune, xt,
            )
            if best is None or (
                inertia < best[1] and not _is_same_clustering(labels, best[0], self._n_clusters)
            ):
                best = (labels, inertia, centers, n_iter)
        labels, inertia, centers, n_iter = best
        distinct = int(np.count_nonzero(np.bincount(labels, minlength=self._n_clusters)))
        if inverse is not None:
            labels = labels[inverse]

        if X_mean is not None:
            centers = (centers + X_mean).astype(X.dtype)
        if distinct < self._n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self._n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers
        self._n_threads_fit = n_threads
        self.labels_ = labels
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    # ---- after fit
    def _check_is_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _check_test_data(self, X):
        self._check_is_fitted()
        names = feature_names(X)
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names is None:
            warnings.warn(
                f"X does not have valid feature names, but {type(self).__name__} was fitted "
                "with feature names", UserWarning, stacklevel=3,
            )
        elif fitted is None and names is not None:
            warnings.warn(
                f"X has feature names, but {type(self).__name__} was fitted without feature "
                "names", UserWarning, stacklevel=3,
            )
        elif fitted is not None and not np.array_equal(fitted, names):
            raise ValueError(
                "The feature names should match those that were passed during fit.\n"
                f"Fitted with: {list(fitted)}\nGot: {list(names)}"
            )
        X = check_array(X, dtype=self.cluster_centers_.dtype, estimator=type(self).__name__)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _threads(self):
        return effective_n_threads(self.n_threads)

    def predict(self, X):
        """Index of the closest cluster center for each sample of X."""
        X = self._check_test_data(X)
        labels = np.empty(X.shape[0], dtype=np.int32)
        _lloyd.assign_labels(X, self.cluster_centers_, labels, self._threads())
        return labels

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distance of each sample to each cluster center, shape (n_samples, n_clusters)."""
        X = self._check_test_data(X)
        return self._transform(X)

    def _transform(self, X):
        out = np.empty((X.shape[0], self.cluster_centers_.shape[0]), dtype=X.dtype)
        _lloyd.pairwise_distances(X, self.cluster_centers_, out, False, self._threads())
        return out

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of X to the cluster centers."""
        return self.fit(X, sample_weight=sample_weight)._transform(
            check_array(X, dtype=self.cluster_centers_.dtype)
        )

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X on the fitted centers."""
        X = self._check_test_data(X)
        sw = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        n_threads = self._threads()
        labels = np.empty(X.shape[0], dtype=np.int32)
        _lloyd.assign_labels(X, self.cluster_centers_, labels, n_threads)
        n_blocks, rows_per_block = _common.block_layout(X.shape[0])
        inertia = _common.inertia(X, sw, self.cluster_centers_, labels, np.empty(n_blocks),
                                  rows_per_block, n_threads)
        return -float(inertia)

    def get_feature_names_out(self, input_features=None):
        """Output feature names of ``transform``: ``kmeans0``, ``kmeans1``, ..."""
        self._check_is_fitted()
        return np.asarray([f"kmeans{i}" for i in range(self.cluster_centers_.shape[0])],
                          dtype=object)


def k_means(
    X, n_clusters, *, sample_weight=None, init="k-means++", n_init="auto", max_iter=300,
    verbose=False, tol=1e-4, random_state=None, copy_x=True, algorithm="auto",
    return_n_iter=False, n_threads=None,
):
    """Functional K-Means (as ``sklearn.cluster.k_means``).

    Returns ``(centers, labels, inertia)``, plus ``n_iter`` if ``return_n_iter``.
    """
    est = KMeans(
        n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, verbose=verbose,
        tol=tol, random_state=random_state, copy_x=copy_x, algorithm=algorithm,
        n_threads=n_threads,
    ).fit(X, sample_weight=sample_weight)
    if return_n_iter:
        return est.cluster_centers_, est.labels_, est.inertia_, est.n_iter_
    return est.cluster_centers_, est.labels_, est.inertia_
