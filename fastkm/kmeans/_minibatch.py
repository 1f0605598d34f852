"""``MiniBatchKMeans``: scikit-learn's mini-batch estimator API (parameters,
checks in ``fit`` and ``partial_fit``, learned attributes) over the mini-batch
loop in ``_minibatch_core``; ``predict``, ``transform`` and ``score`` are
``KMeans``'s own. Sparse X takes ``_sparse_minibatch``."""
import warnings
from typing import NamedTuple

import numpy as np

from fastkm._compat import BaseEstimator, ClusterMixin, TransformerMixin, invalid_parameter
from fastkm._validation import (
    check_array,
    check_float,
    check_int,
    check_random_state,
    check_sample_weight,
    feature_names,
    is_sparse,
)
from fastkm.kmeans import _core, _sparse_core
from fastkm.kmeans import _minibatch_core as _mb
from fastkm.kmeans import _sparse_minibatch as _smb
from fastkm.kmeans._csr import SparseX
from fastkm.kmeans._estimator import KMeans
from fastkm.kmeans._solver import inertia as _inertia


class _Params(NamedTuple):
    n_clusters: int
    init: object               # 'k-means++', 'random', a callable or a validated array
    n_init: int
    max_iter: int
    batch_size: int            # at most n_samples
    init_size: int             # at most n_samples
    tol: float                 # absolute: tol x the mean column variance
    max_no_improvement: object  # int or None
    reassignment_ratio: float
    adaptive_lr: bool
    compute_labels: bool


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}.")
    return bool(value)


def _check_init(init, X, n_clusters):
    """'k-means++', 'random', a callable, or an array of centers (validated)."""
    if isinstance(init, str):
        if init not in ("k-means++", "random"):
            raise ValueError("init must be 'k-means++', 'random', a callable or an array of "
                             f"shape (n_clusters, n_features); got {init!r}.")
        return init
    if callable(init):
        return init
    if is_sparse(init):
        init = init.toarray()  # n_clusters dense centers either way
    init = check_array(init, dtype=X.dtype, name="init", estimator="MiniBatchKMeans")
    if init.shape[0] != n_clusters:
        raise ValueError(f"The shape of the initial centers {init.shape} does not match "
                         f"the number of clusters {n_clusters}.")
    if init.shape[1] != X.shape[1]:
        raise ValueError(f"The shape of the initial centers {init.shape} does not match "
                         f"the number of features of the data {X.shape[1]}.")
    return init


class MiniBatchKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Mini-batch K-Means: a drop-in replacement for ``sklearn.cluster.MiniBatchKMeans``.

    Each step labels a batch of rows with the nearest centers and moves every
    center towards the mean of its batch rows, with a learning rate that
    shrinks as the center accumulates weight (Sculley 2010). The steps run in
    compiled, GIL-free OpenMP code; results are bitwise identical for any
    number of threads, for ``fit`` and for a stream of ``partial_fit`` calls.

    When the data fit in memory, :class:`fastkm.KMeans` (exact Lloyd steps,
    with bounds) reaches a lower inertia and is often fast enough; this
    estimator is for data that arrive in pieces (``partial_fit``) or that are
    too large for a full pass per iteration.

    X may be sparse (any scipy.sparse matrix or array, e.g. TF-IDF; see
    Notes): its CSR rows are read in place, never densified, and the centers
    are dense.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centroids) to find.
    init : {'k-means++', 'random'}, callable or array-like of shape \
(n_clusters, n_features), default='k-means++'
        How the initial centers are chosen, on ``init_size`` rows of X drawn
        at random (the first ``partial_fit`` call: its rows).

        - 'k-means++': greedy k-means++, weighted by ``sample_weight``.
        - 'random': ``n_clusters`` distinct rows, drawn with probability
          proportional to their weight.
        - a callable: called as ``init(X_subset, n_clusters, random_state=...)``.
        - an array: the initial centers themselves (then ``n_init`` is 1).
    max_iter : int, default=100
        Maximum number of passes over the data in ``fit``: at most
        ``max_iter * n_samples // batch_size`` steps, unless early stopping
        ends the fit sooner.
    batch_size : int, default=1024
        Rows per step in ``fit`` (at most ``n_samples``).
    verbose : int, default=0
        Print the batch inertia of every step, reassignments and why ``fit``
        stopped.
    compute_labels : bool, default=True
        After ``fit``, label every row and compute the inertia on the final
        centers; after ``partial_fit``, do so for the rows of that call.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, the batches and the reassignments. An int
        makes the result reproducible, for any number of threads.
    tol : float, default=0.0
        ``fit`` stops when the summed squared movement of the centers in one
        step is at most ``tol`` times the mean per-feature variance of X.
        0 disables this criterion.
    max_no_improvement : int or None, default=10
        ``fit`` stops after this many consecutive steps without improving the
        exponentially weighted average of the batch inertia (smoothing
        factor ``min(2 * batch_size / (n_samples + 1), 1)``). None disables
        this criterion.
    init_size : int or None, default=None
        Rows drawn (with replacement) for the initialisation and for the
        validation sample that ranks the ``n_init`` initialisations. None:
        ``3 * batch_size``, or ``3 * n_clusters`` if that is smaller than
        ``n_clusters``; at most ``n_samples``.
    n_init : 'auto' or int, default='auto'
        Initialisations tried in ``fit``, each on its own subset; the one with
        the lowest inertia on the validation sample is kept, and only it is
        run. 'auto': 1 for 'k-means++' or an array, 3 for 'random' or a
        callable. ``partial_fit`` initialises once.
    reassignment_ratio : float, default=0.01
        Every ``10 * n_clusters`` samples (and whenever a center has no weight
        yet), the centers whose accumulated weight is below this fraction of
        the largest are moved to random rows of the current batch (at most
        half the batch). 0 disables reassignment.
    adaptive_lr : bool, default=False
        The learning rate of center j is ``sqrt(w_batch,j / w_batch)`` (its
        share of the batch's weight; Schwartzman 2023) instead of
        ``w_batch,j / (W_j + w_batch,j)`` with W_j its accumulated weight: the
        update is ``(1 - rate) * center + rate * mean of its batch rows``.
        The name of scikit-learn's proposed option (pull request 30051).
    n_threads : int, default=None
        Threads of the compiled passes. None: ``OMP_NUM_THREADS`` if set, an
        OpenMP limit set at run time (threadpoolctl), or else the CPUs this
        process may use; -1: every CPU this process may use. Never changes
        a result.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        The centers, in X's dtype (float32 input stays float32).
    labels_ : ndarray of shape (n_samples,), int32
        Index of the nearest center of every row of the last ``fit`` (or of
        the last ``partial_fit`` call's rows), from the final centers. Only
        with ``compute_labels=True``.
    inertia_ : float
        With ``compute_labels=True``: sum of the (weighted) squared distances
        of those rows to their centers. Without: ``fit``'s exponentially
        weighted average of the batch inertia per sample times the total
        weight.
    n_iter_ : int
        Passes over the data ``fit`` made: ``ceil(n_steps_ * batch_size /
        n_samples)``.
    n_steps_ : int
        Batches processed (by ``fit``, then one per ``partial_fit`` call).
    n_features_in_ : int
        Number of features seen in ``fit`` or the first ``partial_fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of X, only when they are all strings (a pandas DataFrame).

    See Also
    --------
    fastkm.KMeans : exact K-Means on all of the data at every iteration.

    Notes
    -----
    Differences from ``sklearn.cluster.MiniBatchKMeans``:

    - Results do not depend on the number of threads (scikit-learn's merge
      its per-thread sums in arbitrary order).
    - Batches of unweighted data are plain integer draws; with unequal
      weights, the CDF of the weights is built once and each row costs one
      binary search (scikit-learn: O(n_samples) per batch). The weighted
      draws are scikit-learn's.
    - The center update groups the batch's rows by label (a counting sort)
      and sums them in float64; cumulative weights are float64.
    - In ``partial_fit``, reassignment is due every ``10 * n_clusters`` rows
      actually seen (scikit-learn counts the first call's batch size per
      call); ``fit`` and a later ``partial_fit`` share one random stream.
    - A negative ``sample_weight`` is an error.

    Sparse input has scikit-learn's semantics: no mean-centring, ``tol``
    relative to the mean variance of the columns (zeros included), k-means++
    on the CSR rows of the ``init_size`` sample, reassigned centers set to the
    (densified) chosen batch rows, dense ``cluster_centers_`` in X's dtype
    (float32 stays float32), ``labels_`` and ``inertia_`` on all of X. Other
    formats are converted to CSR (a copy; the caller's matrix is never
    modified). The batches, reassignments and their random draws are those
    of the same fit on dense X (k-means++ on sparse rows draws the dense
    path's candidates wherever rounding does not move a draw), and from the
    same labels the center update is the dense one bit for bit: on data
    without near-tie rows, a sparse and a dense fit from the same init give
    the same centers, labels and steps (the inertias agree to about 1e-12
    relative in float64). Memory: the centers as tiles and their float64 sums, about
    ``n_clusters * n_features * (itemsize + 8)`` bytes besides X.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import MiniBatchKMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0],
    ...               [4, 2], [4, 0], [4, 4],
    ...               [4, 5], [0, 1], [2, 2],
    ...               [3, 2], [5, 5], [1, -1]])
    >>> # batch by batch
    >>> mbk = MiniBatchKMeans(n_clusters=2, random_state=0, batch_size=6)
    >>> mbk = mbk.partial_fit(X[0:6, :])
    >>> mbk = mbk.partial_fit(X[6:12, :])
    >>> mbk.cluster_centers_
    array([[3.375, 3.   ],
           [0.75 , 0.5  ]])
    >>> mbk.predict([[0, 0], [4, 4]])
    array([1, 0], dtype=int32)
    >>> # on the whole data
    >>> mbk = MiniBatchKMeans(n_clusters=2, random_state=0, batch_size=6, max_iter=10).fit(X)
    >>> mbk.cluster_centers_
    array([[3.55102041, 2.48979592],
           [1.06896552, 1.        ]])
    >>> mbk.predict([[0, 0], [4, 4]])
    array([1, 0], dtype=int32)
    """

    def __init__(
        self, n_clusters=8, *, init="k-means++", max_iter=100, batch_size=1024, verbose=0,
        compute_labels=True, random_state=None, tol=0.0, max_no_improvement=10,
        init_size=None, n_init="auto", reassignment_ratio=0.01, adaptive_lr=False,
        n_threads=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.adaptive_lr = adaptive_lr
        self.n_threads = n_threads

    # KMeans's own: thread count, fitted checks, the test data's checks,
    # labels and distances of new data
    _resolved_threads = KMeans._resolved_threads
    _check_is_fitted = KMeans._check_is_fitted
    _check_test_data = KMeans._check_test_data
    _labels = KMeans._labels
    _transform = KMeans._transform
    predict = KMeans.predict
    transform = KMeans.transform
    fit_transform = KMeans.fit_transform
    score = KMeans.score

    # ---- parameter checks (in fit / partial_fit, never in __init__)
    def _check_params(self, X):
        try:
            return self._params(X)
        except (ValueError, TypeError) as e:
            raise invalid_parameter(e) from None

    def _params(self, X):
        n_samples = X.shape[0]
        n_clusters = check_int(self.n_clusters, "n_clusters", 1)
        if n_samples < n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
        max_iter = check_int(self.max_iter, "max_iter", 1)
        batch_size = min(check_int(self.batch_size, "batch_size", 1), n_samples)
        self._check_step_params()
        tol = check_float(self.tol, "tol", 0.0)
        max_no_improvement = self.max_no_improvement
        if max_no_improvement is not None:
            max_no_improvement = check_int(max_no_improvement, "max_no_improvement", 0)
        init = _check_init(self.init, X, n_clusters)
        is_array = isinstance(init, np.ndarray)
        if isinstance(self.n_init, str):
            if self.n_init != "auto":
                raise ValueError(f"n_init must be 'auto' or an int >= 1; got {self.n_init!r}.")
            n_init = 1 if (is_array or init == "k-means++") else 3
        else:
            n_init = check_int(self.n_init, "n_init", 1)
        if is_array and n_init != 1:
            warnings.warn("Explicit initial center position passed: performing only one init "
                          f"in MiniBatchKMeans instead of n_init={n_init}.", RuntimeWarning,
                          stacklevel=5)
            n_init = 1
        init_size = self._init_size(n_samples, batch_size, n_clusters)
        check_random_state(self.random_state)
        return _Params(n_clusters, init, n_init, max_iter, batch_size, init_size, tol,
                       max_no_improvement, float(self.reassignment_ratio),
                       bool(self.adaptive_lr), bool(self.compute_labels))

    def _check_step_params(self):
        """The parameters every step reads (checked again by each partial_fit)."""
        verbose = int(self.verbose) if isinstance(self.verbose, (bool, np.bool_)) else \
            self.verbose
        check_int(verbose, "verbose", 0)
        _check_bool(self.compute_labels, "compute_labels")
        _check_bool(self.adaptive_lr, "adaptive_lr")
        check_float(self.reassignment_ratio, "reassignment_ratio", 0.0)

    def _init_size(self, n_samples, batch_size, n_clusters):
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * batch_size
            if init_size < n_clusters:
                init_size = 3 * n_clusters
        else:
            init_size = check_int(init_size, "init_size", 1)
            if init_size < n_clusters:
                warnings.warn(f"init_size={init_size} should be larger than n_clusters="
                              f"{n_clusters}. Setting it to min(3*n_clusters, n_samples)",
                              RuntimeWarning, stacklevel=6)
                init_size = 3 * n_clusters
        return min(init_size, n_samples)

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 reads the accepted inputs from the tags
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _validate_first(self, X, sample_weight):
        """X, weights, threads and parameters of fit or a first partial_fit."""
        names = feature_names(X)
        n_threads = self._resolved_threads()
        X = check_array(X, estimator=type(self).__name__, n_threads=n_threads,
                        accept_sparse=True)
        p = self._check_params(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return X, sample_weight, p, n_threads

    def fit(self, X, y=None, sample_weight=None):
        """Compute the centers on X, batch by batch.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (an ``np.memmap`` is read in place; sparse input is
            read as CSR). float32 stays float32; every other numeric type
            becomes float64. Not modified.
        y : None
            Ignored; present for the scikit-learn API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Non-negative weight of each sample (None: all 1). Rows are drawn
            into batches with probability proportional to their weight, and
            the initialisation uses the weights.

        Returns
        -------
        self : MiniBatchKMeans
            The fitted estimator.
        """
        X, sample_weight, p, n_threads = self._validate_first(X, sample_weight)
        random_state = check_random_state(self.random_state)
        if isinstance(X, SparseX):
            p = p._replace(tol=_sparse_core.tolerance(X, p.tol))
            result = _smb.fit(X, sample_weight, p, random_state, n_threads, self.verbose)
        else:
            p = p._replace(tol=_core.tolerance(X, p.tol, n_threads))
            result = _mb.fit(X, sample_weight, p, random_state, n_threads, self.verbose)
        self.cluster_centers_ = result.centers
        self._counts = result.counts
        self._n_since_last_reassign = result.n_since_reassign
        self._random_state = random_state
        self.n_steps_ = result.n_steps
        self.n_iter_ = result.n_iter
        self.inertia_ = result.inertia
        if result.labels is not None:
            self.labels_ = result.labels
        elif hasattr(self, "labels_"):
            del self.labels_
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centers with one batch: the rows of X.

        The first call (on an unfitted estimator) draws the initial centers
        from these rows; every call is then one step. A stream of calls gives
        the same centers as any other process fed the same batches in the
        same order, for any number of threads.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The batch (e.g. a slice of an ``np.memmap``, or sparse rows),
            converted to the dtype of ``cluster_centers_`` after the first
            call. Calls may mix dense and sparse batches.
        y : None
            Ignored; present for the scikit-learn API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Non-negative weight of each row in the update (None: all 1).

        Returns
        -------
        self : MiniBatchKMeans
            The updated estimator.
        """
        if not hasattr(self, "cluster_centers_"):
            X, sample_weight, p, n_threads = self._validate_first(X, sample_weight)
            random_state = getattr(self, "_random_state", None)
            if random_state is None:
                random_state = check_random_state(self.random_state)
            init = _smb.init_on_subset if isinstance(X, SparseX) else _mb.init_on_subset
            centers = init(X, sample_weight, p.n_clusters, p.init, p.init_size, random_state,
                           n_threads)
            self._random_state = random_state
            self._counts = np.zeros(p.n_clusters)
            self._n_since_last_reassign = 0
            self.n_steps_ = 0
        else:
            X = self._check_test_data(X)
            n_threads = self._resolved_threads()
            sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
            try:
                self._check_step_params()
            except (ValueError, TypeError) as e:
                raise invalid_parameter(e) from None
            centers = self.cluster_centers_
        if isinstance(X, SparseX):
            self._sparse_step(X, sample_weight, centers, n_threads)
        else:
            self._dense_step(X, sample_weight, centers, n_threads)
        self.n_steps_ += 1
        if not self.compute_labels:
            # those of an earlier call would describe other rows or centers
            for name in ("labels_", "inertia_"):
                if hasattr(self, name):
                    delattr(self, name)
        return self

    def _dense_step(self, X, sample_weight, centers, n_threads):
        buffers = getattr(self, "_step_buffers", None)
        stepper = _mb.Stepper(centers, self._counts, self._n_since_last_reassign,
                              self.reassignment_ratio, self.adaptive_lr, X.shape[0], n_threads,
                              self.verbose,
                              None if isinstance(buffers, _smb.SparseStepBuffers) else buffers)
        stepper.step(X, None, sample_weight, self._random_state,
                     keep_bounds=bool(self.compute_labels))
        self._step_buffers = stepper.buf
        self.cluster_centers_ = stepper.centers
        self._counts = stepper.counts
        self._n_since_last_reassign = stepper.n_since
        if self.compute_labels:
            self.labels_ = stepper.relabel(X)
            self.inertia_ = float(_inertia(X, sample_weight, stepper.centers, self.labels_,
                                           n_threads))

    def _sparse_step(self, X, sample_weight, centers, n_threads):
        _smb.check_rows(X)
        _smb.check_memory(X, centers.shape[0], 1)
        buffers = getattr(self, "_step_buffers", None)
        stepper = _smb.SparseStepper(
            X, centers, self._counts, self._n_since_last_reassign, self.reassignment_ratio,
            self.adaptive_lr, n_threads, self.verbose,
            buffers if isinstance(buffers, _smb.SparseStepBuffers) else None)
        stepper.step(X, None, sample_weight, self._random_state)
        self._step_buffers = stepper.buf
        self.cluster_centers_ = stepper.dense()
        self._counts = stepper.counts
        self._n_since_last_reassign = stepper.n_since
        if self.compute_labels:
            # predict's labels of the batch on the moved centers
            self.labels_, self.inertia_ = _smb.labels_inertia(X, sample_weight,
                                                              self.cluster_centers_, n_threads)

    def __getstate__(self):
        # the step's scratch buffers are not state (and not picklable)
        getstate = getattr(super(), "__getstate__", None)
        state = dict(getstate() if getstate is not None else self.__dict__)
        state.pop("_step_buffers", None)
        return state

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the label of every row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
            ``labels_`` (computed by ``predict`` when ``compute_labels`` is
            False).
        """
        self.fit(X, sample_weight=sample_weight)
        if hasattr(self, "labels_"):
            return self.labels_
        return self.predict(X)

    def get_feature_names_out(self, input_features=None):
        """Output feature names of ``transform``.

        Parameters
        ----------
        input_features : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        names : ndarray of str objects
            ``minibatchkmeans0``, ``minibatchkmeans1``, ... one per cluster.
        """
        self._check_is_fitted()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.cluster_centers_.shape[0])],
                          dtype=object)
