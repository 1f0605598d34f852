"""fastkm.KMeans: semantics, exactness against NumPy and scikit-learn, determinism."""
import warnings

import numpy as np
import pytest
from conftest import has_near_ties, numpy_lloyd

from fastkm import KMeans, k_means, kmeans_plusplus
from fastkm._compat import ConvergenceWarning, NotFittedError


def make_data(kind, dtype=np.float64):
    rng = np.random.RandomState(42)
    if kind == "blobs2d":
        c = rng.uniform(-8, 8, size=(4, 2))
        X = np.concatenate([ci + rng.normal(scale=0.8, size=(150, 2)) for ci in c])
    elif kind == "colors":
        X = rng.beta(2, 5, size=(3000, 3))
    elif kind == "wide":
        c = rng.normal(scale=4, size=(8, 40))
        X = np.concatenate([ci + rng.normal(size=(100, 40)) for ci in c]) + 50.0
    elif kind == "d6":
        X = rng.gamma(2.0, size=(1500, 6))
    return X.astype(dtype)


@pytest.mark.parametrize("kind,k", [("blobs2d", 4), ("colors", 16), ("wide", 8), ("d6", 12)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_labels_as_numpy_lloyd(kind, k, dtype):
    X = make_data(kind, dtype)
    rng = np.random.RandomState(1)
    C0 = X[rng.choice(len(X), k, replace=False)]
    km = KMeans(k, init=C0, n_init=1, max_iter=50, tol=0).fit(X)
    ref_labels, ref_centers, ref_iter = numpy_lloyd(X, C0, max_iter=50)
    if has_near_ties(X, ref_centers, 1e-5 if dtype == np.float32 else 1e-10):
        pytest.skip("near tie")
    np.testing.assert_array_equal(km.labels_, ref_labels)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(km.cluster_centers_, ref_centers, rtol=rtol, atol=rtol)
    assert km.cluster_centers_.dtype == dtype
    ref_inertia = ((X.astype(float) - ref_centers[ref_labels]) ** 2).sum()
    assert km.inertia_ == pytest.approx(ref_inertia, rel=rtol)


@pytest.mark.parametrize("kind,k", [("blobs2d", 4), ("colors", 16), ("wide", 8), ("d6", 12)])
def test_same_labels_as_sklearn_same_init(kind, k):
    sk = pytest.importorskip("sklearn.cluster")
    X = make_data(kind)
    C0 = X[np.random.RandomState(2).choice(len(X), k, replace=False)]
    ours = KMeans(k, init=C0, n_init=1, random_state=0).fit(X)
    theirs = sk.KMeans(k, init=C0, n_init=1, random_state=0, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-6)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-7, atol=1e-9)


def test_weighted_fit_equals_repeated_samples():
    X = make_data("colors")[:500]
    rng = np.random.RandomState(0)
    w = rng.randint(1, 4, size=len(X))
    C0 = X[:10]
    a = KMeans(10, init=C0, n_init=1, tol=0).fit(X, sample_weight=w)
    b = KMeans(10, init=C0, n_init=1, tol=0).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-10)
    np.testing.assert_array_equal(np.repeat(a.labels_, w), b.labels_)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["colors", "wide"])
def test_bitwise_identical_across_thread_counts(kind, dtype):
    X = make_data(kind, dtype)
    fits = [KMeans(8, random_state=3, n_init=2, n_threads=t).fit(X) for t in (1, 2, 3, 4)]
    for f in fits[1:]:
        assert f.cluster_centers_.tobytes() == fits[0].cluster_centers_.tobytes()
        np.testing.assert_array_equal(f.labels_, fits[0].labels_)
        assert f.inertia_ == fits[0].inertia_
        assert f.n_iter_ == fits[0].n_iter_


def test_random_state_reproducible_and_seeds_differ():
    X = make_data("colors")
    a = KMeans(16, random_state=5).fit(X)
    b = KMeans(16, random_state=5).fit(X)
    c = KMeans(16, random_state=6).fit(X)
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    assert a.cluster_centers_.tobytes() != c.cluster_centers_.tobytes()
    rs = np.random.RandomState(5)
    d = KMeans(16, random_state=rs).fit(X)
    assert d.cluster_centers_.tobytes() == a.cluster_centers_.tobytes()


def test_notebook_blobs_recovered_exactly():
    skd = pytest.importorskip("sklearn.datasets")
    X, y = skd.make_blobs(n_samples=300, centers=3, random_state=0, cluster_std=0.60)
    km = KMeans(n_clusters=3, random_state=0).fit(X)
    pred = km.predict(X)
    np.testing.assert_array_equal(pred, km.labels_)
    # identical partition up to a permutation of labels
    mapping = {p: t for p, t in zip(pred, y)}
    assert len(set(mapping.values())) == 3
    np.testing.assert_array_equal(np.vectorize(mapping.get)(pred), y)
    # max_iter=100 as in the notebook gives the same result
    np.testing.assert_array_equal(KMeans(3, max_iter=100, random_state=0).fit_predict(X), pred)
    assert KMeans(4, random_state=0).fit(X).cluster_centers_.shape == (4, 2)


def _majority_accuracy(labels, y, k):
    correct = 0
    for j in range(k):
        m = labels == j
        if m.any():
            correct += np.bincount(y[m]).max()
    return correct / len(y)


def test_notebook_digits_at_least_as_good_as_sklearn():
    skd = pytest.importorskip("sklearn.datasets")
    skc = pytest.importorskip("sklearn.cluster")
    digits = skd.load_digits()
    X, y = digits.data, digits.target
    ours = np.mean([_majority_accuracy(KMeans(10, random_state=s).fit(X).labels_, y, 10)
                    for s in range(5)])
    theirs = np.mean([_majority_accuracy(skc.KMeans(10, random_state=s).fit(X).labels_, y, 10)
                      for s in range(5)])
    assert KMeans(10, random_state=0).fit(X).cluster_centers_.shape == (10, 64)
    assert ours >= theirs - 0.01, (ours, theirs)
    assert ours > 0.7


def test_kmeanspp_quality_matches_sklearn_on_average():
    sk = pytest.importorskip("sklearn.cluster")
    X = make_data("colors")
    ours = np.mean([KMeans(16, random_state=s).fit(X).inertia_ for s in range(6)])
    theirs = np.mean([sk.KMeans(16, random_state=s).fit(X).inertia_ for s in range(6)])
    assert ours <= theirs * 1.01


def test_kmeans_plusplus_function():
    X = make_data("blobs2d")
    centers, idx = kmeans_plusplus(X, 4, random_state=0)
    assert centers.shape == (4, 2) and idx.shape == (4,)
    np.testing.assert_array_equal(centers, X[idx])
    assert len(set(idx.tolist())) == 4
    # zero-weight samples are never chosen
    w = np.ones(len(X))
    w[::2] = 0
    _, idx = kmeans_plusplus(X, 4, sample_weight=w, random_state=0)
    assert np.all(idx % 2 == 1)


def test_k_means_function_matches_estimator():
    X = make_data("colors")
    c, lab, inertia, n_iter = k_means(X, 5, random_state=0, return_n_iter=True)
    km = KMeans(5, random_state=0).fit(X)
    np.testing.assert_array_equal(c, km.cluster_centers_)
    np.testing.assert_array_equal(lab, km.labels_)
    assert inertia == km.inertia_ and n_iter == km.n_iter_
    assert len(k_means(X, 5, random_state=0)) == 3


def test_predict_transform_score_consistent():
    X = make_data("d6")
    km = KMeans(7, random_state=0).fit(X)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    D = km.transform(X)
    assert D.shape == (len(X), 7)
    np.testing.assert_array_equal(D.argmin(axis=1), km.labels_)
    ref = np.sqrt(((X[:, None] - km.cluster_centers_[None]) ** 2).sum(-1))
    np.testing.assert_allclose(D, ref, rtol=1e-12)
    np.testing.assert_allclose(km.fit_transform(X), D, rtol=1e-12)
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-12)
    w = np.full(len(X), 2.0)
    assert km.score(X, sample_weight=w) == pytest.approx(-2 * km.inertia_, rel=1e-12)
    assert list(km.get_feature_names_out()) == [f"kmeans{i}" for i in range(7)]


def test_k_equals_n_and_k_equals_one():
    X = make_data("colors")[:50]
    km = KMeans(50, random_state=0).fit(X)
    assert km.inertia_ == pytest.approx(0.0, abs=1e-20)
    assert sorted(km.labels_) == list(range(50))
    km1 = KMeans(1).fit(X)
    np.testing.assert_allclose(km1.cluster_centers_[0], X.mean(axis=0), rtol=1e-12)
    assert km1.n_iter_ <= 2


def test_fewer_distinct_points_than_clusters_warns():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    with pytest.warns(ConvergenceWarning, match="Number of distinct clusters"):
        km = KMeans(5, random_state=0).fit(X)
    assert np.unique(km.labels_).size == 3


def test_empty_cluster_is_relocated_to_farthest_point():
    X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [50.0]])
    C0 = np.array([[0.1], [10.05], [1000.0]])  # third center attracts nothing
    km = KMeans(3, init=C0, n_init=1).fit(X)
    assert sorted(np.bincount(km.labels_).tolist()) == [1, 2, 3]
    assert 50.0 in km.cluster_centers_.ravel()


def test_float32_stays_float32_and_ints_become_float64():
    X = make_data("colors")
    assert KMeans(3, random_state=0).fit(X.astype(np.float32)).cluster_centers_.dtype == np.float32
    Xi = (X * 255).astype(np.uint8)
    km = KMeans(3, random_state=0).fit(Xi)
    assert km.cluster_centers_.dtype == np.float64
    assert km.predict(Xi).dtype == np.int32


def test_awkward_but_valid_inputs_give_the_same_result():
    X = make_data("d6")
    ref = KMeans(4, random_state=0).fit(X)
    variants = {
        "fortran": np.asfortranarray(X),
        "strided": np.repeat(X, 2, axis=1)[:, ::2],
        "bigendian": X.astype(">f8"),
        "list": X.tolist(),
    }
    ro = X.copy()
    ro.flags.writeable = False
    variants["readonly"] = ro
    for name, Xv in variants.items():
        km = KMeans(4, random_state=0).fit(Xv)
        np.testing.assert_array_equal(km.labels_, ref.labels_, err_msg=name)
        np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_, err_msg=name)


def test_input_arrays_are_never_modified():
    for kind in ("colors", "wide"):
        for copy_x in (True, False):
            X = make_data(kind)
            X32 = X.astype(np.float32)
            w = np.random.RandomState(0).uniform(0.5, 1, len(X))
            C0 = X[:3].copy()
            snap = [a.copy() for a in (X, X32, w, C0)]
            km = KMeans(3, init=C0, n_init=1, copy_x=copy_x).fit(X, sample_weight=w)
            KMeans(3, copy_x=copy_x, random_state=0).fit(X32, sample_weight=w.astype(np.float32))
            km.predict(X), km.transform(X), km.score(X, sample_weight=w)
            for a, b in zip((X, X32, w, C0), snap):
                np.testing.assert_array_equal(a, b)


def test_copy_x_false_gives_same_labels_on_wide_data():
    X = make_data("wide")
    a = KMeans(8, random_state=0, copy_x=True).fit(X)
    b = KMeans(8, random_state=0, copy_x=False).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)


def test_n_init_keeps_best_run_and_random_init():
    X = make_data("colors")
    best = KMeans(8, init="random", n_init=5, random_state=0).fit(X)
    runs = []
    rs = np.random.RandomState(0)
    for _ in range(5):
        runs.append(KMeans(8, init="random", n_init=1, random_state=rs).fit(X).inertia_)
    assert best.inertia_ == pytest.approx(min(runs), rel=1e-12)
    # (the RandomState is shared across runs exactly as n_init does)
    # n_init='auto' is 10 runs for 'random': the best of those ten
    auto = KMeans(8, init="random", random_state=0).fit(X)
    ten = KMeans(8, init="random", n_init=10, random_state=0).fit(X)
    assert auto.cluster_centers_.tobytes() == ten.cluster_centers_.tobytes()
    # and one run for 'k-means++'
    one = KMeans(8, random_state=0).fit(X)
    assert one.cluster_centers_.tobytes() == \
        KMeans(8, n_init=1, random_state=0).fit(X).cluster_centers_.tobytes()


def test_explicit_init_with_n_init_warns():
    X = make_data("colors")
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(3, init=X[:3], n_init=4).fit(X)


def test_callable_init():
    X = make_data("colors")
    calls = []

    def init(X, k, random_state):
        calls.append(k)
        return X[:k]

    km = KMeans(3, init=init, n_init=2).fit(X)
    assert calls == [3, 3]
    assert km.cluster_centers_.shape == (3, 3)


def test_max_iter_reached_and_final_estep():
    X = make_data("colors")
    km = KMeans(16, max_iter=2, tol=0, random_state=0).fit(X)
    assert km.n_iter_ == 2
    np.testing.assert_array_equal(km.labels_, km.predict(X))


def test_verbose_prints(capsys):
    KMeans(3, verbose=1, random_state=0).fit(make_data("colors"))
    out = capsys.readouterr().out
    assert "Initialization complete" in out and "Converged at iteration" in out


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        KMeans(3).predict(np.zeros((2, 2)))
    with pytest.raises(NotFittedError):
        KMeans(3).transform(np.zeros((2, 2)))


def test_feature_names_roundtrip():
    pd = pytest.importorskip("pandas")
    X = make_data("d6")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    km = KMeans(3, random_state=0).fit(df)
    assert list(km.feature_names_in_) == list(df.columns)
    np.testing.assert_array_equal(km.predict(df), km.labels_)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        km.predict(X)
    with pytest.raises(ValueError, match="feature names should match"):
        km.predict(df.rename(columns={"f0": "zz"}))
    assert not hasattr(KMeans(3, random_state=0).fit(X), "feature_names_in_")


def test_no_warnings_on_clean_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(4, random_state=0).fit(make_data("blobs2d"))


# --------------------------------------------------------------------------- drop-in details

@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly", "exponion", "elkan"])
def test_empty_cluster_with_duplicate_points_converges_as_scikit_learn(algorithm):
    """More clusters than distinct points: nothing can be relocated, the empty
    cluster sits where the heaviest one is, and the fit converges at once."""
    X = np.array([[0.0, 0], [1, 1], [1, 1], [1, 0], [0, 1]])
    with pytest.warns(ConvergenceWarning, match="Number of distinct clusters"):
        km = KMeans(5, init=X.copy(), n_init=1, algorithm=algorithm).fit(X)
    assert km.n_iter_ == 1
    np.testing.assert_array_equal(km.labels_, [0, 1, 1, 3, 4])
    np.testing.assert_array_equal(km.cluster_centers_, X)
    sk = pytest.importorskip("sklearn.cluster")
    with pytest.warns(UserWarning):  # scikit-learn's ConvergenceWarning
        ref = sk.KMeans(5, init=X.copy(), n_init=1, algorithm="lloyd").fit(X)
    assert ref.n_iter_ == km.n_iter_
    np.testing.assert_array_equal(ref.cluster_centers_, km.cluster_centers_)


def test_a_cluster_emptied_by_relocation_goes_to_the_heaviest_cluster():
    X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [30.0]])
    init = np.array([[0.1], [10.05], [100.0]])   # cluster 2 starts empty
    km = KMeans(3, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(X)
    assert set(km.labels_.tolist()) == {0, 1, 2}  # 30.0 was moved to the empty cluster
    assert km.cluster_centers_[2, 0] == 30.0


def test_elkan_with_one_cluster_warns_and_runs_lloyd():
    X = np.random.RandomState(0).normal(size=(50, 3))
    with pytest.warns(RuntimeWarning, match="doesn't make sense for a single cluster"):
        km = KMeans(1, algorithm="elkan", random_state=0).fit(X)
    assert km.algorithm_ == "lloyd"
    np.testing.assert_allclose(km.cluster_centers_[0], X.mean(axis=0), rtol=1e-12)


def test_init_shape_errors_say_which_dimension_is_wrong():
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=r"The shape of the initial centers \(2, 5\) does not "
                                         r"match the number of clusters 8"):
        KMeans(8, init=np.zeros((2, 5))).fit(X)
    with pytest.raises(ValueError, match=r"The shape of the initial centers \(8, 5\) does not "
                                         r"match the number of features of the data 3"):
        KMeans(8, init=np.zeros((8, 5))).fit(X)


def test_kmeans_plusplus_checks_the_length_of_x_squared_norms():
    from fastkm import kmeans_plusplus

    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="The length of x_squared_norms 19 should be equal to "
                                         "the length of n_samples 20"):
        kmeans_plusplus(X, 3, x_squared_norms=np.ones(19))
    centers, _ = kmeans_plusplus(X, 3, x_squared_norms=(X ** 2).sum(1), random_state=0)
    assert centers.shape == (3, 3)
