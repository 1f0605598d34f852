"""Repeated rows are fitted once (with their total weight), and few-feature data
is put in spatial order so that Lloyd's tiles can skip centers. Neither may
change what the user gets: same seeds, same labels, same centers."""
import numpy as np
import pytest
from conftest import numpy_lloyd, seed_pp

import fastkm
from fastkm._dispatch import lloyd
from fastkm._kernels import prepare as _prepare
from fastkm._kernels.reduce import BlockSums
from fastkm._kernels.runtime import Region
from fastkm.kmeans import _policy
from fastkm.kmeans._prepare import FitData, deduplicate, tile_layout
from fastkm.kmeans._seeding import kmeans_plusplus_data


def _colors(n=20000, distinct=1500, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    palette = rng.randint(0, 256, size=(distinct, 3)) / 255.0
    return np.ascontiguousarray(palette[rng.randint(0, distinct, size=n)], dtype=dtype)


@pytest.fixture
def plain(monkeypatch):
    """Turn deduplication and spatial ordering off (the reference path)."""
    def off():
        monkeypatch.setattr(_policy, "DEDUP_MIN_SAMPLES", 1 << 62)
        monkeypatch.setattr(_policy, "PRUNE_MIN_SAMPLES", 1 << 62)
    return off


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unique_rows_matches_numpy(dtype):
    X = _colors(dtype=dtype)
    U, inverse = _prepare.unique_rows(X, X.shape[0])
    np.testing.assert_array_equal(U[inverse], X)
    assert U.shape[0] == np.unique(X, axis=0).shape[0]
    assert inverse.dtype == np.int32 and U.dtype == dtype
    for threads in (2, 3):
        U2, inverse2 = _prepare.unique_rows(X, X.shape[0], threads)
        np.testing.assert_array_equal(U2, U)
        np.testing.assert_array_equal(inverse2, inverse)
    # odd-width float32 rows (a 4-byte tail) and rows differing in one bit
    Y = np.zeros((6000, 5), dtype=np.float32)
    Y[::2, 4] = np.float32(1e-45)
    U3, inv3 = _prepare.unique_rows(Y, 10)
    assert U3.shape[0] == 2 and np.array_equal(U3[inv3], Y)


def test_unique_rows_gives_up_when_rows_are_distinct():
    X = np.random.RandomState(0).normal(size=(50000, 3))
    assert _prepare.unique_rows(X, 40000) is None
    Y = _colors(n=10000, distinct=3000)
    assert _prepare.unique_rows(Y, 100) is None  # more than max_unique distinct rows
    assert _prepare.unique_rows(Y, 5000) is not None


def test_spatial_order_is_a_deterministic_permutation():
    X = np.random.RandomState(1).normal(size=(30000, 3))
    p = _prepare.spatial_order(X)
    assert np.array_equal(np.sort(p), np.arange(X.shape[0]))
    assert np.array_equal(p, _prepare.spatial_order(X.copy()))
    # neighbours in the order are close: consecutive 256-row runs span small boxes
    Y = X[p]
    spans = [np.ptp(Y[s:s + 256], axis=0).max() for s in range(0, len(Y) - 256, 256)]
    assert np.median(spans) < 0.25 * np.ptp(X, axis=0).max()
    # constant columns and d = 1 are fine
    Z = np.zeros((1000, 2))
    assert np.array_equal(np.sort(_prepare.spatial_order(Z)), np.arange(1000))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pruned_lloyd_pass_is_bitwise_the_direct_pass(d, dtype):
    rng = np.random.RandomState(d)
    X = rng.randint(0, 20, size=(6000, d)).astype(dtype) / 19  # ties on a grid
    X = np.ascontiguousarray(X[_prepare.spatial_order(X)])
    sw = rng.uniform(0.5, 2, size=len(X)).astype(dtype)
    C = np.ascontiguousarray(X[rng.choice(len(X), 24, replace=False)] + 0.01, dtype=dtype)
    C[5] = C[4]  # a duplicated center: ties between centers too
    xt = tile_layout(X, 2)
    out = []
    for prune, tiles, threads in [(False, None, 1), (True, None, 2), (True, xt, 1), (True, xt, 3)]:
        n, k = len(X), len(C)
        labels = np.full(n, -1, dtype=np.int32)
        bs = BlockSums(n, k, d)
        lloyd.lloyd_iter(X, sw, C, labels, bs, Region(threads), prune, tiles)
        sums, weights = bs.sums.copy(), bs.weights.copy()
        assigned = np.empty(n, dtype=np.int32)
        lloyd.assign_labels(X, C, assigned, Region(threads), prune, tiles)
        np.testing.assert_array_equal(assigned, labels)
        out.append((labels, sums, weights))
    for labels, sums, weights in out[1:]:
        np.testing.assert_array_equal(labels, out[0][0])
        np.testing.assert_array_equal(sums, out[0][1])
        np.testing.assert_array_equal(weights, out[0][2])
    assert not np.any(out[0][0] == 5)  # lowest index wins the tie


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly", "elkan"])
def test_dedup_and_order_do_not_change_the_fit(plain, dtype, algorithm):
    """Repeated rows + spatial order + pruned tiles give the fit of the plain path."""
    X = _colors(dtype=dtype)
    fast = fastkm.KMeans(24, random_state=3, algorithm=algorithm).fit(X)
    plain()
    ref = fastkm.KMeans(24, random_state=3, algorithm=algorithm).fit(X)
    np.testing.assert_array_equal(fast.labels_, ref.labels_)
    np.testing.assert_allclose(fast.cluster_centers_, ref.cluster_centers_,
                               rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert fast.n_iter_ == ref.n_iter_
    assert fast.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)


def test_seeding_on_distinct_rows_draws_the_full_data_centers():
    X = _colors()
    sw = np.ones(len(X))
    Xu, wu, inverse = deduplicate(X, sw, 32)
    assert Xu.shape[0] < 0.2 * X.shape[0]
    ref_c, ref_idx = seed_pp(X, 32, sw, 7, 2)
    perm = _prepare.spatial_order(Xu)
    rank = np.empty(len(perm), dtype=np.int32)
    rank[perm] = np.arange(len(perm), dtype=np.int32)
    for Y, w, inv in [(Xu, wu, inverse), (Xu[perm], wu[perm], rank[inverse])]:
        data = FitData(Y, w, inv, sw, False, None, None)
        c, idx = kmeans_plusplus_data(data, 32, np.random.RandomState(7), None, 2)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(c, ref_c)


def test_explicit_init_on_duplicated_data_matches_numpy_lloyd():
    X = _colors(n=12000, distinct=900, seed=5)
    C0 = X[np.random.RandomState(0).choice(len(X), 16, replace=False)] + 1e-3
    est = fastkm.KMeans(16, init=C0, n_init=1, max_iter=50, tol=0).fit(X)
    labels, centers, _ = numpy_lloyd(X, C0, max_iter=50)
    np.testing.assert_array_equal(est.labels_, labels)
    np.testing.assert_allclose(est.cluster_centers_, centers, rtol=1e-10, atol=1e-12)


def test_weights_of_repeated_rows_add_up():
    X = _colors(n=8000, distinct=400, seed=2)
    sw = np.random.RandomState(0).uniform(0.1, 3, size=len(X))
    est = fastkm.KMeans(10, random_state=0).fit(X, sample_weight=sw)
    # inertia is the weighted inertia of the full data
    d2 = ((X - est.cluster_centers_[est.labels_]) ** 2).sum(1)
    assert est.inertia_ == pytest.approx(d2 @ sw, rel=1e-9)


def test_auto_uses_pruned_lloyd_for_few_features_and_exponion_beyond():
    rng = np.random.RandomState(0)
    for d, expected in [(2, "lloyd"), (3, "lloyd"), (4, "lloyd"), (6, "exponion"),
                        (8, "exponion"), (12, "exponion")]:
        X = rng.normal(size=(5000, d))
        assert fastkm.KMeans(10, n_init=1, random_state=0).fit(X).algorithm_ == expected
    # no spatial order (too few rows): Lloyd only for colors
    X = rng.normal(size=(500, 2))
    assert fastkm.KMeans(10, random_state=0).fit(X).algorithm_ == "exponion"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 3, 5])
def test_seeding_skips_chunks_out_of_reach_and_draws_the_same_centers(monkeypatch, dtype, d):
    """Rows in spatial order: a k-means++ step skips the chunks a center cannot
    reach (box distance beyond the chunk's largest D^2). The centers, and every
    step's potentials, are those of the full pass, for any thread count."""
    from fastkm._dispatch import seeding
    from fastkm.kmeans import _seeding

    rng = np.random.RandomState(d)
    X = (rng.uniform(0, 50, size=(60, d))[rng.randint(0, 60, 20000)]
         + rng.normal(size=(20000, d))).astype(dtype)
    X = np.ascontiguousarray(X[_prepare.spatial_order(X)])
    sw = rng.uniform(0.5, 2, size=len(X)).astype(dtype)
    data = FitData(X, sw, None, sw, True, tile_layout(X, 2), None)
    skipped = []
    real_update = seeding.update_closest

    def counting_update(X_, w, closest, center, block_pot, rpb, region, xt, bounds):
        if bounds is not None:
            skipped.append(bounds.out_of_reach(center) / bounds.n_chunks)
        return real_update(X_, w, closest, center, block_pot, rpb, region, xt, bounds)

    monkeypatch.setattr(_seeding.seeding, "update_closest", counting_update)
    got = [kmeans_plusplus_data(data, 40, np.random.RandomState(1), None, t) for t in (1, 2, 3)]
    monkeypatch.setattr(_seeding.seeding, "chunk_bounds", lambda *a: None)
    ref = kmeans_plusplus_data(data, 40, np.random.RandomState(1), None, 2)
    for c, idx in got:
        np.testing.assert_array_equal(idx, ref[1])
        assert c.tobytes() == ref[0].tobytes()
    assert skipped[0] == 0                   # the first center reaches every chunk
    assert np.median(skipped[-10:]) > 0.5    # late centers skip most chunks
