"""init='k-means||' (fastkm.kmeans._scalable, _kernels/scalable, _tree): the
Philox draws, the kernels against NumPy, the fixed reduction tree, thread-count
independence, deduplication invariance, and the quality of the seeds."""
import numpy as np
import pytest

from fastkm import KMeans, k_means
from fastkm._dispatch import scalable
from fastkm._threads import Region
from fastkm.kmeans import _scalable, _tree
from fastkm.kmeans._prepare import FitData


def blobs(n, d, centers, std=1.0, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-10, 10, size=(centers, d))
    X = C[rng.randint(centers, size=n)] + rng.normal(scale=std, size=(n, d))
    return X.astype(dtype)


# ------------------------------------------------------------------ Philox


@pytest.mark.parametrize("ctr, key, want", [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
])
def test_philox_known_answers(ctr, key, want):
    # Random123's kat_vectors for philox4x32-10
    out = np.zeros(4, dtype=np.uint32)
    scalable.philox_block(np.array(ctr, np.uint32), np.array(key, np.uint32), out)
    assert out.tolist() == list(want)


def test_uniforms_are_a_function_of_the_row():
    whole = np.empty(1000)
    scalable.uniforms(7, 9, 3, 0, whole)
    part = np.empty(100)
    scalable.uniforms(7, 9, 3, 450, part)
    assert np.array_equal(part, whole[450:550])
    assert whole.min() >= 0.0 and whole.max() < 1.0
    other = np.empty(1000)
    scalable.uniforms(7, 9, 4, 0, other)     # another round: another stream
    assert not np.array_equal(other, whole)
    big = np.empty(200_000)
    scalable.uniforms(1, 2, 1, 2**40, big)   # 64-bit row counters
    assert abs(big.mean() - 0.5) < 0.005 and abs(big.var() - 1 / 12) < 0.002


# ------------------------------------------------------------------ kernels vs NumPy


@pytest.mark.parametrize("d", [3, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lower_closest_matches_numpy(d, dtype):
    rng = np.random.RandomState(d)
    X = rng.normal(size=(3000, d)).astype(dtype)
    sets = [rng.normal(size=(m, d)).astype(dtype) for m in (1, 5, 40)]
    closest = np.full(3000, np.inf)
    owner = np.zeros(3000, dtype=np.int32)
    offset = 0
    for C in sets:
        scalable.lower_closest(X, C, closest, owner, offset, Region(2))
        offset += C.shape[0]
    cands = np.concatenate(sets).astype(np.float64)
    d2 = ((X[:, None, :].astype(np.float64) - cands[None]) ** 2).sum(-1)
    assert np.allclose(closest, d2.min(axis=1), rtol=1e-12)
    # the owner is the nearest candidate, up to the tile kernels' rounding
    part = np.sort(d2, axis=1)
    clear = part[:, 1] - part[:, 0] > 1e-4 * (1 + part[:, 0])
    assert np.array_equal(owner[clear], d2.argmin(axis=1)[clear])
    assert clear.mean() > 0.9


def test_block_potentials_and_sample_rows_match_numpy():
    rng = np.random.RandomState(0)
    n = 5000
    w = rng.uniform(0, 2, n).astype(np.float32)
    closest = rng.uniform(0, 3, n)
    out = np.empty(3)
    scalable.block_potentials(w, closest, None, 2048, out, 2)
    ref = [np.sum(w[s:s + 2048].astype(np.float64) * closest[s:s + 2048])
           for s in range(0, n, 2048)]
    assert np.allclose(out, ref, rtol=1e-12)
    scalable.block_potentials(w, None, None, 2048, out, 2)
    assert np.allclose(out, [w[s:s + 2048].sum(dtype=np.float64) for s in range(0, n, 2048)])
    phi = float(np.sum(w * closest))
    picked = np.empty(n, dtype=np.uint8)
    count = scalable.sample_rows(w, closest, None, phi, 40.0, 5, 6, 2, 1000, picked, 2)
    u = np.empty(n)
    scalable.uniforms(5, 6, 2, 1000, u)
    ref = u * phi < 40.0 * w.astype(np.float64) * closest
    assert np.array_equal(picked.astype(bool), ref) and count == ref.sum()
    # through a map onto distinct rows: the rows of the map are walked
    inv = rng.randint(0, 100, n).astype(np.int32)
    cl = rng.uniform(0, 3, 100)
    scalable.sample_rows(w, cl, inv, phi, 40.0, 5, 6, 2, 1000, picked, 1)
    assert np.array_equal(picked.astype(bool), u * phi < 40.0 * w.astype(np.float64) * cl[inv])


# ------------------------------------------------------------------ the tree


def test_tree_total_is_independent_of_the_split():
    rng = np.random.RandomState(1)
    for n_blocks in (1, 2, 3, 7, 16, 33):
        parts = [rng.normal(size=5) * 10.0 ** rng.randint(-8, 8) for _ in range(n_blocks)]
        whole = _tree.tree_sum(parts)
        for _ in range(5):
            cuts = sorted(set(rng.randint(1, n_blocks, size=rng.randint(0, 4)))) \
                if n_blocks > 1 else []
            edges = [0, *cuts, n_blocks]
            nodes = []
            for a, b in zip(edges[:-1], edges[1:]):
                nodes += _tree.tree_nodes(parts[a:b], a)
            rng.shuffle(nodes)
            assert np.array_equal(_tree.tree_total(nodes, n_blocks), whole)
        assert np.allclose(whole, np.sum(parts, axis=0))
    with pytest.raises(ValueError, match="missing"):
        _tree.tree_total(_tree.tree_nodes(parts[:3]), len(parts))


def test_block_rows_depends_on_the_model_only():
    assert _tree.block_rows(64, 32) == _tree.BLOCK_ROWS
    assert _tree.block_rows(10_000, 768) > _tree.BLOCK_ROWS
    assert _tree.block_rows(10_000, 768) % 256 == 0


# ------------------------------------------------------------------ k-means|| fits


@pytest.mark.parametrize("d", [4, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_centers_for_any_thread_count(d, dtype):
    X = blobs(20000, d, 30, std=2.0, dtype=dtype)
    fits = [KMeans(30, init="k-means||", random_state=4, n_threads=t, max_iter=3).fit(X)
            for t in (1, 2, 3)]
    for km in fits[1:]:
        assert np.array_equal(km.cluster_centers_, fits[0].cluster_centers_)
        assert km.inertia_ == fits[0].inertia_


def test_seeds_walk_the_input_rows():
    """Deduplicated (and, with few features, reordered) data give the seeds of
    the rows as they are: the draws and the weights walk the input's rows."""
    rng = np.random.RandomState(3)
    base = rng.normal(size=(3000, 3)) * 5
    X = base[rng.randint(0, 3000, size=20000)]      # many repeats: deduplicated
    as_stored = FitData(X, np.ones(len(X)), None, np.ones(len(X)), False, None, None)
    c1 = _scalable.kmeans_parallel_data(as_stored, 20, np.random.RandomState(0), 2)
    km = KMeans(20, init="k-means||", random_state=0, max_iter=1, tol=0)
    orig = _scalable.kmeans_parallel_data
    got = {}

    def spy(data, *a, **kw):
        got["dedup"] = data.input_rows is not None
        got["c"] = orig(data, *a, **kw)
        return got["c"]

    _scalable.kmeans_parallel_data = spy
    try:
        km.fit(X)
    finally:
        _scalable.kmeans_parallel_data = orig
    assert got["dedup"]
    assert np.array_equal(got["c"], c1)


def test_kmeans_parallel_quality_close_to_kmeans_plusplus():
    X = blobs(30000, 10, 60, std=3.0, dtype=np.float32)
    pp = np.mean([KMeans(60, random_state=s).fit(X).inertia_ for s in range(3)])
    par = np.mean([KMeans(60, init="k-means||", random_state=s).fit(X).inertia_
                   for s in range(3)])
    assert par <= pp * 1.03


def test_k_means_function_and_n_init():
    X = blobs(2000, 5, 8)
    centers, labels, inertia, n_iter = k_means(X, 8, init="k-means||", random_state=0,
                                               return_n_iter=True)
    assert centers.shape == (8, 5) and labels.shape == (2000,)
    km = KMeans(8, init="k-means||", random_state=0).fit(X)
    assert np.array_equal(km.cluster_centers_, centers) and km.inertia_ == inertia
    assert "k-means||" in KMeans.__doc__


def test_tiny_and_repetitive_data():
    # fewer candidates than clusters, all rows equal to some candidate
    X = np.repeat(np.arange(5.0)[:, None], 4, axis=0)
    with pytest.warns(Warning, match="distinct clusters"):
        km = KMeans(8, init="k-means||", random_state=0).fit(X)
    assert km.cluster_centers_.shape == (8, 1)
    X = np.arange(10.0)[:, None]
    km = KMeans(10, init="k-means||", random_state=0).fit(X)
    assert np.isclose(km.inertia_, 0.0)


def test_zero_weight_rows_are_never_candidates():
    X = blobs(3000, 6, 10)
    w = np.ones(len(X))
    w[::2] = 0
    data = FitData(X, w, None, w, False, None, None)
    src = _scalable.MemorySource(data, 10, 2)
    _, cands, weights = _scalable.kmeans_parallel(src, 10, np.random.RandomState(1), 2)
    rows = {tuple(r) for r in X[1::2]}
    assert all(tuple(c) in rows for c in cands)
    assert np.isclose(weights.sum(), w.sum())


def test_bad_init_string():
    with pytest.raises(ValueError, match="k-means\\|\\|"):
        KMeans(3, init="k-means+++").fit(np.zeros((5, 2)))
