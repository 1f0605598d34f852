"""Every bad input gets a precise error, and nothing is modified."""
import numpy as np
import pytest

from fastkm import KMeans, k_means, kmeans_plusplus

X = np.random.RandomState(0).uniform(size=(40, 3))


@pytest.mark.parametrize(
    "data,exc,match",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), ValueError, "contains NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), ValueError, "infinity"),
        (np.array([[1.0, -np.inf], [2.0, 3.0]], dtype=np.float32), ValueError, "infinity"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.empty((5, 0)), ValueError, "0 feature"),
        (np.arange(5.0), ValueError, "Expected a 2D array"),
        (np.zeros((2, 2, 2)), ValueError, "dim 3"),
        (np.float64(3.0), ValueError, "scalar"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "numbers only"),
        ([[1, 2], [3]], ValueError, "could not be converted"),
        (np.array([[1 + 2j, 0], [0, 0]]), ValueError, "Complex"),
        (np.array([[np.datetime64("2020-01-01")]] * 3), TypeError, "numeric"),
    ],
    ids=["nan", "inf", "neginf32", "empty", "nofeatures", "1d", "3d", "scalar", "strings",
         "ragged", "complex", "datetime"],
)
def test_bad_X(data, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(1).fit(data)


def test_sparse_accepted():
    # sparse input has its own path (tests/test_sparse.py); the same data give the
    # dense fit's labels
    sp = pytest.importorskip("scipy.sparse")
    init = X[:2]
    assert np.array_equal(KMeans(2, init=init, n_init=1).fit(sp.csr_matrix(X)).labels_,
                          KMeans(2, init=init, n_init=1).fit(X).labels_)


@pytest.mark.parametrize(
    "params,exc,match",
    [
        ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
        ({"n_clusters": -3}, ValueError, "n_clusters must be >= 1"),
        ({"n_clusters": 41}, ValueError, "n_samples=40 should be >= n_clusters=41"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters must be an int"),
        ({"n_clusters": True}, TypeError, "n_clusters must be an int"),
        ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
        ({"tol": -1e-3}, ValueError, "tol must be"),
        ({"tol": float("nan")}, ValueError, "tol must be"),
        ({"tol": "x"}, TypeError, "tol must be a number"),
        ({"n_init": 0}, ValueError, "n_init must be >= 1"),
        ({"n_init": "many"}, ValueError, "n_init must be 'auto'"),
        ({"init": "kmeans++"}, ValueError, "init must be 'k-means\\+\\+'"),
        ({"init": np.zeros((3, 3))}, ValueError, "shape of the initial centers"),
        ({"init": np.zeros((2, 4))}, ValueError, "shape of the initial centers"),
        ({"init": np.array([[np.nan, 0, 0], [0, 0, 0]])}, ValueError, "init contains NaN"),
        ({"algorithm": "fast"}, ValueError, "algorithm must be one of"),
        ({"n_threads": 0}, ValueError, "n_threads must be"),
        ({"n_threads": -2}, ValueError, "n_threads must be"),
        ({"n_threads": 1.5}, TypeError, "n_threads must be"),
        ({"random_state": "seed"}, ValueError, "random_state must be"),
        ({"verbose": -1}, ValueError, "verbose must be >= 0"),
        ({"copy_x": "yes"}, TypeError, "copy_x must be a bool"),
    ],
)
def test_bad_parameters(params, exc, match):
    p = {"n_clusters": 2, **params}
    with pytest.raises(exc, match=match):
        KMeans(**p).fit(X)


def test_bad_init_callable_result():
    with pytest.raises(ValueError, match="init callable returned centers of shape"):
        KMeans(2, init=lambda X, k, random_state: X[:1]).fit(X)
    with pytest.raises(ValueError, match="contains NaN"):
        KMeans(2, init=lambda X, k, random_state: np.full((k, X.shape[1]), np.nan)).fit(X)


def test_sparse_init_callable_result_is_densified(tmp_path):
    # the centers are dense whatever the input: dense, memory-mapped and sparse fits
    # all take a sparse result from an init callable
    sp = pytest.importorskip("scipy.sparse")

    def init(data, k, random_state):
        return sp.csr_matrix(np.asarray(X[:k]))

    ref = KMeans(2, init=np.asarray(X[:2]), n_init=1).fit(X)
    got = KMeans(2, init=init, n_init=1).fit(X)
    assert np.array_equal(got.cluster_centers_, ref.cluster_centers_)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    mm[:] = X
    out = KMeans(2, init=init, n_init=1).fit(mm)
    assert np.array_equal(out.labels_, ref.labels_)
    sparse = KMeans(2, init=init, n_init=1).fit(sp.csr_matrix(X))
    assert np.array_equal(sparse.labels_, ref.labels_)


@pytest.mark.parametrize(
    "w,exc,match",
    [
        (-np.ones(40), ValueError, "non-negative"),
        (np.r_[np.ones(39), -0.5], ValueError, "non-negative"),
        (np.ones(39), ValueError, "expected \\(40,\\)"),
        (np.ones((40, 1)), ValueError, "1D array or scalar"),
        (np.r_[np.ones(39), np.nan], ValueError, "NaN or infinity"),
        (np.zeros(40), ValueError, "sums to zero"),
        (np.array(["a"] * 40), TypeError, "numeric"),
    ],
)
def test_bad_sample_weight(w, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(2).fit(X, sample_weight=w)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(exc, match=match):
        km.score(X, sample_weight=w)


def test_scalar_sample_weight_is_accepted():
    a = KMeans(2, random_state=0).fit(X, sample_weight=3.0)
    b = KMeans(2, random_state=0).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == pytest.approx(3 * b.inertia_)


def test_predict_wrong_number_of_features():
    km = KMeans(2, random_state=0).fit(X)
    for method in (km.predict, km.transform, km.score):
        with pytest.raises(ValueError, match="X has 4 features, but KMeans is expecting 3"):
            method(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="contains NaN"):
        km.predict(np.array([[np.nan, 0, 0]]))


def test_function_api_errors():
    with pytest.raises(ValueError, match="n_samples=40 should be >= n_clusters=50"):
        kmeans_plusplus(X, 50)
    with pytest.raises(ValueError, match="n_local_trials must be >= 1"):
        kmeans_plusplus(X, 2, n_local_trials=0)
    with pytest.raises(ValueError, match="contains NaN"):
        k_means(np.array([[np.nan]]), 1)


def test_failed_fit_keeps_previous_model_and_input():
    km = KMeans(2, random_state=0).fit(X)
    centers = km.cluster_centers_.copy()
    bad = X.copy()
    bad[3, 1] = np.nan
    snap = bad.copy()
    with pytest.raises(ValueError):
        km.fit(bad)
    np.testing.assert_array_equal(km.cluster_centers_, centers)
    np.testing.assert_array_equal(bad, snap)
