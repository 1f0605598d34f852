"""Mini-batch K-Means on sparse (CSR) rows: the sparse counterpart of
``_minibatch_core`` (whose batch sampler, early stopping and result it shares).

The semantics are scikit-learn's for sparse ``MiniBatchKMeans``: dense centers,
no mean-centring, ``tol`` scaled by the mean column variance (zeros included),
reassigned centers set to the densified chosen batch rows, initialisation on
``init_size`` sampled rows (k-means++ on the CSR rows themselves). Random
numbers are drawn in the dense path's order, from the same RandomState, and the
draws never depend on the data: a sparse fit and a dense fit of the same rows
from the same init draw the same batches.

The data flow is the sparse fit's: the centers live in the tile layout the
sparse kernels read (``_sparse_solver.Centers``) for the whole fit, a step
labels the batch's CSR rows in place (no gather, no densified batch) and
updates the tiles (``_kernels/sparse_minibatch``); dense centers are made once,
at the end. Every step is the same bits for any thread count.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import sparse_minibatch
from fastkm._kernels import layout, sparse_centers
from fastkm.kmeans import _minibatch_core as _mb
from fastkm.kmeans._csr import check_csr
from fastkm.kmeans._sparse_core import predict as _predict
from fastkm.kmeans._sparse_core import refuse_if_too_big
from fastkm.kmeans._sparse_seeding import init_centers_csr
from fastkm.kmeans._sparse_solver import Centers, aligned_empty

INT32_MAX = np.iinfo(np.int32).max


class SparseStepBuffers:
    """The scratch of sparse steps on (k, d) centers in one dtype, reused from
    step to step (and from one ``partial_fit`` call to the next): the (k, d)
    float64 sums, zero between steps, and the counting sort's arrays."""

    def __init__(self, n_clusters, n_features, dtype):
        self.shape = (n_clusters, n_features)
        self.dtype = np.dtype(dtype)
        self.sums = aligned_empty(self.shape, np.float64, zero=True)
        self.starts = np.empty(n_clusters + 1, dtype=np.intp)
        self.batch_weight = np.empty(n_clusters)
        self.shift2 = np.zeros(n_clusters)

    def fits(self, n_clusters, n_features, dtype):
        return self.shape == (n_clusters, n_features) and self.dtype == np.dtype(dtype)


def subset(X, rows):
    """Rows of a ``SparseX`` (repeats allowed) as a new ``SparseX``."""
    return check_csr(X.matrix[np.asarray(rows)], dtype=X.dtype, estimator="MiniBatchKMeans")


class SparseStepper:
    """Steps on one set of centers, kept as ``Centers`` tiles: the compiled
    step, then random reassignment (``_minibatch_core.Stepper``'s rules).

    ``centers`` (k, d) dense and ``counts`` (k,) float64 are copied. After each
    step ``self.counts`` is the new state and ``self.dense()`` the centers;
    ``self.buf.shift2`` how far each center moved in the last step."""

    def __init__(self, X, centers, counts, n_since, reassignment_ratio, adaptive_lr,
                 n_threads, verbose=0, buffers=None):
        k, d = centers.shape
        self.C = Centers(X, np.ascontiguousarray(centers, dtype=X.dtype), n_threads)
        self.k, self.d = k, d
        self.kt = self.C.ct.shape[2]
        self.block = sparse_centers.feature_blocks(d)[1]
        self.counts = np.array(counts, dtype=np.float64)
        self.n_since = int(n_since)
        self.ratio = float(reassignment_ratio)
        self.adaptive = bool(adaptive_lr)
        self.n_threads = n_threads
        self.verbose = verbose
        if buffers is None or not buffers.fits(k, d, X.dtype):
            buffers = SparseStepBuffers(k, d, X.dtype)
        self.buf = buffers

    def step(self, X, rows, sample_weight, random_state):
        """One step on the batch ``X[rows]`` (``rows`` None: all of X) with
        ``sample_weight`` (one per batch row). Returns the batch's inertia on
        the centers before the step."""
        C, buf = self.C, self.buf
        b = X.shape[0] if rows is None else rows.shape[0]
        rows32 = None if rows is None else rows.astype(np.int32)
        reassign = self._reassign_due(b)
        labels = np.empty(b, dtype=np.int32)
        n_chunks = -(-b // layout.CHUNK_ROWS)
        nnz = X.nnz if rows is None else int(X.nnz * b / max(X.shape[0], 1))
        r = _threads.region("sparse-minibatch", nnz * self.k, n_chunks, self.n_threads)
        inertia = sparse_minibatch.assign_batch(X.rows, rows32, sample_weight, C.ct, C.hn,
                                                C.cnorm, labels, np.empty(n_chunks), r)
        _threads.record(r)
        order = np.empty(b, dtype=np.int32)
        counts_new = np.empty(self.k)
        total = sparse_minibatch.group_batch(labels, sample_weight, self.counts, buf.starts,
                                             order, buf.batch_weight, counts_new)
        # decided on the counts after the update (as scikit-learn), drawn after it
        to_reassign = self._to_reassign(counts_new, b) if reassign and self.ratio > 0 else None
        updated = (buf.batch_weight > 0).astype(np.uint8)
        if to_reassign is not None:
            # moved to rows below: their lanes keep the centers before the step,
            # the start of their movement
            updated[to_reassign] = 0
        todo = np.flatnonzero(updated).astype(np.int32)
        tiles = np.unique(todo // self.kt).astype(np.int32)
        r = _threads.region("sparse-minibatch-update", nnz + todo.size * self.d,
                            todo.size, self.n_threads)
        sparse_minibatch.update_centers(
            X.rows, rows32, sample_weight, buf.starts, order, todo, updated, tiles,
            self.counts, buf.batch_weight, total, self.adaptive, buf.sums, C.ct,
            C.shift_part, C.norm_part, self.block, r)
        _threads.record(r)
        self.counts = counts_new
        buf.shift2[:] = 0.0
        buf.shift2[todo] = C.shift_part[todo].sum(axis=1)
        C.cnorm[todo] = C.norm_part[todo].sum(axis=1)
        if to_reassign is not None:
            self._reassign(X, rows, to_reassign, random_state)
        C._half_norms()
        return inertia

    def _reassign_due(self, n_rows):
        # every 10 * k samples, and whenever a center has no weight yet
        self.n_since += n_rows
        if self.n_since >= 10 * self.k or not self.counts.all():
            self.n_since = 0
            return True
        return False

    def _to_reassign(self, counts, b):
        # centers whose weight is below ratio x the largest (at most half the batch)
        to_reassign = counts < self.ratio * counts.max()
        if to_reassign.sum() > 0.5 * b:
            to_reassign[np.argsort(counts, kind="stable")[int(0.5 * b):]] = False
        return to_reassign

    def _reassign(self, X, rows, to_reassign, random_state):
        # the chosen centers move to random batch rows (densified into their
        # tile lanes); their weight becomes the smallest kept one
        counts = self.counts
        b = X.shape[0] if rows is None else rows.shape[0]
        n_reassign = int(to_reassign.sum())
        if n_reassign:
            picked = random_state.choice(b, replace=False, size=n_reassign)
            if self.verbose:
                print(f"[MiniBatchKMeans] Reassigning {n_reassign} cluster centers.")
            which = np.flatnonzero(to_reassign).astype(np.int32)
            src = np.ascontiguousarray(picked if rows is None else rows[picked], dtype=np.intp)
            C = self.C
            moved = np.empty((n_reassign, C.norm_part.shape[1]))
            sparse_minibatch.reassign_lanes(
                X.rows, src, which, np.unique(which // self.kt).astype(np.int32), C.ct,
                C.norm_part, moved, self.block,
                _threads.threads_for("sparse-reassign", n_reassign * self.d, self.n_threads))
            C.cnorm[which] = C.norm_part[which].sum(axis=1)
            self.buf.shift2[which] = moved.sum(axis=1)
        if not to_reassign.all():
            counts[to_reassign] = np.min(counts[~to_reassign])

    def dense(self):
        """The (k, d) centers, in X's dtype (a new array)."""
        return self.C.dense()


def labels_inertia(X, sample_weight, centers, n_threads):
    """Nearest-center labels (int32, ``_sparse_core.predict``'s) and the weighted
    inertia (float64, fixed row blocks) of sparse X on dense ``centers``."""
    C = Centers(X, centers, n_threads)
    labels = _predict(X, centers, n_threads, C)
    return labels, C.inertia(X, sample_weight, labels)


def init_on_subset(X, sample_weight, n_clusters, init, init_size, random_state, n_threads):
    """Initial (dense) centers from ``init_size`` rows drawn with replacement (all
    of X when ``init_size`` is None or at least n), as the dense path."""
    n = X.shape[0]
    if init_size is not None and init_size < n:
        rows = random_state.randint(0, n, init_size)
        X, sample_weight = subset(X, rows), sample_weight[rows]
    return init_centers_csr(X, sample_weight, n_clusters, init, random_state, n_threads)


def initial_centers(X, sample_weight, n_clusters, init, n_init, init_size, random_state,
                    n_threads, verbose=0):
    """Best of ``n_init`` initialisations on subsets, by inertia on one
    validation sample of ``init_size`` rows (drawn first, as scikit-learn)."""
    valid = random_state.randint(0, X.shape[0], init_size)
    best, X_valid = None, None
    for i in range(n_init):
        if verbose:
            print(f"Init {i + 1}/{n_init} with method {_mb._describe(init)}")
        centers = init_on_subset(X, sample_weight, n_clusters, init, init_size, random_state,
                                 n_threads)
        if n_init == 1 and not verbose:
            return centers
        if X_valid is None:
            X_valid = subset(X, valid)
        _, inertia = labels_inertia(X_valid, sample_weight[valid], centers, n_threads)
        if verbose:
            print(f"Inertia for init {i + 1}/{n_init}: {inertia}")
        if best is None or inertia < best[0]:
            best = (inertia, centers)
    return best[1]


def fit_bytes(n_clusters, n_features, itemsize, n_init):
    """Peak bytes a sparse mini-batch fit allocates besides X, and what they are."""
    k, d = n_clusters, n_features
    n_tiles = sparse_centers.tile_shape(k, d, itemsize == 4)
    parts = {
        "center tiles": n_tiles[0] * n_tiles[1] * n_tiles[2] * itemsize,
        "float64 center sums": 8 * k * d,
        "dense centers": k * d * itemsize * (2 if n_init > 1 else 1),
    }
    return sum(parts.values()), parts


def check_memory(X, n_clusters, n_init, available=None):
    """MemoryError, before anything is allocated, when the fit would not fit."""
    need, parts = fit_bytes(n_clusters, X.shape[1], X.dtype.itemsize, n_init)
    refuse_if_too_big("MiniBatchKMeans", need, parts, n_clusters, X.shape[1], available)


def check_rows(X):
    """The batch kernels index rows with int32."""
    if X.shape[0] > INT32_MAX:
        raise ValueError(f"Sparse MiniBatchKMeans takes at most 2**31 - 1 rows; X has "
                         f"{X.shape[0]}.")


def fit(X, sample_weight, p, random_state, n_threads, verbose=0):
    """A whole mini-batch fit on a validated ``SparseX`` and weights with
    validated parameters ``p`` (``_minibatch._Params``, ``tol`` already scaled)."""
    check_rows(X)
    check_memory(X, p.n_clusters, p.n_init)
    n = X.shape[0]
    centers = initial_centers(X, sample_weight, p.n_clusters, p.init, p.n_init, p.init_size,
                              random_state, n_threads, verbose)
    stepper = SparseStepper(X, centers, np.zeros(p.n_clusters), 0, p.reassignment_ratio,
                            p.adaptive_lr, n_threads, verbose)
    del centers
    n_steps, ewa = _mb.run_steps(stepper, X, sample_weight, p, random_state, verbose)
    centers = stepper.dense()
    labels, inertia = None, ewa * float(np.sum(sample_weight, dtype=np.float64))
    if p.compute_labels:
        labels, inertia = labels_inertia(X, sample_weight, centers, n_threads)
    return _mb.MiniBatchResult(centers, stepper.counts, stepper.n_since, n_steps,
                               int(np.ceil(n_steps * p.batch_size / n)), ewa, labels,
                               float(inertia))
