"""MiniBatchKMeans on sparse (scipy.sparse) input: one step against NumPy,
thread-count independence, partial_fit streams, sparse-vs-dense agreement,
scikit-learn's semantics, formats and dtypes, and every bad input."""
import pickle

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

from fastkm import MiniBatchKMeans, kmeans_plusplus  # noqa: E402
from fastkm._dispatch import sparse_minibatch  # noqa: E402
from fastkm._kernels.runtime import Region  # noqa: E402
from fastkm.kmeans._csr import check_csr  # noqa: E402
from fastkm.kmeans._sparse_core import predict as sparse_predict  # noqa: E402
from fastkm.kmeans._sparse_minibatch import SparseStepper  # noqa: E402
from fastkm.kmeans._sparse_solver import Centers  # noqa: E402


def sparse_blobs(n=600, d=300, k=6, density=0.05, seed=0, dtype=np.float64):
    """Rows of k sparse prototypes plus sparse noise, TF-IDF-like (non-negative);
    the clusters are far apart, so no label is a near tie."""
    rng = np.random.RandomState(seed)
    protos = rng.uniform(0.5, 1.5, (k, d)) * (rng.rand(k, d) < 4 * density)
    X = protos[rng.randint(0, k, n)]
    X = X + rng.uniform(0, 1, (n, d)) * (rng.rand(n, d) < density)
    return sp.csr_matrix(X.astype(dtype))


def init_rows(X, k, seed=1):
    idx = np.random.RandomState(seed).choice(X.shape[0], k, replace=False)
    return np.asarray(X[idx].toarray())


def same_fit(a, b):
    return (np.array_equal(a.cluster_centers_, b.cluster_centers_)
            and np.array_equal(a.labels_, b.labels_) and a.inertia_ == b.inertia_
            and a.n_steps_ == b.n_steps_ and np.array_equal(a._counts, b._counts))


# --------------------------------------------------------------------------- one step

def _reference_step(Xd, rows, w, C, counts, adaptive):
    """One mini-batch step in NumPy float64 from given labels."""
    labels = sparse_predict(check_csr(sp.csr_matrix(Xd[rows])), C, 1)
    Xb, wd = Xd[rows].astype(np.float64), w.astype(np.float64)
    new, cnt = C.astype(np.float64), counts.copy()
    for j in range(C.shape[0]):
        m = labels == j
        wj = wd[m].sum()
        if wj > 0:
            s = (wd[m, None] * Xb[m]).sum(axis=0)
            if adaptive:
                a = np.sqrt(wj / wd.sum())
                new[j] = (1 - a) * C[j] + a * s / wj
            else:
                new[j] = (C[j] * counts[j] + s) / (counts[j] + wj)
            cnt[j] += wj
    inertia = (wd * ((Xb - C[labels].astype(np.float64)) ** 2).sum(axis=1)).sum()
    return labels, new, cnt, inertia


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_step_matches_numpy(dtype, adaptive, k):
    rng = np.random.RandomState(k)
    X = sparse_blobs(n=1500, d=2100, k=7, seed=k, dtype=dtype)   # 3 feature blocks
    Xd = X.toarray()
    C = init_rows(X, k, seed=k).astype(dtype)
    b = 700
    rows = rng.randint(0, X.shape[0], b).astype(np.intp)
    w = rng.uniform(0.5, 2.0, b).astype(dtype)
    w[:50] = 0.0                                    # zero weights count for nothing
    counts = rng.randint(0, 4, k).astype(np.float64)
    S = check_csr(X)
    stepper = SparseStepper(S, C, counts, 0, 0.0, adaptive, 2)
    inertia = stepper.step(S, rows, w, np.random.RandomState(0))
    labels, ref, ref_cnt, ref_inertia = _reference_step(Xd, rows, w, C, counts, adaptive)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(stepper.dense(), ref, rtol=0, atol=tol)
    np.testing.assert_allclose(stepper.counts, ref_cnt, rtol=1e-13)  # NumPy sums pairwise
    assert inertia == pytest.approx(ref_inertia, rel=1e-10 if dtype == np.float64 else 1e-5)
    # the squared movement of every center, and the norms the next step reads
    moved = ((stepper.dense().astype(np.float64) - C.astype(np.float64)) ** 2).sum(axis=1)
    np.testing.assert_allclose(stepper.buf.shift2, moved, rtol=1e-9, atol=1e-12)
    fresh = Centers(S, stepper.dense(), 1)
    np.testing.assert_allclose(stepper.C.cnorm, fresh.cnorm, rtol=1e-12)
    # the sums are left zero for the next step
    assert not stepper.buf.sums.any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_step_with_reassignment_is_the_dense_steppers(dtype):
    """A step that reassigns (some of the reassigned centers had batch rows):
    the same centers, counts and random draws as the dense Stepper, and each
    center's squared movement from where it was before the step."""
    from fastkm.kmeans._minibatch_core import Stepper

    X = sparse_blobs(n=1200, d=1500, k=6, seed=21, dtype=dtype)
    S, Xd = check_csr(X), X.toarray()
    k, b = 30, 300
    C = init_rows(X, k, seed=4).astype(dtype)
    counts = np.random.RandomState(5).uniform(0, 50, k)
    counts[:8] = 0.01          # below ratio x max: reassigned
    rows = np.random.RandomState(6).randint(0, 1200, b).astype(np.intp)
    w = np.ones(b, dtype=dtype)
    s = SparseStepper(S, C, counts, 0, 0.05, False, 2)
    d = Stepper(C, counts, 0, 0.05, False, b, 2)
    rs_s, rs_d = np.random.RandomState(9), np.random.RandomState(9)
    s.step(S, rows, w, rs_s)
    d.step(Xd, rows, w, rs_d)
    assert rs_s.randint(1 << 30) == rs_d.randint(1 << 30)   # the same draws
    np.testing.assert_array_equal(s.dense(), d.centers)
    np.testing.assert_array_equal(s.counts, d.counts)
    np.testing.assert_allclose(s.buf.shift2, d.buf.shift2, rtol=1e-9)
    moved = ((s.dense().astype(np.float64) - C) ** 2).sum(axis=1)
    np.testing.assert_allclose(s.buf.shift2, moved, rtol=1e-9)
    assert (s.buf.shift2[:8] > 0).all()
    fresh = Centers(S, s.dense(), 1)
    np.testing.assert_allclose(s.C.cnorm, fresh.cnorm, rtol=1e-12)


def test_batch_labels_and_inertia_are_predicts():
    X = check_csr(sparse_blobs(n=900, d=400, k=9, seed=3))
    C = init_rows(X.matrix, 12)
    rows = np.random.RandomState(0).randint(0, 900, 600).astype(np.int32)
    T = Centers(X, C, 1)
    labels = np.empty(600, dtype=np.int32)
    w = np.ones(600)
    inertia = sparse_minibatch.assign_batch(X.rows, rows, w, T.ct, T.hn, T.cnorm, labels,
                                            np.empty(3), Region(2))
    np.testing.assert_array_equal(labels, sparse_predict(X, C, 1)[rows])
    sub = check_csr(X.matrix[rows])
    assert inertia == pytest.approx(Centers(sub, C, 1).inertia(sub, w, labels), rel=1e-12)


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("params", [
    {}, {"adaptive_lr": True}, {"tol": 1e-4, "max_no_improvement": None},
    {"reassignment_ratio": 0.3, "batch_size": 64}, {"init": "random", "n_init": 3},
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bits_for_any_thread_count(params, dtype):
    X = sparse_blobs(n=3000, d=500, k=8, seed=4, dtype=dtype)
    kw = {"batch_size": 256, "random_state": 7, **params}
    fits = [MiniBatchKMeans(10, n_threads=t, **kw).fit(X) for t in (1, 2, 3)]
    assert fits[0].cluster_centers_.dtype == dtype
    assert same_fit(fits[0], fits[1]) and same_fit(fits[0], fits[2])
    assert fits[0].n_steps_ > 2


def test_partial_fit_stream_is_reproducible():
    X = sparse_blobs(n=4000, d=300, k=6, seed=5)
    ests = []
    for t in (1, 2, 3):
        est = MiniBatchKMeans(6, random_state=3, n_threads=t)
        for start in range(0, 4000, 250):
            est.partial_fit(X[start:start + 250])
        ests.append(est)
    assert all(same_fit(ests[0], e) for e in ests[1:])
    assert ests[0].n_steps_ == 16
    # a pickled estimator resumes the stream exactly
    est = MiniBatchKMeans(6, random_state=3)
    for start in range(0, 4000, 250):
        est.partial_fit(X[start:start + 250])
        if start == 1000:
            est = pickle.loads(pickle.dumps(est))
    assert same_fit(ests[0], est)
    # labels_ and inertia_ describe the last call's rows on the final centers
    last = X[3750:]
    np.testing.assert_array_equal(ests[0].labels_, ests[0].predict(last))
    assert ests[0].inertia_ == pytest.approx(-ests[0].score(last), rel=1e-12)


# --------------------------------------------------------------------------- sparse vs dense

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params", [{}, {"adaptive_lr": True}, {"reassignment_ratio": 0.5},
                                    {"sample_weight": True}])
def test_sparse_and_dense_agree(dtype, params):
    """The batches, reassignments and random draws do not depend on the data's
    format, and from the same labels the sparse update is the dense kernel's,
    bit for bit. Labels come from different kernels (sparse and dense tiles),
    equal wherever no row is a near tie (here: none is), so the two fits give
    the same centers, labels and steps; the inertias are computed differently
    (sparse: ||x||^2 + ||c||^2 - 2 x.c), equal to 1e-12 (float64)."""
    params = dict(params)
    X = sparse_blobs(n=2500, d=200, k=6, seed=6, dtype=dtype)
    w = (np.random.RandomState(8).uniform(0.5, 2.0, X.shape[0])
         if params.pop("sample_weight", False) else None)
    C0 = init_rows(X, 8, seed=2)
    kw = {"init": C0, "n_init": 1, "batch_size": 200, "random_state": 4, **params}
    s = MiniBatchKMeans(8, **kw).fit(X, sample_weight=w)
    d = MiniBatchKMeans(8, **kw).fit(X.toarray(), sample_weight=w)
    assert s.n_steps_ == d.n_steps_ > 5
    np.testing.assert_array_equal(s.cluster_centers_, d.cluster_centers_)
    np.testing.assert_array_equal(s.labels_, d.labels_)
    np.testing.assert_array_equal(s._counts, d._counts)
    assert s.inertia_ == pytest.approx(d.inertia_, rel=1e-12 if dtype == np.float64 else 1e-5)


def test_sparse_and_dense_partial_fit_agree():
    X = sparse_blobs(n=3000, d=250, k=5, seed=9)
    s, d = MiniBatchKMeans(5, random_state=1), MiniBatchKMeans(5, random_state=1)
    for start in range(0, 3000, 300):
        s.partial_fit(X[start:start + 300])
        d.partial_fit(X[start:start + 300].toarray())
    np.testing.assert_array_equal(s.cluster_centers_, d.cluster_centers_)
    np.testing.assert_array_equal(s.labels_, d.labels_)
    # a stream may mix formats: the state is the dense centers and the counts
    m = MiniBatchKMeans(5, random_state=1)
    for i, start in enumerate(range(0, 3000, 300)):
        chunk = X[start:start + 300]
        m.partial_fit(chunk if i % 2 else chunk.toarray())
    np.testing.assert_array_equal(m.cluster_centers_, d.cluster_centers_)


# --------------------------------------------------------------------------- scikit-learn

@pytest.mark.parametrize("params", [{}, {"init": "random"}, {"tol": 1e-3},
                                    {"batch_size": 100, "reassignment_ratio": 0.2}])
def test_weighted_sparse_fit_is_scikit_learns(params):
    """With unequal weights the batches are scikit-learn's draws: the sparse fit
    follows scikit-learn's sparse fit step for step (init on init_size rows,
    batches, reassignments to densified rows, early stopping with tol scaled by
    the mean column variance); only rounding differs."""
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = sparse_blobs(n=4000, d=150, k=10, seed=10)
    w = np.random.RandomState(11).uniform(0.5, 2.0, X.shape[0])
    ours = MiniBatchKMeans(10, random_state=1, **params).fit(X, sample_weight=w)
    theirs = SKMiniBatchKMeans(10, random_state=1, **params).fit(X, sample_weight=w)
    assert ours.n_steps_ == theirs.n_steps_ and ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)


def test_sparse_partial_fit_is_scikit_learns():
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = sparse_blobs(n=4000, d=120, k=8, seed=12)
    ours, theirs = MiniBatchKMeans(8, random_state=2), SKMiniBatchKMeans(8, random_state=2)
    for start in range(0, 4000, 400):
        ours.partial_fit(X[start:start + 400])
        theirs.partial_fit(X[start:start + 400])
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_unweighted_quality_as_scikit_learn():
    """Unweighted batches are drawn differently from scikit-learn's: compare the
    inertia reached from the same initial centers (k-means++ on the CSR rows),
    over a few seeds."""
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = sparse_blobs(n=6000, d=400, k=12, seed=13)
    C0, _ = kmeans_plusplus(X, 12, random_state=5)
    kw = {"init": C0, "n_init": 1, "batch_size": 256, "reassignment_ratio": 0.0}
    ours = np.mean([MiniBatchKMeans(12, random_state=s, **kw).fit(X).inertia_
                    for s in range(3)])
    theirs = np.mean([SKMiniBatchKMeans(12, random_state=s, **kw).fit(X).inertia_
                      for s in range(3)])
    assert ours <= 1.03 * theirs and theirs <= 1.03 * ours


# --------------------------------------------------------------------------- formats

def test_formats_dtypes_and_indices():
    X = sparse_blobs(n=800, d=90, k=4, seed=14)
    C0 = init_rows(X, 4)
    kw = {"init": C0, "n_init": 1, "batch_size": 128, "random_state": 0}
    ref = MiniBatchKMeans(4, **kw).fit(X)
    others = [sp.csr_array(X), X.tocsc(), X.tocoo(), sp.csr_array(X).tocoo()]
    big = X.copy()
    big.indices = big.indices.astype(np.int64)
    big.indptr = big.indptr.astype(np.int64)
    others.append(big)
    for Y in others:
        assert same_fit(ref, MiniBatchKMeans(4, **kw).fit(Y))
    f32 = MiniBatchKMeans(4, **kw).fit(X.astype(np.float32))
    assert f32.cluster_centers_.dtype == np.float32
    np.testing.assert_allclose(f32.cluster_centers_, ref.cluster_centers_, rtol=1e-4,
                               atol=1e-5)
    ints = MiniBatchKMeans(4, **kw).fit((X * 10).astype(np.int64))
    assert ints.cluster_centers_.dtype == np.float64
    # every method that takes X takes it sparse
    est = MiniBatchKMeans(4, **kw)
    np.testing.assert_array_equal(est.fit_predict(X), ref.labels_)
    np.testing.assert_array_equal(ref.predict(X), ref.labels_)
    np.testing.assert_allclose(est.fit_transform(X), ref.transform(X.toarray()), rtol=1e-10)
    assert ref.score(X) == pytest.approx(-ref.inertia_, rel=1e-12)
    nolabels = MiniBatchKMeans(4, compute_labels=False, **kw).fit(X)
    assert not hasattr(nolabels, "labels_")
    np.testing.assert_array_equal(nolabels.cluster_centers_, ref.cluster_centers_)
    # a sparse init array, and a callable init that sees the CSR rows
    est = MiniBatchKMeans(4, init=sp.csr_matrix(C0), n_init=1, batch_size=128,
                          random_state=0).fit(X)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)
    seen = []

    def init(Xs, k, random_state):
        seen.append(sp.issparse(Xs))
        return C0

    MiniBatchKMeans(4, init=init, n_init=1, random_state=0).fit(X)
    assert seen == [True]


def test_callers_matrix_is_not_modified():
    X = sparse_blobs(n=500, d=60, k=3, seed=15)
    X.indices = X.indices.astype(np.int64)
    unsorted = X.copy()
    unsorted.has_sorted_indices = False
    unsorted.indices[:2], unsorted.data[:2] = unsorted.indices[1::-1].copy(), \
        unsorted.data[1::-1].copy()
    for Y in (X, unsorted, X.tocsc()):
        before = [a.copy() for a in (Y.data, Y.indices, Y.indptr)]
        est = MiniBatchKMeans(3, random_state=0, batch_size=64).fit(Y)
        est.partial_fit(Y)
        est.predict(Y)
        for a, b in zip((Y.data, Y.indices, Y.indptr), before):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_bad_sparse_input():
    X = sparse_blobs(n=60, d=20, k=2, seed=16)
    nan = X.copy()
    nan.data[3] = np.nan
    inf = X.astype(np.float32)
    inf.data[0] = np.inf
    with pytest.raises(ValueError, match="contains NaN"):
        MiniBatchKMeans(2).fit(nan)
    with pytest.raises(ValueError, match="contains NaN"):
        MiniBatchKMeans(2).partial_fit(nan)
    with pytest.raises(ValueError, match="infinity"):
        MiniBatchKMeans(2).fit(inf)
    with pytest.raises(ValueError, match="non-negative"):
        MiniBatchKMeans(2).fit(X, sample_weight=-np.ones(60))
    with pytest.raises(ValueError, match="sample_weight"):
        MiniBatchKMeans(2).fit(X, sample_weight=np.ones(59))
    with pytest.raises(ValueError, match="n_samples=1 should be >= n_clusters=2"):
        MiniBatchKMeans(2).fit(X[:1])
    with pytest.raises(ValueError, match="0 feature"):
        MiniBatchKMeans(1).fit(sp.csr_matrix((5, 0)))
    with pytest.raises(ValueError, match="Complex"):
        MiniBatchKMeans(2).fit(X.astype(np.complex128))
    with pytest.raises(ValueError, match="number of features"):
        MiniBatchKMeans(2, init=np.zeros((2, 21))).fit(X)
    est = MiniBatchKMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 21 features, but MiniBatchKMeans is expecting 20"):
        est.partial_fit(sp.csr_matrix((3, 21)))
    with pytest.raises(ValueError, match="X has 19 features"):
        est.predict(sp.csr_matrix((3, 19)))
    with pytest.raises(ValueError, match="contains NaN"):
        est.partial_fit(nan)
    with pytest.raises(ValueError, match="non-negative"):
        est.partial_fit(X, sample_weight=-np.ones(60))


def test_memory_check(monkeypatch):
    from fastkm.kmeans import _sparse_core, _sparse_minibatch

    X = sparse_blobs(n=100, d=50, k=2, seed=17)
    monkeypatch.setattr(_sparse_core, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="n_clusters=3 on 50 features"):
        MiniBatchKMeans(3).fit(X)
    with pytest.raises(MemoryError, match="float64 center sums"):
        MiniBatchKMeans(3).partial_fit(X)
    need, parts = _sparse_minibatch.fit_bytes(10_000, 100_000, 8, 1)
    assert parts["float64 center sums"] == 8 * 10_000 * 100_000 and need > 2 * 8e9
