"""Exact accelerated algorithms give Lloyd's labels from the same initial centers."""
import numpy as np
import pytest
from conftest import has_near_ties, numpy_lloyd

from fastkm import KMeans, kmeans_plusplus
from fastkm._kernels.reduce import BlockSums
from fastkm._kernels.runtime import Region
from fastkm.kmeans._policy import choose_algorithm as _choose_algorithm
from fastkm.kmeans._solver import center_sq_distances as _center_sq_distances

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
    from fastkm.kmeans import _policy

    X = dataset("gauss-d8", np.float64)
    monkeypatch.setattr(_policy, "ELKAN_MAX_BYTES", 1000)
    with pytest.warns(RuntimeWarning, match="using 'hamerly' instead"):
        est = KMeans(5, algorithm="elkan", random_state=0).fit(X)
    assert est.algorithm_ == "hamerly"
    assert KMeans(5, algorithm="auto", random_state=0).fit(X).algorithm_ != "elkan"


def test_auto_rule():
    assert _choose_algorithm("auto", 10**6, 3, 64) == "lloyd"
    assert _choose_algorithm("auto", 10**6, 2, 64) == "exponion"
    assert _choose_algorithm("auto", 10**6, 2, 64, sorted_rows=True) == "lloyd"
    assert _choose_algorithm("auto", 10**6, 6, 64, sorted_rows=True) == "exponion"
    assert _choose_algorithm("auto", 10**6, 32, 256) == "exponion"
    assert _choose_algorithm("auto", 100, 5, 1) == "lloyd"
    assert _choose_algorithm("lloyd", 100, 50, 10) == "lloyd"
    # Exponion's packed lists (k x 16 x d) past the budget: Hamerly, same labels
    assert _choose_algorithm("auto", 10**5, 784, 4096) == "hamerly"


def test_exponion_memory_guard(monkeypatch):
    from fastkm.kmeans import _policy

    X = dataset("blobs-d20", np.float32)
    ref = KMeans(30, algorithm="exponion", random_state=0).fit(X)
    assert ref.algorithm_ == "exponion"
    monkeypatch.setattr(_policy, "BALL_MAX_BYTES", 1000)
    with pytest.warns(RuntimeWarning, match="using 'hamerly' instead"):
        est = KMeans(30, algorithm="exponion", random_state=0).fit(X)
    assert est.algorithm_ == "hamerly"
    np.testing.assert_array_equal(est.labels_, ref.labels_)
    assert KMeans(30, random_state=0).fit(X).algorithm_ == "hamerly"


def test_ball_tables_match_numpy():
    """Each center's 16 nearest centers (itself first, ties by index), the distance
    to the nearest one left out, and half the nearest-other distance."""
    from fastkm._dispatch import hamerly

    rng = np.random.RandomState(3)
    C = rng.normal(size=(40, 6))
    C[7] = C[3]                       # a duplicate: distance 0 to another center
    C[20:24] = rng.randint(0, 3, size=(4, 6))  # small integer rows: equal distances
    cc = _center_sq_distances(C)
    ball, beyond, half_sep = hamerly.ball_tables(cc, 2)
    for a in range(len(C)):
        order = np.lexsort((np.arange(len(C)), cc[a]))   # by distance, then index
        np.testing.assert_array_equal(ball[a], order[:16])
        assert ball[a, 0] == a or cc[a, ball[a, 0]] == 0.0
        assert beyond[a] == np.sqrt(cc[a, order[16]])
        assert half_sep[a] == 0.5 * np.sqrt(np.sort(cc[a])[1])
    # fewer centers than the list: every center listed, nothing beyond
    ball, beyond, half_sep = hamerly.ball_tables(np.ascontiguousarray(cc[:5, :5]), 1)
    np.testing.assert_array_equal(ball[:, 5:], np.repeat(np.arange(5)[:, None], 11, axis=1))
    assert np.all(beyond == np.finfo(np.float64).max)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [5, 20])
def test_exponion_ball_search_repairs_labels(dtype, d):
    """Exponion's ball step alone: every row starts with a wrong label (its true
    center's nearest neighbour) and bounds that force a search. It must find
    Lloyd's labels and leave valid bounds."""
    from fastkm._dispatch import hamerly

    rng = np.random.RandomState(d)
    k = 60
    true_c = rng.uniform(-10, 10, size=(k, d))
    X = (true_c[rng.randint(0, k, 6000)] + 0.5 * rng.normal(size=(6000, d))).astype(dtype)
    C = (true_c + 0.1 * rng.normal(size=(k, d))).astype(dtype)
    D = ((X.astype(np.float64)[:, None, :] - C.astype(np.float64)[None]) ** 2).sum(-1)
    ref = np.argmin(D, axis=1).astype(np.int32)
    Ds = np.sort(D, axis=1)
    assert np.all(Ds[:, 1] - Ds[:, 0] > 1e-3 * Ds[:, 1])   # no near ties
    ball, beyond, half_sep = hamerly.ball_tables(_center_sq_distances(C))
    labels = ball[ref, 1].copy()      # wrong, but within the ball
    n = len(X)
    upper = np.full(n, 1e300)
    lower = np.zeros(n)
    hamerly.hamerly_iter(X, np.ones(n, dtype), C, labels, BlockSums(n, k, d), half_sep,
                         np.zeros(k), False, upper, lower, Region(2), ball=ball, beyond=beyond)
    np.testing.assert_array_equal(labels, ref)
    dist = np.sqrt(Ds)
    assert np.all(upper >= dist[:, 0] * (1 - 1e-5))
    assert np.all(lower <= dist[:, 1] * (1 + 1e-5))
    assert np.all(lower > 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exponion_many_clusters_and_duplicate_centers(dtype):
    """k = 120 on 24-d blobs (the ball step and the full-scan fallback both run)
    from initial centers that include exact duplicates: Lloyd's labels, centers
    and iteration count."""
    rng = np.random.RandomState(5)
    c = rng.uniform(-8, 8, size=(80, 24))
    X = (c[rng.randint(0, 80, 12000)] + rng.normal(size=(12000, 24))).astype(dtype)
    C0 = X[rng.choice(len(X), 120, replace=False)].copy()
    C0[100:110] = C0[:10]
    ref = KMeans(120, init=C0, n_init=1, algorithm="lloyd").fit(X)
    got = KMeans(120, init=C0, n_init=1, algorithm="exponion").fit(X)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    assert got.n_iter_ == ref.n_iter_
    assert got.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes()


def test_exponion_kernel_rejects_ball_lists_of_other_centers():
    """hamerly_iter with ball lists whose shape does not match the centers: a
    ValueError, and the labels and bounds are left as they were."""
    from fastkm._dispatch import hamerly

    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 6))
    C = X[:10].copy()
    ball, beyond, half_sep = hamerly.ball_tables(_center_sq_distances(C[:8]))
    labels = np.zeros(500, dtype=np.int32)
    upper = np.full(500, 1.0)
    lower = np.zeros(500)
    before = (labels.copy(), upper.copy(), lower.copy())
    with pytest.raises(ValueError, match="ball_tables of these centers"):
        hamerly.hamerly_iter(X, np.ones(500), C, labels, BlockSums(500, 10, 6), np.ones(10),
                             np.zeros(10), False, upper, lower, Region(1), ball=ball,
                             beyond=beyond)
    for a, b in zip(before, (labels, upper, lower)):
        np.testing.assert_array_equal(a, b)
