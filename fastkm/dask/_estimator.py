"""``fastkm.dask.KMeans``: exact K-Means of a dask array or DataFrame, one
task per chunk per wave, on the current ``dask.distributed`` Client or dask's
local scheduler. The client keeps the model (k x d centers) and does the
reductions; the workers keep the data (persisted) and run fastkm's compiled
kernels on their chunks (``_tasks``)."""
import types
import warnings

import dask.array as da
import numpy as np

from fastkm import _threads
from fastkm._compat import (
    BaseEstimator,
    ClusterMixin,
    NotFittedError,
    TransformerMixin,
    invalid_parameter,
)
from fastkm._validation import check_array, check_float, check_random_state
from fastkm.dask import _tasks
from fastkm.dask._backend import Backend, aligned_chunks
from fastkm.kmeans import _policy
from fastkm.kmeans._pieces import FAR_ROWS, IterResult, merge_far, run_pieces, unpack
from fastkm.kmeans._prepare import FitData
from fastkm.kmeans._scalable import ROUNDS, kmeans_parallel
from fastkm.kmeans._seeding import kmeans_plusplus_data
from fastkm.kmeans._tree import block_rows, tree_total

INITS = ("k-means||", "k-means++")


def _as_dask_array(X):
    """(2-D dask array with known row chunks, feature names or None)."""
    names = None
    cols = getattr(X, "columns", None)
    if cols is not None and not isinstance(X, (np.ndarray, da.Array)):
        names = np.asarray(list(cols), dtype=object)
        if not all(isinstance(c, str) for c in names):
            names = None
    if hasattr(X, "to_dask_array"):
        X = X.to_dask_array(lengths=True)
    elif not isinstance(X, da.Array):
        if hasattr(X, "to_numpy"):
            X = X.to_numpy()
        X = np.asarray(X)
        X = da.from_array(X, chunks=(max(1, min(X.shape[0], block_rows())), -1)) \
            if X.ndim == 2 else da.from_array(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array for X; got an array of shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first "
                         "(or pass a dask DataFrame, whose partition lengths are computed).")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must be numeric; got a dask array of dtype {X.dtype}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"Found array with shape {X.shape}; KMeans needs at least one sample "
                         "and one feature.")
    return X, names


def _fit_dtype(X):
    return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)


class _Data:
    """The persisted rows of one fit, in chunks aligned to canonical blocks."""

    def __init__(self, X, sample_weight, n_clusters, n_threads, backend):
        self.dtype = _fit_dtype(X)
        self.n, self.d = X.shape
        self.block = block_rows(n_clusters, self.d)
        self.n_blocks = max(1, -(-self.n // self.block))
        self.backend = backend
        self.n_threads = n_threads
        X = X.astype(self.dtype) if X.dtype != self.dtype else X
        rows = aligned_chunks(X.chunks[0], self.block)
        if rows != X.chunks[0] or len(X.chunks[1]) != 1:
            X = X.rechunk((rows, -1))
        self.X = backend.persist(X)
        self.xs = backend.chunks(self.X)
        self.ws = [None] * len(self.xs)
        if sample_weight is not None:
            w = sample_weight if isinstance(sample_weight, da.Array) else \
                da.from_array(np.asarray(sample_weight), chunks=(rows,))
            if w.ndim != 1 or w.shape[0] != self.n:
                raise ValueError(f"sample_weight.shape == {w.shape}, expected ({self.n},).")
            self.w = backend.persist(w.astype(self.dtype).rechunk((rows,)))
            self.ws = backend.chunks(self.w)
        self.starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self.first_blocks = [int(s) // self.block for s in self.starts]

    def map(self, fn, per_chunk, *shared, name=None):
        return self.backend.gather(self.backend.map(fn, per_chunk, *shared, name=name), name)

    def chunk_of_block(self, b):
        return int(np.searchsorted(self.first_blocks, b, side="right") - 1)

    def stats(self, tol):
        """Checks every chunk; returns (tolerance, per-block weight totals)."""
        args = [(x, w, self.dtype, None, self.block, fb, self.n_threads)
                for x, w, fb in zip(self.xs, self.ws, self.first_blocks)]
        parts = self.map(_tasks.chunk_stats, args, name="stats")
        if not all(p["finite"] for p in parts):
            raise ValueError("Input X contains NaN, infinity or a value too large for "
                             f"{self.dtype}.")
        if not all(p["weights_ok"] for p in parts):
            raise ValueError("sample_weight must be finite and non-negative.")
        totals = np.concatenate([p["weight_totals"] for p in parts])
        if not totals.sum() > 0:
            raise ValueError("sample_weight sums to zero: at least one sample needs a positive "
                             "weight.")
        if tol == 0:
            return 0.0, totals
        mean = tree_total([n for p in parts for n in p["nodes"]], self.n_blocks) / self.n
        args = [(x, w, self.dtype, mean, self.block, fb, self.n_threads)
                for x, w, fb in zip(self.xs, self.ws, self.first_blocks)]
        parts = self.map(_tasks.chunk_stats, args, name="variance")
        var = tree_total([n for p in parts for n in p["nodes"]], self.n_blocks) / self.n
        return float(np.mean(var)) * tol, totals


class _DaskSource:
    """k-means|| passes (``fastkm.kmeans._scalable``) as waves of chunk tasks."""

    def __init__(self, data, totals, run):
        self.data, self.totals, self.run = data, totals, run
        self.n, self.block, self.n_blocks = data.n, data.block, data.n_blocks
        self.sets = []

    def _key(self, i):
        return ("seed", self.run, i)

    def weight_totals(self):
        return self.totals

    def find_row(self, block, local):
        D = self.data
        i = D.chunk_of_block(block)
        row = D.map(_tasks.seed_find, [(D.xs[i], D.ws[i], D.dtype, block - D.first_blocks[i],
                                        local, D.block)], name="seed-find")[0]
        return int(D.starts[i]) + int(row)

    def rows(self, idx):
        D = self.data
        idx = np.asarray(idx, dtype=np.int64)
        owner = np.searchsorted(D.starts, idx, side="right") - 1
        used = np.unique(owner)
        args = [(D.xs[i], D.dtype, idx[owner == i] - D.starts[i]) for i in used]
        got = D.map(_tasks.take_rows, args, name="seed-rows")
        out = np.empty((idx.shape[0], D.d), dtype=D.dtype)
        for i, rows in zip(used, got):
            out[owner == i] = rows
        return out

    def _each(self, extra):
        D = self.data
        return [(x, w, D.dtype, D.backend.token, self._key(i), list(self.sets), *extra(i))
                for i, (x, w) in enumerate(zip(D.xs, D.ws))]

    def lower(self, candidates, offset):
        D = self.data
        self.sets.append(D.backend.broadcast(np.ascontiguousarray(candidates)))
        parts = D.map(_tasks.seed_lower, self._each(lambda i: (D.block, D.n_threads)),
                      name="seed-lower")
        return np.concatenate(parts)

    def sample(self, potential, oversampling, key, round_):
        D = self.data
        parts = D.map(_tasks.seed_sample,
                      self._each(lambda i: (potential, oversampling, key, round_,
                                            int(D.starts[i]), D.n_threads)), name="seed-sample")
        idx = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts]) if idx.size else \
            np.empty((0, D.d), dtype=D.dtype)
        return idx, rows

    def candidate_weights(self, m):
        D = self.data
        parts = D.map(_tasks.seed_weights,
                      self._each(lambda i: (m, D.block, D.first_blocks[i], D.n_threads)),
                      name="seed-weights")
        return [n for p in parts for n in p]


class _DaskOps:
    """``run_pieces``' operations as waves of chunk tasks."""

    def __init__(self, data, algorithm, run):
        self.data, self.algorithm, self.run = data, algorithm, run
        self.n_samples = data.n
        self.it = 0
        self.prev = None
        self.k = None

    def iterate(self, centers, first, with_stats=False):
        D = self.data
        k, d = centers.shape
        handle = D.backend.broadcast(np.ascontiguousarray(centers))
        args = [(x, w, D.dtype, D.backend.token, ("run", self.run, i), self.it, handle,
                 self.prev, self.algorithm, D.block, D.first_blocks[i], int(D.starts[i]),
                 with_stats, D.n_threads) for i, (x, w) in enumerate(zip(D.xs, D.ws))]
        parts = D.map(_tasks.chunk_iterate, args, name=f"iter{self.it}")
        self.prev = handle
        self.it += 1
        merged, inertia = unpack(tree_total([n for p in parts for n in p["nodes"]],
                                            D.n_blocks), k, d)
        changed = [p["changed"] for p in parts]
        changed = -1 if min(changed) < 0 else int(sum(changed))
        if not with_stats:
            return IterResult(merged, None, None, changed)
        return IterResult(merged, inertia, merge_far([p["far"] for p in parts], FAR_ROWS),
                          changed)

    def centers_moved(self, old, new):
        pass  # each task moves its own bounds, from the centers of both iterations

    def farthest(self, centers, m):
        D = self.data
        args = [(x, w, D.dtype, D.backend.token, ("run", self.run, i), self.it - 1, self.prev,
                 m, int(D.starts[i]), D.n_threads) for i, (x, w) in enumerate(zip(D.xs, D.ws))]
        return merge_far(D.map(_tasks.chunk_farthest, args, name="farthest"), m)

    def final(self, centers):
        return self.iterate(centers, False, True).inertia


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Exact K-Means of a dask array or DataFrame, on a Dask cluster.

    The same algorithms as ``fastkm.KMeans``: each wave of the fit is one task
    per chunk, run by fastkm's compiled kernels on the worker that holds the
    chunk, and returns float64 partial sums over canonical row blocks, which
    the client adds in a tree fixed by block index. The result is therefore
    the same bits on any number of workers, with any scheduling, after any
    task retries, and for any chunking (chunks are realigned to whole blocks
    of ``block_rows(n_clusters, n_features)`` rows first when they are not).
    It runs on the current ``dask.distributed`` Client, or on dask's local
    scheduler when there is none.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {'k-means||', 'k-means++'} or array-like of shape (n_clusters, \
n_features), default='k-means||'
        - 'k-means||': Bahmani et al.'s scalable k-means++, distributed:
          ``init_max_iter`` rounds that each draw about ``oversampling_factor
          * n_clusters`` rows by their squared distance to the candidates so
          far (a Philox stream keyed by the global row: no dependence on the
          chunking), the candidates then weighted by the sample weight nearest
          to each and reclustered on the client by weighted k-means++ and
          Lloyd. From the same rows and seed, the centers of
          ``fastkm.KMeans(init='k-means||')``.
        - 'k-means++': greedy k-means++ on the client: X is gathered there
          (it needs one pass per center); the centers of ``fastkm.KMeans``.
        - an array: the initial centers.
    n_init : 'auto' or int, default='auto'
        Runs from different initial centers (1 for 'auto'); the lowest inertia wins.
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative to the mean column variance of X (computed on the workers), as
        in ``fastkm.KMeans``; a run also stops when no label changes.
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=None
    algorithm : {'auto', 'lloyd', 'hamerly', 'exponion', 'elkan'}, default='auto'
        As in ``fastkm.KMeans``: every algorithm gives Lloyd's labels; the
        bounded ones keep their bounds on the workers between iterations.
    oversampling_factor : float, default=2.0
        k-means||: rows drawn per round, in multiples of ``n_clusters``.
    init_max_iter : int, default=None
        k-means|| rounds (None: 5).
    n_threads : int, default=None
        Threads of each task. None: the worker's CPUs divided among the tasks
        it runs at once.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : dask array of shape (n_samples,), int32
        Lazy: the nearest center of every row of the X given to ``fit``
        (computed from it when asked for).
    inertia_ : float
        Sum of the weighted *squared* distances to the nearest center.
    n_iter_ : int
    algorithm_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray, only for a DataFrame with string column names

    Notes
    -----
    Each iteration sends the k x d centers to every worker once and brings
    back, per chunk, k x (d + 1) float64 sums per tree node (one or two per
    chunk when chunks hold a power of two of blocks), the inertia, the
    changed-label count and the chunk's 16 farthest rows (for empty clusters).
    """

    def __init__(
        self, n_clusters=8, *, init="k-means||", n_init="auto", max_iter=300, tol=1e-4,
        verbose=0, random_state=None, algorithm="auto", oversampling_factor=2.0,
        init_max_iter=None, n_threads=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.algorithm = algorithm
        self.oversampling_factor = oversampling_factor
        self.init_max_iter = init_max_iter
        self.n_threads = n_threads

    def _params(self, X, dtype):
        from fastkm.kmeans._estimator import KMeans as _Single

        init = self.init
        if isinstance(init, str) and init not in INITS:
            raise invalid_parameter(ValueError(
                f"init must be 'k-means||', 'k-means++' or an array of shape (n_clusters, "
                f"n_features); got {init!r}."))
        if callable(init):
            raise invalid_parameter(TypeError("fastkm.dask.KMeans takes no init callable."))
        scalable = isinstance(init, str) and init == "k-means||"
        single = _Single(n_clusters=self.n_clusters, init="k-means++" if scalable else init,
                         n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                         verbose=self.verbose, algorithm=self.algorithm)
        p = single._check_params(types.SimpleNamespace(shape=X.shape, dtype=dtype), 1)
        try:
            rounds = ROUNDS if self.init_max_iter is None else self.init_max_iter
            if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) \
                    or rounds < 0:
                raise ValueError(f"init_max_iter must be None or an int >= 0; got {rounds!r}.")
            over = check_float(self.oversampling_factor, "oversampling_factor", 0.0)
            if not over > 0:
                raise ValueError("oversampling_factor must be > 0.")
        except (TypeError, ValueError) as e:
            raise invalid_parameter(e) from None
        return p._replace(init=init if scalable else p.init), int(rounds), over

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of a dask array or DataFrame.

        Parameters
        ----------
        X : dask array, dask DataFrame, or array-like of shape (n_samples, n_features)
            float32 stays float32; every other numeric type becomes float64.
        y : None
        sample_weight : dask array or array-like of shape (n_samples,), default=None

        Returns
        -------
        self : KMeans
        """
        X, names = _as_dask_array(X)
        dtype = _fit_dtype(X)
        p, rounds, over = self._params(X, dtype)
        if X.shape[0] < p.n_clusters:
            raise invalid_parameter(ValueError(
                f"n_samples={X.shape[0]} should be >= n_clusters={p.n_clusters}."))
        alg = "lloyd" if (self.algorithm == "elkan" and p.n_clusters == 1) else self.algorithm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            alg = _policy.choose_algorithm(alg, X.shape[0], X.shape[1], p.n_clusters,
                                           dtype.itemsize)
        backend = Backend()
        data = _Data(X, sample_weight, p.n_clusters, self.n_threads, backend)
        try:
            best = self._runs(data, p, alg, rounds, over)
        finally:
            backend.run_all(_tasks.forget, backend.token)
        centers, inertia, n_iter = best
        self.cluster_centers_ = centers
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.algorithm_ = alg
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.labels_ = self._lazy_labels(X)
        return self

    def _runs(self, data, p, algorithm, rounds, over):
        tol, totals = data.stats(p.tol)
        random_state = check_random_state(self.random_state)
        client_threads = _threads.resolve(None)
        best = None
        for run in range(p.n_init):
            if isinstance(p.init, str) and p.init == "k-means||":
                source = _DaskSource(data, totals, run)
                centers = kmeans_parallel(source, p.n_clusters, random_state, client_threads,
                                          rounds=rounds, oversampling=over,
                                          verbose=self.verbose)[0]
            elif isinstance(p.init, str):
                Xc = np.ascontiguousarray(data.X.compute(), dtype=data.dtype)
                wc = np.ones(data.n, dtype=data.dtype) if data.ws[0] is None else \
                    np.ascontiguousarray(data.w.compute(), dtype=data.dtype)
                fd = FitData(Xc, wc, None, wc, False, None, None)
                centers = kmeans_plusplus_data(fd, p.n_clusters, random_state, None,
                                               client_threads)[0]
                del Xc, wc, fd
            else:
                centers = np.array(p.init, dtype=data.dtype, order="C")
            if self.verbose:
                print("Initialization complete")
            ops = _DaskOps(data, algorithm, run)
            result = run_pieces(ops, centers.astype(data.dtype), p.max_iter, tol, self.verbose)
            if best is None or result[1] < best[1]:
                best = result
        return best

    # ---- after fit
    def _check_is_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")

    def _test_array(self, X):
        self._check_is_fitted()
        if isinstance(X, np.ndarray) or not (isinstance(X, da.Array)
                                             or hasattr(X, "to_dask_array")):
            return None, check_array(X, dtype=self.cluster_centers_.dtype,
                                     estimator=type(self).__name__)
        X, _ = _as_dask_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return X, None

    def _lazy_labels(self, X):
        X = X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X
        C = self.cluster_centers_
        return X.map_blocks(_tasks.chunk_labels, C, C.dtype, self.n_threads, drop_axis=1,
                            dtype=np.int32, meta=np.empty((0,), dtype=np.int32))

    def predict(self, X):
        """Nearest center of every row: a lazy dask array for dask input
        (``map_blocks``), an ndarray for an in-memory array."""
        Xd, Xn = self._test_array(X)
        if Xd is None:
            return _tasks.chunk_labels(Xn, self.cluster_centers_, Xn.dtype, self.n_threads)
        return self._lazy_labels(Xd)

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Distances to every center: lazy (``map_blocks``) for dask input."""
        Xd, Xn = self._test_array(X)
        C = self.cluster_centers_
        if Xd is None:
            return _tasks.chunk_distances(Xn, C, Xn.dtype, self.n_threads)
        Xd = Xd.rechunk({1: -1}) if len(Xd.chunks[1]) > 1 else Xd
        return Xd.map_blocks(_tasks.chunk_distances, C, C.dtype, self.n_threads,
                             chunks=(Xd.chunks[0], (C.shape[0],)), dtype=C.dtype,
                             meta=np.empty((0, 0), dtype=C.dtype))

    def fit_transform(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X (computed now): the same bits
        as ``-inertia_`` on the training data."""
        import dask

        Xd, Xn = self._test_array(X)
        if Xd is None:
            Xd = da.from_array(Xn, chunks=(block_rows(), -1))
        C = self.cluster_centers_
        k, d = C.shape
        block = block_rows(k, d)
        rows = aligned_chunks(Xd.chunks[0], block)
        Xd = Xd.astype(C.dtype).rechunk((rows, -1))
        ws = [None] * len(rows)
        if sample_weight is not None:
            w = sample_weight if isinstance(sample_weight, da.Array) else \
                da.from_array(np.asarray(sample_weight), chunks=(rows,))
            ws = list(w.astype(C.dtype).rechunk((rows,)).to_delayed().ravel())
        starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
        tasks = [dask.delayed(_tasks.chunk_inertia, pure=True)(x, w, C, C.dtype, block,
                                                              int(s) // block, self.n_threads)
                 for x, w, s in zip(Xd.to_delayed().ravel(), ws, starts)]
        nodes = [n for part in dask.compute(*tasks) for n in part]
        return -float(tree_total(nodes, max(1, -(-Xd.shape[0] // block)))[0])

