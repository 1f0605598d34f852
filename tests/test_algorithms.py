"""Exact accelerated algorithms give Lloyd's labels from the same initial centers."""
import numpy as np
import pytest

from fastkm import KMeans, kmeans_plusplus
from fastkm._kmeans import _choose_algorithm
from conftest import has_near_ties, numpy_lloyd

ALGORITHMS = ["hamerly", "elkan", "exponion", "auto"]


def dataset(name, dtype):
    rng = np.random.RandomState(11)
    if name == "blobs-d2":
        c = rng.uniform(-10, 10, size=(12, 2))
        X = np.concatenate([ci + rng.normal(size=(250, 2)) for ci in c])
    elif name == "uniform-d3":
        X = rng.uniform(size=(4000, 3))
    elif name == "grid-colors":  # many exact ties: colors on a 1/255 grid
        X = rng.randint(0, 256, size=(5000, 3)) / 255.0
    elif name == "gauss-d8":
        X = rng.normal(size=(3000, 8))
    elif name == "blobs-d20":
        c = rng.normal(scale=3, size=(30, 20))
        X = np.concatenate([ci + rng.normal(size=(100, 20)) for ci in c])
    elif name == "wide-d64":
        X = rng.gamma(1.5, size=(1500, 64))
    return X.astype(dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,k", [("blobs-d2", 12), ("uniform-d3", 40), ("grid-colors", 64),
                                    ("gauss-d8", 25), ("blobs-d20", 30), ("wide-d64", 16)])
def test_same_result_as_lloyd(algorithm, dtype, name, k):
    X = dataset(name, dtype)
    C0 = X[np.random.RandomState(k).choice(len(X), k, replace=False)]
    ref = KMeans(k, init=C0, n_init=1, algorithm="lloyd", max_iter=300).fit(X)
    got = KMeans(k, init=C0, n_init=1, algorithm=algorithm, max_iter=300).fit(X)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    assert got.n_iter_ == ref.n_iter_
    # same labels every iteration => same float64 sums => bitwise-equal centers
    assert got.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes()
    assert got.inertia_ == ref.inertia_


@pytest.mark.parametrize("name,k", [("uniform-d3", 10), ("gauss-d8", 7), ("blobs-d20", 10)])
def test_hamerly_matches_numpy_reference(name, k):
    X = dataset(name, np.float64)
    C0, _ = kmeans_plusplus(X, k, random_state=0)  # well spread: no cluster empties
    got = KMeans(k, init=C0, n_init=1, algorithm="hamerly", tol=0).fit(X)
    ref_labels, ref_centers, _ = numpy_lloyd(X, C0)
    assert np.bincount(ref_labels, minlength=k).min() > 0
    if has_near_ties(X, ref_centers, 1e-10):
        pytest.skip("near tie")
    np.testing.assert_array_equal(got.labels_, ref_labels)
    np.testing.assert_allclose(got.cluster_centers_, ref_centers, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["hamerly", "auto"])
def test_thread_count_independent(algorithm):
    X = dataset("gauss-d8", np.float32)
    fits = [KMeans(20, random_state=0, algorithm=algorithm, n_threads=t).fit(X) for t in (1, 2, 3)]
    for f in fits[1:]:
        assert f.cluster_centers_.tobytes() == fits[0].cluster_centers_.tobytes()
        np.testing.assert_array_equal(f.labels_, fits[0].labels_)


def test_hamerly_with_weights_and_empty_clusters():
    X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [50.0]])
    C0 = np.array([[0.1], [10.05], [1000.0]])
    w = np.array([1.0, 2.0, 1.0, 0.5, 0.5, 3.0])
    a = KMeans(3, init=C0, n_init=1, algorithm="lloyd").fit(X, sample_weight=w)
    b = KMeans(3, init=C0, n_init=1, algorithm="hamerly").fit(X, sample_weight=w)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_k_equals_one_and_n():
    X = dataset("uniform-d3", np.float64)[:30]
    for k in (1, 30):
        a = KMeans(k, random_state=0, algorithm="lloyd").fit(X)
        b = KMeans(k, random_state=0, algorithm="hamerly").fit(X)
        np.testing.assert_array_equal(a.labels_, b.labels_)


def test_elkan_memory_guard(monkeypatch):
    import fastkm._kmeans as km_mod

    X = dataset("gauss-d8", np.float64)
    monkeypatch.setattr(km_mod, "ELKAN_MAX_BYTES", 1000)
    with pytest.warns(RuntimeWarning, match="using 'hamerly' instead"):
        est = KMeans(5, algorithm="elkan", random_state=0).fit(X)
    assert est._algorithm == "hamerly"
    assert KMeans(5, algorithm="auto", random_state=0).fit(X)._algorithm != "elkan"


def test_auto_rule():
    assert _choose_algorithm("auto", 10**6, 3, 64) == "lloyd"
    assert _choose_algorithm("auto", 10**6, 2, 64) == "hamerly"
    assert _choose_algorithm("auto", 10**6, 32, 256) == "hamerly"
    assert _choose_algorithm("auto", 100, 5, 1) == "lloyd"
    assert _choose_algorithm("lloyd", 100, 50, 10) == "lloyd"
