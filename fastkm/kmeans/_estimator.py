"""``KMeans`` and ``k_means``: scikit-learn's estimator API (parameters, checks in
``fit``, learned attributes, ``predict``/``transform``/``score``) over the
compiled fit in ``_core``."""
import warnings
from typing import NamedTuple

import numpy as np

from fastkm import _threads
from fastkm._compat import (
    BaseEstimator,
    ClusterMixin,
    ConvergenceWarning,
    NotFittedError,
    TransformerMixin,
    invalid_parameter,
)
from fastkm._dispatch import lloyd
from fastkm._kernels import layout, stats
from fastkm._validation import (
    check_array,
    check_float,
    check_int,
    check_random_state,
    check_sample_weight,
    feature_names,
    is_sparse,
)
from fastkm.kmeans import _core, _outofcore, _policy, _sparse_core
from fastkm.kmeans._csr import SparseX


class _Params(NamedTuple):
    n_clusters: int
    init: object          # 'k-means++', 'random', a callable or a validated array
    n_init: int
    max_iter: int
    tol: float
    n_threads: int


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """K-Means clustering: a drop-in replacement for ``sklearn.cluster.KMeans``.

    The assignment and center-update passes run in compiled, GIL-free OpenMP
    loops. Results are bitwise identical for any number of threads.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centroids) to find.
    init : {'k-means++', 'k-means||', 'random'}, callable or array-like of shape \
(n_clusters, n_features), default='k-means++'
        How the initial centers are chosen.

        - 'k-means++': greedy k-means++ (``2 + int(ln k)`` local trials per
          center), the same random draws as scikit-learn's.
        - 'k-means||': scalable k-means++ (Bahmani et al. 2012): 5 rounds
          that each draw about ``2 * n_clusters`` rows by their squared
          distance to the candidates so far, then the candidates, weighted by
          the sample weight nearest to each, reclustered by weighted k-means++
          and Lloyd. A few passes over X instead of one per center: faster
          for large ``n_clusters`` and for data on disk (see ``fit``), and
          the same centers as ``fastkm.dask.KMeans`` from the same rows.
        - 'random': ``n_clusters`` distinct rows, drawn with probability
          proportional to their weight.
        - a callable: called as ``init(X, n_clusters, random_state=...)``; it
          returns the centers.
        - an array: the initial centers themselves (then ``n_init`` is 1).
    n_init : 'auto' or int, default='auto'
        Number of runs from different initial centers; the run with the lowest
        inertia is kept. 'auto' is 1 for 'k-means++', 'k-means||' or an array,
        10 for 'random' or a callable.
    max_iter : int, default=300
        Maximum number of iterations of one run.
    tol : float, default=1e-4
        Convergence tolerance on the summed squared movement of the centers in
        one iteration, relative to the mean per-feature variance of X. A run
        also stops when no label changes.
    verbose : int, default=0
        Print the inertia of every iteration and why a run stopped.
    random_state : int, RandomState instance or None, default=None
        Seed of the initial centers. An int makes the result reproducible; the
        same seed gives the same result for any number of threads.
    copy_x : bool, default=True
        With more than 8 features the data are mean-centred (on a copy) for
        accuracy; ``copy_x=False`` skips that and its copy. The input is never
        modified either way. Sparse input is never centred.
    algorithm : {'auto', 'lloyd', 'hamerly', 'exponion', 'elkan'}, default='auto'
        The exact algorithm. All give the labels plain Lloyd gives from the same
        initial centers; they differ in speed and memory.

        - 'lloyd': every distance, in fused compiled tiles.
        - 'hamerly': two distance bounds per sample skip most distances.
        - 'exponion': Hamerly's bounds, and a sample that fails them searches
          only its center's 16 nearest centers when that suffices (k x 16 x
          n_features values; above 32 MiB it runs 'hamerly' with a warning).
        - 'elkan': one bound per (sample, center) pair (n_samples x n_clusters
          values; above 1 GiB it runs 'hamerly' with a warning).
        - 'auto': Lloyd for one cluster, at 3 features, and up to 4 features
          when the rows could be put in spatial order; Exponion otherwise
          (Hamerly when Exponion's lists would be too large). For sparse
          input: Lloyd for one cluster and small problems, else Elkan (Hamerly
          when Elkan's bounds would pass 1 GiB). ``algorithm_`` says which ran.
    n_threads : int, default=None
        Threads of the compiled passes. None: ``OMP_NUM_THREADS`` if set, an
        OpenMP limit set at run time (threadpoolctl), or else the CPUs this
        process may use, capped by its cgroup CPU quota (see
        ``fastkm.show_config()``); -1: every CPU this process may use. Small
        passes, and passes on a busy machine, use fewer (see Notes).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        The centers, in X's dtype (float32 input stays float32).
    labels_ : ndarray of shape (n_samples,), int32
        Index of the center of every training sample (computed from the final
        centers).
    inertia_ : float
        Sum of the (weighted) squared distances of the samples to their centers.
    n_iter_ : int
        Iterations of the best run.
    algorithm_ : str
        The algorithm that ran ('auto' resolved; 'hamerly' when a memory cap
        replaced 'elkan' or 'exponion').
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of X, only when they are all strings (a pandas DataFrame).

    See Also
    --------
    fastkm.k_means : the same as a function.
    fastkm.kmeans_plusplus : the initial centers alone.

    Notes
    -----
    Differences from ``sklearn.cluster.KMeans``:

    - 'hamerly' and 'exponion' are extra algorithms, and 'elkan' and every
      other one give exactly Lloyd's labels, centers and inertia (scikit-learn's
      Elkan and Lloyd can differ in the last bits).
    - Results do not depend on the number of threads.
    - A negative ``sample_weight`` is an error; scikit-learn accepts it.
    - The input is never modified, also with ``copy_x=False``.
    - Rows that repeat (image colors) are fitted once with their total weight,
      and with few features rows are reordered so that close rows are
      neighbours: exact, and faster.
    - Sparse input also accepts int64 column indices and row pointers
      (scikit-learn rejects them).

    Sparse input (scipy.sparse matrices and arrays, e.g. TF-IDF): CSR is used
    as it is; CSC, COO and the other formats are converted to CSR (a copy).
    float32 values stay float32, any other type becomes float64. int64 column
    indices are converted to int32 (a copy; more than 2**31 columns is an
    error), int64 row pointers are kept (more than 2**31 nonzeros are fine).
    Rows with unsorted or repeated column indices are sorted and summed on a
    copy; explicit zeros are fine. The caller's matrix is never modified. As in
    scikit-learn, sparse data are not mean-centred, ``tol`` is relative to the
    mean variance of the columns (zeros included), empty clusters take the
    rows farthest from their centers, and ``cluster_centers_`` is a dense
    ndarray. Every algorithm gives Lloyd's labels on sparse input too, the
    same bits for any number of threads, and sparse and dense copies of the
    same data give the same labels (up to rounding ties). scipy is imported
    only when sparse input arrives.

    Memory of a sparse fit: besides X, about
    ``n_clusters * n_features * (8 + 2 * itemsize)`` bytes (the centers in the
    kernels' transposed tiles, their float64 sums and the dense result; one
    more dense copy with ``n_init > 1``), ``n_samples * n_clusters * itemsize``
    more for 'elkan', and a few bytes per sample. 10,000 centers over 100,000
    terms are 8 GB per float64 copy. The fit raises a MemoryError before
    allocating when this is more than the memory available (the system's
    available memory and this process's cgroup limit); fewer clusters, fewer
    features (e.g. ``TfidfVectorizer(max_features=...)``) or float32 data need
    less.

    Threads: a parallel pass costs its threads a start and a barrier; on a
    busy machine the barrier waits for whichever thread the OS preempted.
    Each pass therefore gets only as many threads as its measured work pays
    for, learned as the fit runs; this never changes a result.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> km.labels_
    array([1, 1, 1, 0, 0, 0], dtype=int32)
    >>> km.predict([[0, 0], [12, 3]])
    array([1, 0], dtype=int32)
    >>> km.cluster_centers_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> km.algorithm_
    'exponion'
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

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 reads the accepted inputs from the tags
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ---- parameter checks (in fit, never in __init__)
    def _resolved_threads(self):
        try:
            return _threads.resolve(self.n_threads)
        except (ValueError, TypeError) as e:
            raise invalid_parameter(e) from None

    def _check_params(self, X, n_threads):
        try:
            return self._params(X, n_threads)
        except (ValueError, TypeError) as e:
            raise invalid_parameter(e) from None

    def _params(self, X, n_threads):
        n_samples, n_features = X.shape
        n_clusters = check_int(self.n_clusters, "n_clusters", 1)
        if n_samples < n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
        max_iter = check_int(self.max_iter, "max_iter", 1)
        tol = check_float(self.tol, "tol", 0.0)
        check_int(int(self.verbose) if isinstance(self.verbose, (bool, np.bool_)) else self.verbose,
                  "verbose", 0)
        if self.algorithm not in _policy.ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(map(repr, _policy.ALGORITHMS))};"
                             f" got {self.algorithm!r}.")
        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "k-means||", "random"):
                raise ValueError(
                    "init must be 'k-means++', 'k-means||', 'random', a callable or an array "
                    f"of shape (n_clusters, n_features); got {init!r}."
                )
        elif not callable(init):
            if is_sparse(init):
                init = init.toarray()  # n_clusters dense centers either way
            init = check_array(init, dtype=X.dtype, name="init", estimator="KMeans")
            if init.shape[0] != n_clusters:
                raise ValueError(f"The shape of the initial centers {init.shape} does not match "
                                 f"the number of clusters {n_clusters}.")
            if init.shape[1] != n_features:
                raise ValueError(f"The shape of the initial centers {init.shape} does not match "
                                 f"the number of features of the data {n_features}.")
        if isinstance(self.n_init, str):
            if self.n_init != "auto":
                raise ValueError(f"n_init must be 'auto' or an int >= 1; got {self.n_init!r}.")
            n_init = 1 if (isinstance(init, np.ndarray)
                           or init in ("k-means++", "k-means||")) else 10
        else:
            n_init = check_int(self.n_init, "n_init", 1)
        if isinstance(init, np.ndarray) and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"KMeans instead of n_init={n_init}.",
                RuntimeWarning,
                stacklevel=4,
            )
            n_init = 1
        if not isinstance(self.copy_x, (bool, np.bool_)):
            raise TypeError(f"copy_x must be a bool; got {self.copy_x!r}.")
        if self.algorithm == "elkan" and n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' "
                "instead.", RuntimeWarning, stacklevel=4,
            )
        return _Params(n_clusters, init, n_init, max_iter, tol, n_threads)

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. float32 stays float32; every other numeric type
            becomes float64. Not modified. Sparse input: see Notes.
        y : None
            Ignored; present for the scikit-learn API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Non-negative weight of each sample (None: all 1).

        Returns
        -------
        self : KMeans
            The fitted estimator.

        Notes
        -----
        A memory-mapped X (``np.memmap``, ``np.load(path, mmap_mode='r')``, or
        any view of one) is fitted out of core: read in windows of whole row
        blocks, never copied whole (other dtypes are converted one window at
        a time), every algorithm and init supported, with per-row state only
        (the labels, the weights, and the bounds of 'hamerly', 'exponion' or
        'elkan'). Its rows are fitted as stored: no deduplication, reordering
        or mean-centring, so "the same fit in memory" is the fit of the same
        rows with ``copy_x=False`` (deduplication and reordering change no
        label; centring changes the rounding). From the same init the labels
        are those of that in-memory fit, the inertia equal to about 1e-9
        relative (the sums are added in a fixed tree over blocks of 65,536 or
        more rows instead of in-memory block order), and the result is the
        same bits for any thread count. ``predict``, ``transform`` and
        ``score`` stream a memory-mapped X the same way.
        """
        if _outofcore.is_memmap(X):
            return _outofcore.fit(self, X, sample_weight)
        names = feature_names(X)
        n_threads = self._resolved_threads()
        X = check_array(X, estimator=type(self).__name__, n_threads=n_threads,
                        accept_sparse=True)
        p = self._check_params(X, n_threads)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        algorithm = "lloyd" if (self.algorithm == "elkan" and p.n_clusters == 1) else \
            self.algorithm
        result = _core.fit(
            X, sample_weight, p.n_clusters, init=p.init, n_init=p.n_init, max_iter=p.max_iter,
            tol=p.tol, random_state=check_random_state(self.random_state), algorithm=algorithm,
            copy_x=bool(self.copy_x), verbose=self.verbose, n_threads=p.n_threads,
        )
        if result.n_distinct < p.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({result.n_distinct}) found smaller than "
                f"n_clusters ({p.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = result.centers
        self.labels_ = result.labels
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.algorithm_ = result.algorithm
        self.n_features_in_ = X.shape[1]
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
        X = check_array(X, dtype=self.cluster_centers_.dtype, estimator=type(self).__name__,
                        n_threads=self._resolved_threads(), accept_sparse=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _labels(self, X):
        if isinstance(X, SparseX):
            return _sparse_core.predict(X, self.cluster_centers_, self._resolved_threads())
        labels = np.empty(X.shape[0], dtype=np.int32)
        k, d = self.cluster_centers_.shape
        r = _threads.region("assign", X.shape[0] * k * d, -(-X.shape[0] // layout.CHUNK_ROWS),
                            self._resolved_threads())
        lloyd.assign_labels(X, self.cluster_centers_, labels, r)
        _threads.record(r)
        return labels

    def predict(self, X):
        """Index of the closest cluster center for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            New data, converted to the dtype of ``cluster_centers_``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
            Index of the nearest center (the lowest index on ties). No
            (n_samples, n_clusters) temporary is made.
        """
        if _outofcore.is_memmap(X):
            return _outofcore.predict(self, X)
        return self._labels(self._check_test_data(X))

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distance of each sample to each cluster center.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
            In the dtype of ``cluster_centers_``.
        """
        if _outofcore.is_memmap(X):
            return _outofcore.transform(self, X)
        return self._transform(self._check_test_data(X))

    def _transform(self, X):
        if isinstance(X, SparseX):
            return _sparse_core.transform(X, self.cluster_centers_, self._resolved_threads())
        k, d = self.cluster_centers_.shape
        out = np.empty((X.shape[0], k), dtype=X.dtype)
        r = _threads.region("transform", X.shape[0] * k * d, X.shape[0],
                            self._resolved_threads())
        lloyd.pairwise_distances(X, self.cluster_centers_, out, r)
        _threads.record(r)
        return out

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of X to the cluster centers.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        if _outofcore.is_memmap(X):
            return self.fit(X, sample_weight=sample_weight).transform(X)
        return self.fit(X, sample_weight=sample_weight)._transform(
            check_array(X, dtype=self.cluster_centers_.dtype, accept_sparse=True)
        )

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X on the fitted centers.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            ``-sum(w_i * ||x_i - nearest center||^2)``: larger is better.
        """
        if _outofcore.is_memmap(X):
            return _outofcore.score(self, X, sample_weight)
        X = self._check_test_data(X)
        sw = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        if isinstance(X, SparseX):
            return _sparse_core.score(X, sw, self.cluster_centers_, self._resolved_threads())
        labels = self._labels(X)
        n_blocks, rows_per_block = layout.block_layout(X.shape[0])
        inertia = stats.inertia(
            X, sw, self.cluster_centers_, labels, np.empty(n_blocks), rows_per_block,
            _threads.threads_for("inertia", X.size, self._resolved_threads()))
        return -float(inertia)

    def get_feature_names_out(self, input_features=None):
        """Output feature names of ``transform``.

        Parameters
        ----------
        input_features : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        names : ndarray of str objects
            ``kmeans0``, ``kmeans1``, ... one per cluster.
        """
        self._check_is_fitted()
        return np.asarray([f"kmeans{i}" for i in range(self.cluster_centers_.shape[0])],
                          dtype=object)


def k_means(
    X, n_clusters, *, sample_weight=None, init="k-means++", n_init="auto", max_iter=300,
    verbose=False, tol=1e-4, random_state=None, copy_x=True, algorithm="auto",
    return_n_iter=False, n_threads=None,
):
    """K-Means as a function (as ``sklearn.cluster.k_means``).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    n_clusters : int
    sample_weight : array-like of shape (n_samples,), default=None
    init, n_init, max_iter, verbose, tol, random_state, copy_x, algorithm, n_threads
        As in ``KMeans``.
    return_n_iter : bool, default=False
        Also return the number of iterations.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,), int32
    inertia : float
    n_iter : int
        Only with ``return_n_iter=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import k_means
    >>> X = np.array([[0.0], [0.5], [10.0], [10.5]])
    >>> centers, labels, inertia = k_means(X, 2, random_state=0)
    >>> labels
    array([1, 1, 0, 0], dtype=int32)
    >>> float(inertia)
    0.25
    """
    est = KMeans(
        n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter, verbose=verbose,
        tol=tol, random_state=random_state, copy_x=copy_x, algorithm=algorithm,
        n_threads=n_threads,
    ).fit(X, sample_weight=sample_weight)
    if return_n_iter:
        return est.cluster_centers_, est.labels_, est.inertia_, est.n_iter_
    return est.cluster_centers_, est.labels_, est.inertia_
