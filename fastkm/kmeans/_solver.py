"""One run of K-Means from initial centers: the iteration loop (``run``) and the
solver steps it drives, one per exact algorithm.

Every step has the same protocol: built with everything it needs (the fit's
rows, the initial centers, the thread count), then ``iterate`` (labels and the
float64 center sums into ``step.sums``), ``centers_moved`` (update what the
next iteration needs from the old and new centers) and ``final_labels`` (the
labels of the final centers). All of them give the labels of plain Lloyd from
the same centers, so the sums, the centers and the inertia are the same bits
whichever runs; only how the labels are found differs.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import elkan, hamerly, lloyd
from fastkm._kernels import layout, stats
from fastkm._kernels.reduce import BlockSums


def center_sq_distances(C, n_threads=1):
    """Squared distances between all pairs of centers (float64, exact differences;
    each row by one thread in a fixed order, so the same bits for any thread count)."""
    C = np.ascontiguousarray(C, dtype=np.float64)
    k, d = C.shape
    return stats.center_sq_distances(C, _threads.threads_for("center-dist", k * k * d, n_threads))


def _shifts(old, new):
    return np.sqrt(((new.astype(np.float64) - old) ** 2).sum(axis=1))


class LloydStep:
    """Assignment + sums by the fused Lloyd pass (tiles pruned by their bounding
    box when the rows are in spatial order)."""

    kind = "lloyd"

    def __init__(self, data, centers, n_threads):
        self.X, self.w = data.X, data.weights
        n, d = self.X.shape
        k = centers.shape[0]
        self.sums = BlockSums(n, k, d)
        self.prune, self.tiles = data.sorted_rows, data.tiles
        self.n_threads = n_threads
        self.units = n * k * d
        self.items = -(-n // 256)

    def iterate(self, centers, labels, first):
        r = _threads.region(self.kind, self.units, self.items, self.n_threads)
        changed = lloyd.lloyd_iter(self.X, self.w, centers, labels, self.sums, r, self.prune,
                                   self.tiles)
        _threads.record(r)
        return changed

    def centers_moved(self, old, new):
        pass

    def final_labels(self, centers, labels):
        r = _threads.region("assign", self.units, self.items, self.n_threads)
        lloyd.assign_labels(self.X, centers, labels, r, self.prune, self.tiles)
        _threads.record(r)


class HamerlyStep:
    """Assignment + sums with Hamerly's bounds (two float64 values per sample)."""

    kind = "hamerly"

    def __init__(self, data, centers, n_threads):
        self.X, self.w = data.X, data.weights
        n, d = self.X.shape
        k = centers.shape[0]
        self.sums = BlockSums(n, k, d)
        self.n_threads = n_threads
        self.units = n * k * d
        self.upper = np.empty(n)
        self.lower = np.empty(n)
        self.shift = np.zeros(k)
        self._prepare(centers)

    def _prepare(self, centers):
        D = center_sq_distances(centers, self.n_threads)
        np.fill_diagonal(D, np.inf)
        self.half_sep = 0.5 * np.sqrt(D.min(axis=1)) if D.shape[0] > 1 else np.full(1, np.inf)

    def _extra(self):
        return {}

    def iterate(self, centers, labels, first):
        kind = self.kind + ("-first" if first else "")
        r = _threads.region(kind, self.units, self.sums.n_blocks, self.n_threads)
        changed = hamerly.hamerly_iter(self.X, self.w, centers, labels, self.sums,
                                       self.half_sep, self.shift, first, self.upper, self.lower,
                                       r, **self._extra())
        _threads.record(r)
        return changed

    def centers_moved(self, old, new):
        self.shift = _shifts(old, new)
        self._prepare(new)

    def final_labels(self, centers, labels):
        # the bounds are valid for the new centers: one more step finds the
        # labels without a full pass (its sums go unused)
        self.iterate(centers, labels, False)


class ExponionStep(HamerlyStep):
    """Hamerly's bounds; a failing sample searches only the centers within twice
    its upper bound of its own. Each center's nearest centers are kept packed as
    vector lanes (k x BALL x d values); a ball that reaches past them falls back
    to the full scan."""

    kind = "exponion"

    def _prepare(self, centers):
        k = centers.shape[0]
        cc = center_sq_distances(centers, self.n_threads)
        self.ball, self.beyond, self.half_sep = hamerly.ball_tables(
            cc, _threads.threads_for("ball", k * k, self.n_threads))

    def _extra(self):
        return {"ball": self.ball, "beyond": self.beyond}


class ElkanStep:
    """Assignment + sums with Elkan's bounds (n_samples x n_clusters lower bounds)."""

    kind = "elkan"

    def __init__(self, data, centers, n_threads):
        self.X, self.w = data.X, data.weights
        n, d = self.X.shape
        k = centers.shape[0]
        self.sums = BlockSums(n, k, d)
        self.n_threads = n_threads
        self.units = n * k * d
        self.upper = np.empty(n)
        self.lower = np.empty((n, k), dtype=self.X.dtype)
        self.shift = np.zeros(k)
        self._prepare(centers)

    def _prepare(self, centers):
        k = centers.shape[0]
        half = 0.5 * np.sqrt(center_sq_distances(centers, self.n_threads))
        np.fill_diagonal(half, 0.0)
        self.half_cc = half
        self.half_sep = (half + np.diag(np.full(k, np.inf))).min(axis=1)

    def iterate(self, centers, labels, first):
        kind = self.kind + ("-first" if first else "")
        r = _threads.region(kind, self.units, self.sums.n_blocks, self.n_threads)
        changed = elkan.elkan_iter(self.X, self.w, centers, labels, self.sums, self.half_cc,
                                   self.half_sep, self.shift, first, self.upper, self.lower, r)
        _threads.record(r)
        return changed

    def centers_moved(self, old, new):
        self.shift = _shifts(old, new)
        self._prepare(new)

    def final_labels(self, centers, labels):
        self.iterate(centers, labels, False)


STEPS = {"lloyd": LloydStep, "hamerly": HamerlyStep, "exponion": ExponionStep,
         "elkan": ElkanStep}


def inertia(X, sample_weight, centers, labels, n_threads, blocks=None):
    """Sum of weighted squared distances of the rows to their assigned centers
    (float64 per fixed row block, added in block order). ``blocks``: the
    (n_blocks, rows_per_block) layout to sum over; by default that of X's rows
    alone (``layout.block_layout(n)``)."""
    n_blocks, rows_per_block = blocks or layout.block_layout(X.shape[0])
    return stats.inertia(X, sample_weight, centers, labels, np.empty(n_blocks), rows_per_block,
                         _threads.threads_for("inertia", X.size, n_threads))


def relocate_empty_clusters(X, sample_weight, centers, labels, sums, empty, n_threads):
    """Give each empty cluster the sample farthest from its center (as scikit-learn),
    moving that sample's weight between the float64 sums. When every sample sits
    on its center (more clusters than distinct samples) there is nothing to gain
    and nothing moves."""
    dist = np.empty(X.shape[0])
    stats.distances_to_assigned(X, centers, labels, dist,
                                _threads.threads_for("relocate", X.size, n_threads))
    if not dist.max() > 0:
        return
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
        sums.sums[old_id] -= w * x
        sums.weights[old_id] -= w
        sums.sums[new_id] = w * x
        sums.weights[new_id] = w


def _new_centers(centers, sums):
    """sums / weights; a cluster still empty goes where the heaviest cluster is
    (as scikit-learn: not left behind, not at the origin)."""
    filled = sums.weights > 0
    new_centers = centers.copy()
    new_centers[filled] = sums.sums[filled] / sums.weights[filled, None]
    if not filled.all():
        new_centers[~filled] = new_centers[int(np.argmax(sums.weights))]
    return new_centers


def converged(it, n_changed, shift, tol, verbose):
    """scikit-learn's two stopping rules, in its order and with its messages:
    'strict' (no label changed after the first iteration), 'tol' (the squared
    center shift within ``tol``) or None. Every run loop (in memory, in
    pieces, sparse) stops by this."""
    if it > 0 and n_changed == 0:
        if verbose:
            print(f"Converged at iteration {it}: strict convergence.")
        return "strict"
    if shift <= tol:
        if verbose:
            print(f"Converged at iteration {it}: center shift {shift} within tolerance {tol}.")
        return "tol"
    return None


def run(data, centers_init, algorithm, max_iter, tol, verbose, n_threads):
    """One run from ``centers_init`` (in X's coordinates). Returns labels (of
    X's rows), inertia, centers, n_iter."""
    X, w = data.X, data.weights
    centers = np.array(centers_init, dtype=X.dtype, order="C")
    step = STEPS[algorithm](data, centers, n_threads)
    labels = np.full(X.shape[0], -1, dtype=np.int32)
    blocks = (step.sums.n_blocks, step.sums.rows_per_block)  # the inertia's too
    strict_convergence = False
    for it in range(max_iter):
        n_changed = step.iterate(centers, labels, it == 0)
        sums = step.sums
        empty = np.flatnonzero(sums.weights <= 0)
        if empty.size:
            relocate_empty_clusters(X, w, centers, labels, sums, empty, n_threads)
        new_centers = _new_centers(centers, sums)
        shift = float(np.sum((new_centers.astype(np.float64) - centers) ** 2))
        if verbose:
            print(f"Iteration {it}, inertia {inertia(X, w, centers, labels, n_threads, blocks)}.")
        step.centers_moved(centers, new_centers)
        centers = new_centers
        stop = converged(it, n_changed, shift, tol, verbose)
        if stop is not None:
            strict_convergence = stop == "strict"
            break
    if not strict_convergence:
        # final E-step so that the labels match the centers
        step.final_labels(centers, labels)
    return labels, inertia(X, w, centers, labels, n_threads, blocks), centers, it + 1
