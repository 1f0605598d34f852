"""Mini-batch K-Means without the estimator class: batch sampling, the state a
fit carries from step to step (``Stepper``: centers, cumulative weights,
random reassignment), early stopping, the initialisation on a subset, and a
whole ``fit``.

The semantics are scikit-learn's ``MiniBatchKMeans`` (Sculley 2010): per-center
learning rates from cumulative weights, reassignment of small clusters every
``10 * n_clusters`` samples, early stopping on the exponentially weighted
average of the batch inertia or on the centers' movement, initialisation on
``init_size`` sampled rows, best of ``n_init`` on a validation sample.

Random numbers are drawn here, from one RandomState, in scikit-learn's order;
the compiled step (``_kernels/minibatch``) draws none and gives the same bits
for any thread count, so a fit, or a stream of ``partial_fit`` calls, gives
the same result whatever the thread count.
"""
from typing import NamedTuple

import numpy as np

from fastkm import _threads
from fastkm._dispatch import lloyd, minibatch
from fastkm._kernels import layout
from fastkm.kmeans._prepare import FitData
from fastkm.kmeans._seeding import init_centers
from fastkm.kmeans._solver import inertia as _inertia


class BatchSampler:
    """The rows of each batch of a fit, drawn with replacement.

    Equal weights: ``randint(0, n, batch_size)``, plain integer draws. Unequal
    weights: a CDF of the normalised weights built once, then one uniform and
    a binary search per row, the draws ``RandomState.choice(n, batch_size,
    p=w / w.sum())`` makes (scikit-learn's), without its O(n) work per step.
    """

    def __init__(self, sample_weight, batch_size):
        self.n = sample_weight.shape[0]
        self.batch_size = batch_size
        self.cdf = None
        if sample_weight.min() != sample_weight.max():
            # what numpy's choice does with p: float64, cumulated, last value 1
            cdf = (sample_weight / np.sum(sample_weight)).astype(np.float64).cumsum()
            cdf /= cdf[-1]
            self.cdf = cdf

    def draw(self, random_state):
        """Rows of the next batch: intp, shape (batch_size,)."""
        if self.cdf is None:
            rows = random_state.randint(0, self.n, self.batch_size)
        else:
            rows = self.cdf.searchsorted(random_state.random_sample(self.batch_size), side="right")
        return rows.astype(np.intp, copy=False)


def step_buffers(buffers, rows, centers):
    """``buffers`` (a ``StepBuffers`` or None) if they serve batches of ``rows``
    rows on these centers, else new ones."""
    k, d = centers.shape
    if buffers is not None and buffers.fits(rows, k, d, centers.dtype):
        return buffers
    return minibatch.StepBuffers(rows, k, d, centers.dtype)


class Stepper:
    """Steps on one set of centers: the compiled step, then random reassignment.

    ``centers`` (k, d) and ``counts`` (k,) float64 are copied; after each step
    ``self.centers`` and ``self.counts`` are the new state. ``n_since`` counts
    the samples seen since the last reassignment check. ``buffers``: a
    ``StepBuffers`` to reuse when it fits batches of ``max_rows`` rows.
    """

    def __init__(self, centers, counts, n_since, reassignment_ratio, adaptive_lr, max_rows,
                 n_threads, verbose=0, buffers=None):
        self.centers = np.array(centers, order="C")
        self.spare = np.empty_like(self.centers)
        self.counts = np.array(counts, dtype=np.float64)
        self.n_since = int(n_since)
        self.ratio = float(reassignment_ratio)
        self.adaptive = bool(adaptive_lr)
        self.n_threads = n_threads
        self.verbose = verbose
        self.buf = step_buffers(buffers, max_rows, self.centers)
        self.searched = None   # rows the last relabel searched

    def _region(self, kind, b):
        k, d = self.centers.shape
        return _threads.region(kind, b * k * d, -(-b // layout.CHUNK_ROWS), self.n_threads)

    def step(self, X, rows, sample_weight, random_state, keep_bounds=False):
        """One step on the batch ``X[rows]`` (``rows`` None: X itself) with
        ``sample_weight`` (one per batch row). Returns the batch's inertia on
        the centers before the step; ``self.buf.shift2`` holds how far each
        center moved (reassignments included). ``keep_bounds``: keep what
        ``relabel`` needs."""
        b = X.shape[0] if rows is None else rows.shape[0]
        reassign = self._reassign_due(b)
        r = self._region("minibatch", b)
        inertia = minibatch.minibatch_step(
            X, rows, sample_weight, self.centers, np.einsum("ij,ij->i", self.centers, self.centers),
            self.spare, self.counts, self.buf, self.adaptive, keep_bounds, r)
        _threads.record(r)
        self.centers, self.spare = self.spare, self.centers
        if reassign and self.ratio > 0:
            batch = X if rows is None else self.buf.batch[:b]
            self._reassign(batch, random_state)
        return inertia

    def relabel(self, batch):
        """Labels (int32) of the last step's batch on the moved centers, as
        ``lloyd.assign_labels`` gives them (the step must have kept bounds)."""
        labels = np.empty(batch.shape[0], dtype=np.int32)
        # sized as a full search; the policy learns this kind's own cost per unit
        r = self._region("minibatch-relabel", batch.shape[0])
        self.searched = minibatch.relabel(
            batch, self.centers, np.einsum("ij,ij->i", self.centers, self.centers), self.buf,
            labels, r)
        _threads.record(r)
        return labels

    def _reassign_due(self, n_rows):
        # every 10 * k samples, and whenever a center has no weight yet
        self.n_since += n_rows
        if self.n_since >= 10 * self.centers.shape[0] or not self.counts.all():
            self.n_since = 0
            return True
        return False

    def _reassign(self, batch, random_state):
        # centers whose weight is below ratio x the largest move to random batch
        # rows (at most half the batch); their weight becomes the smallest kept one
        counts = self.counts
        b = batch.shape[0]
        to_reassign = counts < self.ratio * counts.max()
        if to_reassign.sum() > 0.5 * b:
            to_reassign[np.argsort(counts, kind="stable")[int(0.5 * b):]] = False
        n_reassign = int(to_reassign.sum())
        if n_reassign:
            picked = random_state.choice(b, replace=False, size=n_reassign)
            if self.verbose:
                print(f"[MiniBatchKMeans] Reassigning {n_reassign} cluster centers.")
            self.centers[to_reassign] = batch[picked]
            moved = self.centers[to_reassign].astype(np.float64) - self.spare[to_reassign]
            self.buf.shift2[to_reassign] = (moved ** 2).sum(axis=1)
        if not to_reassign.all():
            counts[to_reassign] = np.min(counts[~to_reassign])


class EarlyStopping:
    """scikit-learn's stopping rule for ``fit``: the centers moved less than
    ``tol`` (squared, summed; ``tol`` > 0 only), or the exponentially weighted
    average of the batch inertia per sample has not improved for
    ``max_no_improvement`` steps (None: never). The first step is ignored: its
    inertia is that of the initial centers."""

    def __init__(self, n_samples, batch_size, tol, max_no_improvement, n_steps, verbose):
        self.alpha = min(batch_size * 2.0 / (n_samples + 1), 1.0)
        self.batch_size = batch_size
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.n_steps = n_steps
        self.verbose = verbose
        self.ewa_inertia = None
        self.ewa_inertia_min = None
        self.no_improvement = 0
        self.last = None

    def __call__(self, step, batch_inertia, centers_squared_diff):
        """True when the fit should stop after step ``step`` (from 0)."""
        batch_inertia /= self.batch_size
        self.last = batch_inertia
        step += 1
        if step == 1:
            if self.verbose:
                print(f"Minibatch step {step}/{self.n_steps}: mean batch inertia: "
                      f"{batch_inertia}")
            return False
        if self.ewa_inertia is None:
            self.ewa_inertia = batch_inertia
        else:
            self.ewa_inertia = self.ewa_inertia * (1 - self.alpha) + batch_inertia * self.alpha
        if self.verbose:
            print(f"Minibatch step {step}/{self.n_steps}: mean batch inertia: "
                  f"{batch_inertia}, ewa inertia: {self.ewa_inertia}")
        if self.tol > 0.0 and centers_squared_diff <= self.tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{self.n_steps}")
            return True
        if self.ewa_inertia_min is None or self.ewa_inertia < self.ewa_inertia_min:
            self.no_improvement = 0
            self.ewa_inertia_min = self.ewa_inertia
        else:
            self.no_improvement += 1
        if self.max_no_improvement is not None and self.no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step "
                      f"{step}/{self.n_steps}")
            return True
        return False


def labels_inertia(X, sample_weight, centers, n_threads):
    """Nearest-center labels (int32, ``lloyd.assign_labels``) and the weighted
    inertia (float64, fixed row blocks) of X on ``centers``."""
    n = X.shape[0]
    k, d = centers.shape
    labels = np.empty(n, dtype=np.int32)
    r = _threads.region("assign", n * k * d, -(-n // layout.CHUNK_ROWS), n_threads)
    lloyd.assign_labels(X, centers, labels, r)
    _threads.record(r)
    return labels, float(_inertia(X, sample_weight, centers, labels, n_threads))


def init_on_subset(X, sample_weight, n_clusters, init, init_size, random_state, n_threads):
    """Initial centers from ``init_size`` rows drawn with replacement (all of X
    when ``init_size`` is None or at least n), as scikit-learn's
    ``_init_centroids``: k-means++ and 'random' use the rows' weights."""
    n = X.shape[0]
    if init_size is not None and init_size < n:
        rows = random_state.randint(0, n, init_size)
        X, sample_weight = X[rows], sample_weight[rows]
    data = FitData(np.ascontiguousarray(X), sample_weight, None, sample_weight, False, None, None)
    return init_centers(data, n_clusters, init, random_state, n_threads)


def _describe(init):
    return init if isinstance(init, str) else ("an array" if isinstance(init, np.ndarray)
                                               else "a callable")


def initial_centers(X, sample_weight, n_clusters, init, n_init, init_size, random_state,
                    n_threads, verbose=0):
    """Best of ``n_init`` initialisations on subsets, by inertia on one
    validation sample of ``init_size`` rows (drawn first, as scikit-learn)."""
    valid = random_state.randint(0, X.shape[0], init_size)
    best = None
    for i in range(n_init):
        if verbose:
            print(f"Init {i + 1}/{n_init} with method {_describe(init)}")
        centers = init_on_subset(X, sample_weight, n_clusters, init, init_size, random_state,
                                 n_threads)
        if n_init == 1 and not verbose:
            return centers
        _, inertia = labels_inertia(X[valid], sample_weight[valid], centers, n_threads)
        if verbose:
            print(f"Inertia for init {i + 1}/{n_init}: {inertia}")
        if best is None or inertia < best[0]:
            best = (inertia, centers)
    return best[1]


class MiniBatchResult(NamedTuple):
    centers: np.ndarray       # (k, d), X's dtype
    counts: np.ndarray        # (k,) float64 cumulative weights
    n_since_reassign: int     # samples since the last reassignment check
    n_steps: int
    n_iter: int               # passes over the data, ceil(n_steps * batch_size / n)
    ewa_inertia: float        # per sample, of the last steps' batches
    labels: object            # (n,) int32, or None without compute_labels
    inertia: float            # of X (compute_labels), else ewa_inertia x total weight


def run_steps(stepper, X, sample_weight, p, random_state, verbose):
    """The steps of a fit (dense or sparse ``stepper``) on batches drawn from
    X's rows, until ``max_iter`` passes or early stopping: (steps taken, the
    smoothed batch inertia per sample)."""
    n = X.shape[0]
    sampler = BatchSampler(sample_weight, p.batch_size)
    n_steps = (p.max_iter * n) // p.batch_size
    stop = EarlyStopping(n, p.batch_size, p.tol, p.max_no_improvement, n_steps, verbose)
    # rows are drawn by weight: each counts once in the update (as scikit-learn)
    unit = np.ones(p.batch_size, dtype=X.dtype)
    step = 0
    for step in range(n_steps):
        batch_inertia = stepper.step(X, sampler.draw(random_state), unit, random_state)
        shift = float(stepper.buf.shift2.sum()) if p.tol > 0.0 else 0.0
        if stop(step, batch_inertia, shift):
            break
    return step + 1, stop.ewa_inertia if stop.ewa_inertia is not None else stop.last


def fit(X, sample_weight, p, random_state, n_threads, verbose=0):
    """A whole mini-batch fit on validated X and weights with validated
    parameters ``p`` (``_minibatch._Params``)."""
    n = X.shape[0]
    centers = initial_centers(X, sample_weight, p.n_clusters, p.init, p.n_init, p.init_size,
                              random_state, n_threads, verbose)
    stepper = Stepper(centers, np.zeros(p.n_clusters), 0, p.reassignment_ratio, p.adaptive_lr,
                      p.batch_size, n_threads, verbose)
    n_steps, ewa = run_steps(stepper, X, sample_weight, p, random_state, verbose)
    labels, inertia = None, ewa * float(np.sum(sample_weight, dtype=np.float64))
    if p.compute_labels:
        labels, inertia = labels_inertia(X, sample_weight, stepper.centers, n_threads)
    return MiniBatchResult(stepper.centers, stepper.counts, stepper.n_since, n_steps,
                           int(np.ceil(n_steps * p.batch_size / n)), ewa, labels, inertia)
