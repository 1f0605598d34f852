"""One run of K-Means on sparse (CSR) rows: the centers as the kernels read them
(``Centers``), the solver steps (Lloyd, Hamerly, Exponion, Elkan), empty-cluster
relocation and the iteration loop (``run``).

The loop has the dense ``_solver.run``'s semantics (strict convergence when no
label changes, ``tol`` on the summed squared center shift, a final E-step,
empty clusters given the rows farthest from their centers), but its data flow
is its own: the centers live in the tile layout the sparse kernels read, and
an update recomputes only the clusters that gained or lost a row (a cluster
with the same rows gets the same sum, bit for bit, so its center stays). Every
step gives Lloyd's labels from the same centers, so the sums, the centers and
the inertia are the same bits whichever algorithm runs, for any thread count.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import sparse_bounds, sparse_lloyd
from fastkm._kernels import csr, layout, sparse_centers
from fastkm.kmeans import _policy
from fastkm.kmeans._solver import converged

EPS64 = float(np.finfo(np.float64).eps)


HUGE_PAGE = 2 << 20


def aligned_empty(shape, dtype, zero=False):
    """An uninitialised (or zeroed) array starting on a 2 MiB boundary. The
    sparse kernels read their big arrays (center tiles, sums, candidate
    lanes) at random rows; aligned, the kernel backs them with huge pages
    end to end (numpy asks for them), and the tile kernel runs about 1.7x
    faster than on the same array at malloc's alignment."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes < HUGE_PAGE:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    buf = (np.zeros if zero else np.empty)(nbytes + HUGE_PAGE, dtype=np.uint8)
    start = (-buf.ctypes.data) % HUGE_PAGE
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def _bound_scale(d):
    """1 + rounding_bound(d) in float64: a float64 d-term sum of squares grown by
    it is an upper bound of the exact one."""
    return 1.0 + layout.rounding_scale(d) * EPS64


class Centers:
    """The centers of one sparse run: ``ct`` (n_tiles, d, KT) tiles and ``hn``
    (0.5 ||c||^2, the dtype's max for padding lanes) in X's dtype, ``cnorm``
    (||c||^2, float64), and the update's float64 sums (k, d), zero between
    updates."""

    def __init__(self, X, centers, n_threads, own=False):
        k, d = centers.shape
        self.k, self.d, self.dtype = k, d, X.dtype
        self.n_threads = n_threads
        single = X.dtype == np.float32
        self.ct = aligned_empty(sparse_centers.tile_shape(k, d, single), X.dtype)
        nb, _ = sparse_centers.feature_blocks(d)
        self.norm_part = np.empty((k, nb))
        self.shift_part = np.zeros((k, nb))
        centers = np.ascontiguousarray(centers, dtype=X.dtype)
        sparse_centers.to_tiles(centers, self.ct, self.norm_part,
                                _threads.threads_for("sparse-tiles", k * d, n_threads))
        self.cnorm = self.norm_part.sum(axis=1)
        self.hn = np.full(self.ct.shape[0] * self.ct.shape[2], np.finfo(X.dtype).max,
                          dtype=X.dtype)
        self._half_norms()
        self.sums = None   # the update's (k, d) float64 sums, made on first use
        # float64 centers of our own (the run's initial centers): their memory
        # becomes the sums, then the result (no new k x d allocation)
        self._spare = centers if own and centers.dtype == np.float64 else None

    def _half_norms(self):
        self.hn[:self.k] = (0.5 * self.cnorm).astype(self.dtype)

    @property
    def cmax(self):
        """An upper bound of max ||c||^2."""
        return float(self.cnorm.max()) * _bound_scale(self.d)

    def update(self, X, w, order, offsets, weights, dirty):
        """New centers of the clusters whose rows changed (``dirty``) and that have
        weight: sum / weight over their rows. Returns every center's squared
        shift (float64, 0 for the others)."""
        todo = np.flatnonzero(dirty.astype(bool) & (weights > 0))
        shift2 = np.zeros(self.k)
        if todo.size == 0:
            return shift2
        sizes = offsets[todo + 1] - offsets[todo]
        todo = np.ascontiguousarray(todo[np.argsort(-sizes, kind="stable")], dtype=np.int32)
        update = np.zeros(self.k, dtype=np.uint8)
        update[todo] = 1
        tiles = np.ascontiguousarray(np.unique(todo // self.ct.shape[2]), dtype=np.int32)
        if self.sums is None:
            if self._spare is not None:
                self.sums, self._spare = self._spare, None
                self.sums.fill(0.0)
            else:
                self.sums = aligned_empty((self.k, self.d), np.float64, zero=True)
        units = X.nnz + todo.size * self.d
        r = _threads.region("sparse-update", units, todo.size, self.n_threads)
        sparse_centers.update_centers(X.rows, w, order, offsets, todo, update, tiles, weights,
                                      self.sums, self.ct, self.shift_part, self.norm_part, r)
        _threads.record(r)
        shift2[todo] = self.shift_part[todo].sum(axis=1)
        self.cnorm[todo] = self.norm_part[todo].sum(axis=1)
        self._half_norms()
        return shift2

    def dense(self):
        """The (k, d) centers, in X's dtype (in float64, the memory of the sums,
        which are then gone)."""
        if self.dtype == np.float64 and (self.sums is not None or self._spare is not None):
            out = self.sums if self.sums is not None else self._spare
            self.sums = self._spare = None
        else:
            out = aligned_empty((self.k, self.d), self.dtype)
        sparse_centers.from_tiles(self.ct, out, _threads.threads_for(
            "sparse-tiles", self.k * self.d, self.n_threads))
        return out

    def inertia(self, X, w, labels):
        """sum_i w_i ||x_i - c_{labels_i}||^2 (float64, fixed row blocks in order)."""
        n_blocks, rows_per_block = layout.block_layout(X.shape[0])
        r = _threads.region("sparse-inertia", X.nnz, n_blocks, self.n_threads)
        total = sparse_centers.inertia(X.rows, w, self.ct, self.cnorm, labels,
                                       np.empty(n_blocks), rows_per_block, r)
        _threads.record(r)
        return float(total)

    def assigned_sq_distances(self, X, labels):
        out = np.empty(X.shape[0])
        r = _threads.region("sparse-relocate", X.nnz, -(-X.shape[0] // 256), self.n_threads)
        sparse_centers.assigned_sq_distances(X.rows, self.ct, self.cnorm, labels, out, r)
        _threads.record(r)
        return out

    def lower_distances(self):
        """(k, k) lower bounds of the center-center distances (0 on the diagonal),
        from the float64 Gram matrix less its rounding (see docs/design.md)."""
        k, d = self.k, self.d
        nb, rows = sparse_lloyd.gram_blocks(k, d)
        kp = -(-k // 8) * 8
        partial = np.empty((nb, kp, kp))
        r = _threads.region("sparse-gram", k * k * d // 2, nb, self.n_threads)
        sparse_lloyd.center_gram(self.ct, k, partial, rows, r)
        _threads.record(r)
        G = partial.sum(axis=0)[:k, :k]
        G = np.triu(G) + np.triu(G, 1).T
        cn = self.cnorm
        both = cn[:, None] + cn[None, :]
        # |G_ab - c_a.c_b| <= gamma_d ||c_a|| ||c_b||, and each norm is within
        # gamma_d of its own: rounding_bound(d) (cn_a + cn_b) covers all three
        sq = both - 2.0 * G - (_bound_scale(d) - 1.0) * both
        out = np.sqrt(np.maximum(sq, 0.0))
        np.fill_diagonal(out, 0.0)
        return out


class LloydStep:
    """Every distance, by the tile kernel (``sparse_lloyd.assign``)."""

    kind = "sparse-lloyd"

    def __init__(self, X, w, centers, n_threads):
        self.X, self.w, self.C = X, w, centers
        self.n_threads = n_threads
        self.units = X.nnz * centers.k
        self.items = -(-X.shape[0] // layout.CHUNK_ROWS)

    def iterate(self, labels, first):
        r = _threads.region(self.kind, self.units, self.items, self.n_threads)
        changed = sparse_lloyd.assign(self.X.rows, self.C.ct, self.C.hn, self.C.k, labels, r)
        _threads.record(r)
        return changed

    def centers_moved(self, shift2):
        pass

    def final_labels(self, labels):
        self.iterate(labels, False)


class CenterDistances:
    """Lower bounds of the center-center distances, for the bounded steps.

    The exact ones (``Centers.lower_distances``: a k x k x d Gram matrix) cost
    as much as a Lloyd pass at large k, so they are recomputed only when the
    centers have moved far since: in between, the last exact bounds less the
    distance each of the two centers moved since then (the triangle inequality)
    are still lower bounds, a little looser. Which iterations recompute depends
    only on the shifts, never on timing: results are the same for any thread
    count (and the bounds only ever prune, so they never change a label).
    """

    def __init__(self, centers):
        self.C = centers
        self._refresh()

    def _refresh(self):
        self.exact = self.C.lower_distances()
        self.drift = np.zeros(self.C.k)
        off = self.exact[~np.eye(self.exact.shape[0], dtype=bool)]
        self.scale = float(np.median(off)) if off.size else 0.0
        self.current = self.exact

    def moved(self, shift):
        """The centers moved by at most ``shift`` (k,): the new lower bounds."""
        self.drift += shift
        if self.drift.max() > _policy.SPARSE_STALE_DISTANCES * self.scale:
            self._refresh()
        else:
            D = self.exact - self.drift[:, None] - self.drift[None, :]
            np.maximum(D, 0.0, out=D)
            np.fill_diagonal(D, 0.0)
            self.current = D
        return self.current


class HamerlyStep:
    """Hamerly's two bounds per row (``sparse_bounds.hamerly_iter``)."""

    kind = "sparse-hamerly"

    def __init__(self, X, w, centers, n_threads):
        n = X.shape[0]
        self.X, self.w, self.C = X, w, centers
        self.n_threads = n_threads
        self.units = X.nnz * centers.k
        self.upper = np.zeros(n)
        self.lower = np.zeros(n)
        self.shift = np.zeros(centers.k)
        self.distances = CenterDistances(centers)
        self._prepare(self.distances.current)

    def _prepare(self, cc):
        self.cc = cc
        k = cc.shape[0]
        others = cc + np.diag(np.full(k, np.inf))
        self.half_sep = 0.5 * others.min(axis=1) if k > 1 else np.full(1, np.inf)

    def _extra(self):
        return {}

    def iterate(self, labels, first):
        kind = self.kind + ("-first" if first else "")
        r = _threads.region(kind, self.units, -(-self.X.shape[0] // layout.CHUNK_ROWS),
                            self.n_threads)
        changed = sparse_bounds.hamerly_iter(
            self.X.rows, self.C.ct, self.C.hn, self.C.cnorm, self.C.cmax, labels, self.upper,
            self.lower, self.half_sep, self.shift, first, r, **self._extra())
        _threads.record(r)
        return changed

    def centers_moved(self, shift2):
        self.shift = np.sqrt(shift2 * _bound_scale(self.C.d))
        self._prepare(self.distances.moved(self.shift))

    def final_labels(self, labels):
        self.iterate(labels, False)


class ExponionStep(HamerlyStep):
    """Hamerly's bounds; a row that fails them searches only the centers close
    enough to its own to matter, from each center's nearest-center list."""

    kind = "sparse-exponion"

    def _prepare(self, cc):
        super()._prepare(cc)
        D = cc
        k = D.shape[0]
        m = min(k, sparse_bounds.NEIGHBOURS)
        # each center's nearest others, ascending (ties by index), and the
        # distance to the nearest one not in the list
        nearest = np.argsort(D, axis=1, kind="stable")
        self.ball = np.ascontiguousarray(nearest[:, :m], dtype=np.int32)
        self.ball_cc = np.ascontiguousarray(np.take_along_axis(D, self.ball, axis=1))
        self.beyond = (np.take_along_axis(D, nearest[:, m:m + 1], axis=1)[:, 0] if k > m
                       else np.full(k, np.inf))

    def _extra(self):
        return {"ball": self.ball, "ball_cc": self.ball_cc, "beyond": self.beyond}


class ElkanStep:
    """Elkan's n x k lower bounds (``sparse_bounds.elkan_iter``)."""

    kind = "sparse-elkan"

    def __init__(self, X, w, centers, n_threads):
        n = X.shape[0]
        self.X, self.w, self.C = X, w, centers
        self.n_threads = n_threads
        self.units = X.nnz * centers.k
        self.upper = np.zeros(n)
        self.lower = aligned_empty((n, centers.k), X.dtype, zero=True)
        self.shift = np.zeros(centers.k)
        self.distances = CenterDistances(centers)
        self._prepare(self.distances.current)

    def _prepare(self, cc):
        k = self.C.k
        half = 0.5 * cc
        self.half_cc = half
        self.half_sep = (half + np.diag(np.full(k, np.inf))).min(axis=1)

    def iterate(self, labels, first):
        kind = self.kind + ("-first" if first else "")
        r = _threads.region(kind, self.units, -(-self.X.shape[0] // layout.CHUNK_ROWS),
                            self.n_threads)
        changed = sparse_bounds.elkan_iter(
            self.X.rows, self.C.ct, self.C.hn, self.C.cnorm, self.C.cmax, labels, self.upper,
            self.lower, self.half_cc, self.half_sep, self.shift, first, r)
        _threads.record(r)
        return changed

    def centers_moved(self, shift2):
        self.shift = np.sqrt(shift2 * _bound_scale(self.C.d))
        self._prepare(self.distances.moved(self.shift))

    def final_labels(self, labels):
        self.iterate(labels, False)


STEPS = {"lloyd": LloydStep, "hamerly": HamerlyStep, "exponion": ExponionStep,
         "elkan": ElkanStep}


class _Groups:
    """Rows grouped by the labels the center sums follow (``csr.group_rows``)."""

    def __init__(self, n, k):
        self.order = np.empty(n, dtype=np.int32)
        self.offsets = np.empty(k + 1, dtype=np.intp)
        self.weights = np.empty(k)
        self.dirty = np.empty(k, dtype=np.uint8)
        self.summed = np.full(n, -1, dtype=np.int32)  # the labels of the current centers

    def regroup(self, labels, w):
        csr.group_rows(labels, self.summed, w, self.order, self.offsets, self.weights,
                       self.dirty)


def relocate_empty_clusters(X, centers, labels, empty):
    """The labels the sums follow once each empty cluster has taken the row
    farthest from its center (as scikit-learn; the labels themselves are left
    as they are). Ties go to the lower row index."""
    dist = centers.assigned_sq_distances(X, labels)
    m = min(empty.size, dist.size)
    kth = np.partition(dist, dist.size - m)[dist.size - m]
    top = np.flatnonzero(dist >= kth)
    far = top[np.argsort(-dist[top], kind="stable")][:m]
    moved = labels.copy()
    moved[far] = empty[:m]
    return moved


def run(X, w, centers_init, algorithm, max_iter, tol, verbose, n_threads):
    """One run from ``centers_init`` ((k, d) dense, X's dtype, C-contiguous:
    the run's own array, whose memory it reuses). Returns labels, inertia,
    centers ((k, d) dense, X's dtype), n_iter."""
    n, k = X.shape[0], centers_init.shape[0]
    C = Centers(X, centers_init, n_threads, own=True)
    del centers_init
    step = STEPS[algorithm](X, w, C, n_threads)
    labels = np.full(n, -1, dtype=np.int32)
    groups = _Groups(n, k)
    strict_convergence = False
    for it in range(max_iter):
        n_changed = step.iterate(labels, it == 0)
        if verbose:
            print(f"Iteration {it}, inertia {C.inertia(X, w, labels)}.")
        summed = labels
        groups.regroup(summed, w)
        empty = np.flatnonzero(groups.weights <= 0)
        if empty.size:
            summed = relocate_empty_clusters(X, C, labels, empty)
            groups.regroup(summed, w)
        shift2 = C.update(X, w, groups.order, groups.offsets, groups.weights, groups.dirty)
        np.copyto(groups.summed, summed)
        shift = float(shift2.sum())
        step.centers_moved(shift2)
        stop = converged(it, n_changed, shift, tol, verbose)
        if stop is not None:
            strict_convergence = stop == "strict"
            break
    if not strict_convergence:
        # final E-step so that the labels match the centers
        step.final_labels(labels)
    return labels, C.inertia(X, w, labels), C.dense(), it + 1
