"""Compiled kernels against plain NumPy references, for every ISA build present."""
import importlib

import numpy as np
import pytest
from conftest import has_near_ties, numpy_assign, seed_pp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastkm._kernels import layout, stats
from fastkm._kernels.reduce import BlockSums
from fastkm._kernels.runtime import Region, cpu_x86_level

ISA_SUFFIXES = [""]
for _suffix, _level in (("_v3", 3), ("_v4", 4)):
    if cpu_x86_level() >= _level:  # checked first: the module may not even load otherwise
        try:
            importlib.import_module("fastkm._kernels.lloyd" + _suffix)
            ISA_SUFFIXES.append(_suffix)
        except ImportError:
            pass


@pytest.fixture(params=ISA_SUFFIXES, ids=lambda s: s.strip("_") or "baseline")
def kernels(request):
    return tuple(importlib.import_module(f"fastkm._kernels.{name}{request.param}")
                 for name in ("lloyd", "seeding", "seeding_dot"))


def lloyd_step(lloyd, X, sw, C, labels, n_threads=2):
    n, d = X.shape
    k = C.shape[0]
    bs = BlockSums(n, k, d)
    changed = lloyd.lloyd_iter(X, sw, C, labels, bs, Region(n_threads))
    return changed, bs.sums.copy(), bs.weights.copy()


SHAPES = [(1, 1, 1), (7, 1, 3), (300, 2, 5), (1000, 3, 64), (513, 4, 7), (600, 7, 9),
          (257, 9, 4), (400, 33, 17), (50, 64, 50), (64, 3, 64)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,k", SHAPES)
def test_lloyd_iter_matches_numpy(kernels, dtype, n, d, k):
    lloyd = kernels[0]
    rng = np.random.RandomState(n + d + k)
    X = rng.normal(size=(n, d)).astype(dtype)
    C = X[rng.choice(n, k, replace=False)].copy()
    sw = rng.uniform(0.5, 2.0, size=n).astype(dtype)
    if has_near_ties(X, C, 1e-4):
        pytest.skip("near-tie in random data")
    ref_labels, _ = numpy_assign(X, C)
    labels = np.full(n, -1, dtype=np.int32)
    changed, sums, weights = lloyd_step(lloyd, X, sw, C, labels)
    np.testing.assert_array_equal(labels, ref_labels)
    assert changed == n
    ref_w = np.bincount(ref_labels, weights=sw.astype(np.float64), minlength=k)
    ref_s = np.zeros((k, d))
    np.add.at(ref_s, ref_labels, sw[:, None].astype(np.float64) * X.astype(np.float64))
    np.testing.assert_allclose(weights, ref_w, rtol=1e-12)
    np.testing.assert_allclose(sums, ref_s, rtol=1e-10, atol=1e-10)
    # second call from the same centers: nothing changes
    changed2, sums2, _ = lloyd_step(lloyd, X, sw, C, labels)
    assert changed2 == 0
    np.testing.assert_array_equal(sums2, sums)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,k", SHAPES)
def test_assign_labels_and_distances(kernels, dtype, n, d, k):
    lloyd = kernels[0]
    rng = np.random.RandomState(7 * n + d)
    X = rng.uniform(-3, 3, size=(n, d)).astype(dtype)
    C = rng.uniform(-3, 3, size=(k, d)).astype(dtype)
    if has_near_ties(X, C, 1e-4):
        pytest.skip("near-tie in random data")
    ref_labels, ref_d2 = numpy_assign(X, C)
    labels = np.empty(n, dtype=np.int32)
    lloyd.assign_labels(X, C, labels, Region(2))
    np.testing.assert_array_equal(labels, ref_labels)
    out = np.empty((n, k), dtype=dtype)
    lloyd.pairwise_distances(X, C, out, Region(2))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, np.sqrt(ref_d2), rtol=tol, atol=tol)


def test_duplicates_tie_to_lowest_index(kernels):
    lloyd = kernels[0]
    for d in (1, 2, 3, 4, 12):
        X = np.zeros((10, d))
        C = np.zeros((9, d))  # every center equidistant: lowest index wins, as np.argmin
        labels = np.full(10, 5, dtype=np.int32)
        lloyd.assign_labels(X, C, labels, Region(2))
        assert (labels == 0).all()


def test_inertia_and_distances_to_assigned():
    rng = np.random.RandomState(3)
    X = rng.normal(size=(1000, 4))
    C = rng.normal(size=(5, 4))
    sw = rng.uniform(size=1000)
    labels = rng.randint(0, 5, size=1000).astype(np.int32)
    nb, rpb = layout.block_layout(1000)
    ref = ((X - C[labels]) ** 2).sum(axis=1)
    got = stats.inertia(X, sw, C, labels, np.empty(nb), rpb, 2)
    assert got == pytest.approx(float(ref @ sw), rel=1e-12)
    out = np.empty(1000)
    stats.distances_to_assigned(X, C, labels, out, 2)
    np.testing.assert_allclose(out, ref, rtol=1e-12)


@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (255, 8, 3), (256, 8, 3), (257, 8, 3),
                                   (10**6, 256, 32), (10**5, 4096, 784)])
def test_block_layout_covers_rows(n, k, d):
    nb, rpb = layout.block_layout(n, k, d)
    assert nb >= 1 and rpb % layout.CHUNK_ROWS == 0
    assert (nb - 1) * rpb < n <= nb * rpb
    assert nb <= layout.MAX_BLOCK_COUNT
    assert nb * k * (d + 1) * 8 <= max(layout.BLOCK_SUMS_BUDGET, k * (d + 1) * 8)


def test_kmeanspp_kernels_match_numpy(kernels):
    kpp = kernels[1]
    rng = np.random.RandomState(1)
    n, d = 2000, 3
    X = rng.normal(size=(n, d))
    sw = rng.uniform(0.1, 1, size=n)
    nb, rpb = layout.block_layout(n)
    closest = np.full(n, np.inf)
    block_pot = np.empty(nb)
    pot = kpp.update_closest(X, sw, closest, X[5], block_pot, rpb, Region(2))
    ref = ((X - X[5]) ** 2).sum(axis=1)
    np.testing.assert_allclose(closest, ref, rtol=1e-12)
    assert pot == pytest.approx(ref @ sw, rel=1e-12)
    cands = X[[10, 20, 30]]
    cand_pot = np.empty((3, nb))
    kpp.candidate_potentials(X, sw, closest, cands, cand_pot, rpb, Region(2))
    for t in range(3):
        dt = np.minimum(ref, ((X - cands[t]) ** 2).sum(axis=1))
        assert cand_pot[t].sum() == pytest.approx(dt @ sw, rel=1e-12)
    # inverse CDF: as searchsorted on the cumulative weighted D^2
    cum = np.cumsum(sw * closest)
    targets = np.array([0.0, 1e-9, cum[-1] * 0.3, cum[-1] * 0.77, cum[-1], cum[-1] * 2])
    out = np.empty(len(targets), dtype=np.intp)
    kpp.sample_d2(sw, closest, block_pot, rpb, targets, out)
    expected = np.minimum(np.searchsorted(cum, targets), n - 1)
    # cumulative sums are formed block-wise: allow a neighbour at exact boundaries
    assert np.all(np.abs(out - expected) <= 1)
    assert out[-1] == n - 1


@pytest.mark.parametrize("d", [1, 2, 3, 4, 6, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeanspp_pretransposed_path_is_bitwise_equal(kernels, d, dtype):
    """The whole-X tile copy (fused d <= 4 kernels) gives the same bits as the
    per-chunk path, for any thread count; potentials agree with NumPy."""
    kpp = kernels[1]
    rng = np.random.RandomState(d)
    n = 3 * layout.CHUNK_ROWS + 37  # a short last chunk
    X = rng.normal(size=(n, d)).astype(dtype)
    sw = rng.uniform(0.1, 2, size=n).astype(dtype)
    nb, rpb = layout.block_layout(n)
    xt = np.empty((-(-n // layout.CHUNK_ROWS), d, layout.CHUNK_ROWS), dtype=dtype)
    layout.transpose_chunks(X, xt, 2)
    results = []
    for pre, threads in [(None, 1), (xt, 1), (xt, 3), (None, 2)]:
        closest = np.full(n, np.inf)
        bp = np.empty(nb)
        pot = kpp.update_closest(X, sw, closest, X[3], bp, rpb, Region(threads), pre)
        cp = np.empty((4, nb))
        kpp.candidate_potentials(X, sw, closest, X[[7, 50, 400, n - 1]], cp, rpb, Region(threads),
                                 pre)
        results.append((pot, closest.copy(), cp.copy()))
    for pot, closest, cp in results[1:]:
        assert pot == results[0][0]
        np.testing.assert_array_equal(closest, results[0][1])
        np.testing.assert_array_equal(cp, results[0][2])
    Xd = X.astype(np.float64)
    ref = ((Xd - Xd[3]) ** 2).sum(1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert results[0][0] == pytest.approx(ref @ sw.astype(np.float64), rel=rtol)
    dt = np.minimum(ref, ((Xd - Xd[400]) ** 2).sum(1))
    assert results[0][2][2].sum() == pytest.approx(dt @ sw.astype(np.float64), rel=rtol)


@pytest.mark.parametrize("d", [5, 12, 40])
def test_kmeanspp_equals_brute_force_greedy(d):
    """Our seeding picks exactly the centers of a brute-force greedy k-means++
    (scikit-learn's algorithm) fed the same random stream: the few-feature
    kernels (d=5) and the dot-product ones (d=12, 40), for any thread count."""
    rng = np.random.RandomState(4)
    X = np.concatenate([c + rng.normal(size=(300, d)) for c in rng.uniform(-20, 20, (8, d))])
    sw = rng.uniform(0.5, 1.5, size=len(X))
    centers, idx = seed_pp(X, 12, sw, 0, 2)
    for threads in (1, 3):
        c2, idx2 = seed_pp(X, 12, sw, 0, threads)
        np.testing.assert_array_equal(idx2, idx)
        np.testing.assert_array_equal(c2, centers)
    chosen = greedy_kmeanspp_reference(X, sw, 12, 0)
    np.testing.assert_array_equal(idx, chosen)
    np.testing.assert_array_equal(centers, X[chosen])


def greedy_kmeanspp_reference(X, sw, k, seed):
    """Brute-force greedy k-means++ in float64 NumPy (scikit-learn's algorithm,
    the same random stream): the rows chosen."""
    X = X.astype(np.float64)
    sw = np.asarray(sw, dtype=np.float64)
    rs = np.random.RandomState(seed)
    trials = 2 + int(np.log(k))
    first = rs.choice(len(X), p=sw / sw.sum())
    chosen = [first]
    closest = ((X - X[first]) ** 2).sum(1)
    for _ in range(1, k):
        r = rs.uniform(size=trials) * (closest @ sw)
        cand = np.minimum(np.searchsorted(np.cumsum(sw * closest), r), len(X) - 1)
        d = np.minimum(closest, ((X[None] - X[cand][:, None]) ** 2).sum(-1))
        best = int(np.argmin(d @ sw))
        chosen.append(int(cand[best]))
        closest = d[best]
    return chosen


class _CheckedPruning:
    """A seeding module whose ``dot_potentials`` also runs unpruned (radius =
    inf) and checks the pruned call against it, bit for bit; records how many
    rows each call evaluated."""

    def __init__(self, kpp):
        self.kpp = kpp
        self.counts = []

    def __getattr__(self, name):
        return getattr(self.kpp, name)

    def dot_potentials(self, X, sw, closest, x_sq, cand, owner, radius, gap, block_pot, d2,
                       rows, n_rows, rpb, region, prune=True):
        assert prune  # SEED_PRUNE_BELOW is patched: every step prunes
        n = len(closest)
        full_pot, full_d2 = np.empty_like(block_pot), np.empty_like(d2)
        full_rows, full_n = np.empty_like(rows), np.empty_like(n_rows)
        # the unpruned kernel, and the pruned one told to evaluate every row
        assert self.kpp.dot_potentials(X, sw, closest, x_sq, cand, owner, radius, gap, full_pot,
                                       full_d2, full_rows, full_n, rpb, region, False) == n
        np.testing.assert_array_equal(full_n, -1)
        all_pot, all_d2 = np.empty_like(block_pot), np.empty_like(d2)
        assert self.kpp.dot_potentials(X, sw, closest, x_sq, cand, owner, np.full(n, np.inf), gap,
                                       all_pot, all_d2, full_rows, full_n, rpb, region) == n
        np.testing.assert_array_equal(full_rows, np.arange(n))
        assert all_pot.tobytes() == full_pot.tobytes()
        assert all_d2.tobytes() == full_d2.tobytes()
        count = self.kpp.dot_potentials(X, sw, closest, x_sq, cand, owner, radius, gap,
                                        block_pot, d2, rows, n_rows, rpb, region)
        self.counts.append(count)
        assert block_pot.tobytes() == full_pot.tobytes()  # the unpruned potentials, bitwise
        pos = np.concatenate([np.arange(b * rpb, b * rpb + c) for b, c in enumerate(n_rows)])
        assert count == len(pos)
        evaluated = rows[pos]
        assert np.all(np.diff(evaluated) > 0)
        assert d2[:, pos].tobytes() == full_d2[:, evaluated].tobytes()
        # a skipped row: no candidate's computed D^2 is below its current one
        skipped = np.setdiff1d(np.arange(n), evaluated)
        assert np.all(full_d2[:, skipped] >= closest[skipped])
        return count


def _seed_checked(monkeypatch, kpp, X, sw, k, n_threads=2):
    from fastkm.kmeans import _policy, _seeding

    checked = _CheckedPruning(kpp)
    monkeypatch.setattr(_seeding, "seeding_dot", checked)
    monkeypatch.setattr(_policy, "SEED_PRUNE_BELOW", 2.0)  # test rows at every step
    centers, idx = seed_pp(X, k, sw, 0, n_threads)
    monkeypatch.undo()
    # the default schedule (pruning late steps only) draws the same centers
    monkeypatch.setattr(_seeding, "seeding_dot", kpp)
    plain_c, plain_idx = seed_pp(X, k, sw, 0, n_threads)
    monkeypatch.undo()
    np.testing.assert_array_equal(plain_idx, idx)
    assert plain_c.tobytes() == centers.tobytes()
    return centers, idx, np.array(checked.counts)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pruned_seeding_on_separated_blobs(kernels, monkeypatch, dtype):
    """Well-separated blobs: the pruning skips most rows once most blobs hold a
    center, every step's potentials equal the unpruned kernel's bit for bit,
    the centers are the brute-force greedy k-means++ ones, for any thread count."""
    kpp = kernels[2]
    rng = np.random.RandomState(11)
    d, blobs, per = 16, 40, 60
    X = np.concatenate([c + rng.normal(size=(per, d)) for c in rng.uniform(-60, 60, (blobs, d))])
    X = X[rng.permutation(len(X))].astype(dtype)
    sw = rng.uniform(0.5, 2.0, size=len(X)).astype(dtype)
    k = 40
    centers, idx, counts = _seed_checked(monkeypatch, kpp, X, sw, k)
    n = len(X)
    assert counts[0] == n  # the first center
    # the rows computed (whole chunks where most rows are needed): one blob's
    # rows per uncovered blob, so fewer and fewer
    assert counts[-10:].max() <= 0.3 * n
    assert counts[-5:].mean() < 0.1 * n
    for threads in (1, 3):
        c2, idx2, counts2 = _seed_checked(monkeypatch, kpp, X, sw, k, threads)
        np.testing.assert_array_equal(idx2, idx)
        assert c2.tobytes() == centers.tobytes()
        np.testing.assert_array_equal(counts2, counts)
    np.testing.assert_array_equal(idx, greedy_kmeanspp_reference(X, sw, k, 0))
    assert centers.tobytes() == X[idx].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pruned_seeding_skips_nothing_it_may_not(kernels, monkeypatch, dtype):
    """Data far from the origin (the dot expansion's rounding dominates the
    distances) and identical rows: no row may be skipped, and none is; every
    step's potentials equal the unpruned kernel's."""
    kpp = kernels[2]
    rng = np.random.RandomState(12)
    scale = 1e-2 if dtype == np.float32 else 1e-7
    X = (1e3 + scale * rng.normal(size=(1500, 12))).astype(dtype)
    sw = np.ones(len(X), dtype=dtype)
    centers, idx, counts = _seed_checked(monkeypatch, kpp, X, sw, 10)
    np.testing.assert_array_equal(counts, len(X))
    assert centers.tobytes() == X[idx].tobytes()
    # one point repeated: every candidate is at distance 0 from every center
    Y = np.repeat(rng.normal(size=(1, 12)), 900, axis=0).astype(dtype)
    centers, idx, counts = _seed_checked(monkeypatch, kpp, Y, np.ones(len(Y), dtype), 3)
    np.testing.assert_array_equal(counts, len(Y))
    assert centers.tobytes() == Y[idx].tobytes()
    # two points: rows on the first center keep D^2 = 0 and may be skipped
    # (checked against the unpruned kernel at every step), the others may not
    Y[::3] += 5.0
    centers, idx, counts = _seed_checked(monkeypatch, kpp, Y, np.ones(len(Y), dtype), 3)
    assert counts[0] == len(Y) and counts[1] >= 300
    assert len({Y[i].tobytes() for i in idx[:2]}) == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 300),
    d=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_assignment_is_argmin(data, n, d, dtype):
    k = data.draw(st.integers(1, min(n, 20)))
    elems = st.floats(-100, 100, allow_nan=False, width=32)
    X = data.draw(hnp.arrays(dtype, (n, d), elements=elems))
    C = data.draw(hnp.arrays(dtype, (k, d), elements=elems))
    from fastkm._dispatch import lloyd

    labels = np.empty(n, dtype=np.int32)
    lloyd.assign_labels(X, C, labels, Region(2))
    _, d2 = numpy_assign(X, C)
    chosen = d2[np.arange(n), labels]
    # the chosen center is a nearest one up to the kernel's rounding
    scale = 1e-5 if dtype == np.float32 else 1e-12
    slack = scale * (1 + (X.astype(float) ** 2).sum(1)) * 4
    assert np.all(chosen <= d2.min(axis=1) * (1 + scale) + slack)
    assert labels.min() >= 0 and labels.max() < k


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), k=st.integers(1, 10), threads=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_property_lloyd_sums_thread_independent(n, k, threads, seed):
    from fastkm._dispatch import lloyd

    k = min(k, n)
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3))
    C = X[:k].copy()
    sw = rng.uniform(size=n)
    l1 = np.full(n, -1, dtype=np.int32)
    l2 = np.full(n, -1, dtype=np.int32)
    r1 = lloyd_step(lloyd, X, sw, C, l1, n_threads=1)
    r2 = lloyd_step(lloyd, X, sw, C, l2, n_threads=threads)
    np.testing.assert_array_equal(l1, l2)
    assert r1[0] == r2[0]
    assert np.array_equal(r1[1], r2[1]) and np.array_equal(r1[2], r2[2])  # bitwise
    assert r1[2].sum() == pytest.approx(sw.sum(), rel=1e-12)


def test_dot_seeding_kernel_rejects_too_many_candidates_and_seeding_falls_back():
    """dot_potentials takes at most 16 candidates per pass; kmeans_plusplus with
    more local trials uses the per-feature kernels instead (same draws)."""
    import fastkm
    from fastkm._dispatch import seeding_dot

    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 12))
    sw = np.ones(len(X))
    nb, rpb = layout.block_layout(len(X))
    with pytest.raises(ValueError, match="at most 16 candidates"):
        seeding_dot.dot_potentials(X, sw, np.full(len(X), np.inf), (X ** 2).sum(1), X[:17],
                                np.zeros(len(X), dtype=np.int32), np.full(len(X), np.inf),
                                np.zeros(1), np.empty((17, nb)), np.empty((17, len(X))),
                                np.empty(len(X), dtype=np.int32), np.empty(nb, dtype=np.intp),
                                rpb, Region(1))
    centers, idx = fastkm.kmeans_plusplus(X, 5, n_local_trials=20, random_state=0)
    np.testing.assert_array_equal(centers, X[idx])
    assert len(set(idx.tolist())) == 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centre_columns_matches_numpy(dtype):
    """The fit's mean-centring: X - mean rounded to X's dtype, as NumPy computes
    it; the same bits for any thread count; in place works; shapes are checked."""
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(3001, 13)) * 50 + 1e3).astype(dtype)
    before = X.copy()
    ref_mean = X.mean(axis=0, dtype=np.float64)
    outs = []
    for threads in (1, 2, 3):
        out = np.empty_like(X)
        mean = stats.centre_columns(X, out, threads)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
        np.testing.assert_array_equal(out, X - mean.astype(dtype))
        outs.append((mean.tobytes(), out.tobytes()))
    assert len(set(outs)) == 1
    np.testing.assert_array_equal(X, before)          # input untouched
    Y = X.copy()
    stats.centre_columns(Y, Y, 2)
    assert Y.tobytes() == outs[0][1]
    with pytest.raises(ValueError, match="shape"):
        stats.centre_columns(X, np.empty((3000, 13), dtype=dtype), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 4, 7, 32, 33])
def test_row_sq_norms(dtype, d):
    """Seeding's ||x||^2: the float64 sum of squares (to rounding), the same bits
    for any thread count, the input untouched."""
    rng = np.random.RandomState(d)
    X = (rng.normal(size=(1037, d)) * 30).astype(dtype)
    before = X.copy()
    ref = (X.astype(np.float64) ** 2).sum(axis=1)
    outs = [stats.row_sq_norms(X, t) for t in (1, 2, 3)]
    np.testing.assert_allclose(outs[0], ref, rtol=1e-13)
    assert outs[0].dtype == np.float64
    assert all(o.tobytes() == outs[0].tobytes() for o in outs)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite(dtype, bad):
    """The compiled finiteness scan finds one bad value anywhere, with any thread count."""
    X = np.ones((513, 5), dtype=dtype)
    for t in (1, 2, 3):
        assert stats.all_finite(X, t)
    for i, j in [(0, 0), (256, 3), (512, 4)]:
        Y = X.copy()
        Y[i, j] = bad
        assert [stats.all_finite(Y, t) for t in (1, 2, 3)] == [False] * 3
    big = np.full((2, 2), np.finfo(dtype).max, dtype=dtype)
    assert stats.all_finite(big, 2)


def test_center_sq_distances_thread_independent():
    """Hamerly/Exponion/Elkan's center-center distances: exact differences, the
    same bits for any thread count."""
    rng = np.random.RandomState(3)
    C = rng.normal(size=(67, 9))
    ref = ((C[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    outs = [stats.center_sq_distances(C, t) for t in (1, 2, 3)]
    np.testing.assert_allclose(outs[0], ref, rtol=1e-13, atol=1e-13)
    assert np.all(np.diag(outs[0]) == 0)
    assert all(o.tobytes() == outs[0].tobytes() for o in outs)
