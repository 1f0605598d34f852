"""Sparse (scipy.sparse) input: formats and dtypes, exactness of every algorithm
against Lloyd's, dense-vs-sparse agreement, thread-count independence,
scikit-learn's semantics, memory checks, and every bad input."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

from fastkm import KMeans, k_means, kmeans_plusplus  # noqa: E402
from fastkm.kmeans import _sparse_core  # noqa: E402
from fastkm.kmeans._csr import check_csr  # noqa: E402

ALGORITHMS = ("lloyd", "hamerly", "exponion", "elkan")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sparse_blobs(n=600, d=300, k=6, density=0.05, seed=0, dtype=np.float64, offset=0.0):
    """Rows of k sparse prototypes plus sparse noise, TF-IDF-like (non-negative)."""
    rng = np.random.RandomState(seed)
    protos = rng.uniform(0.5, 1.5, (k, d)) * (rng.rand(k, d) < 4 * density)
    X = protos[rng.randint(0, k, n)]
    X = X + rng.uniform(0, 1, (n, d)) * (rng.rand(n, d) < density) + offset * (X != 0)
    return sp.csr_matrix(X.astype(dtype))


def tfidf_like(n=800, d=2000, topics=5, seed=0):
    """Zipf vocabulary, topic mixtures, l2-normalised rows (as TfidfTransformer)."""
    rng = np.random.RandomState(seed)
    p = 1.0 / np.arange(1, d + 1)
    cdf = np.cumsum(p) / p.sum()
    perms = [rng.permutation(d) for _ in range(topics)]
    rows, cols = [], []
    for i in range(n):
        t = rng.randint(topics)
        ranks = np.searchsorted(cdf, rng.random_sample(rng.randint(20, 80)))
        own = rng.random_sample(ranks.size) < 0.5
        cols.append(np.where(own, perms[t][ranks], ranks))
        rows.append(np.full(ranks.size, i))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    X.data = np.log1p(X.data)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X)


def init_rows(X, k, seed=1):
    idx = np.random.RandomState(seed).choice(X.shape[0], k, replace=False)
    return np.asarray(X[idx].toarray())


def fit(X, k, init, **kw):
    return KMeans(k, init=init, n_init=1, **kw).fit(X)


def same_result(a, b):
    return (np.array_equal(a.labels_, b.labels_)
            and np.array_equal(a.cluster_centers_, b.cluster_centers_)
            and a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_)


# --------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 7, 33])
@pytest.mark.parametrize("data", ["blobs", "tfidf"])
def test_every_algorithm_gives_lloyds_result(dtype, k, data):
    X = (sparse_blobs(k=max(k // 3, 2)) if data == "blobs" else tfidf_like()).astype(dtype)
    init = init_rows(X, k)
    ref = fit(X, k, init, algorithm="lloyd", tol=0)
    for alg in ALGORITHMS[1:]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # elkan with one cluster
            got = fit(X, k, init, algorithm=alg, tol=0)
        assert same_result(ref, got), alg


def test_bounds_exact_under_cancellation():
    # rows far from the origin, close to each other: ||x||^2 + ||c||^2 - 2 x.c cancels,
    # the bounds' margin must still keep every algorithm on Lloyd's labels
    for dtype in (np.float32, np.float64):
        X = sparse_blobs(n=500, d=120, k=5, density=0.1, seed=3, offset=300.0).astype(dtype)
        init = init_rows(X, 9, seed=2)
        ref = fit(X, 9, init, algorithm="lloyd", tol=0, max_iter=30)
        for alg in ALGORITHMS[1:]:
            assert same_result(ref, fit(X, 9, init, algorithm=alg, tol=0, max_iter=30)), alg


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_dense_and_sparse_agree(alg):
    X = sparse_blobs(n=700, d=150, k=5)
    init = init_rows(X, 5)
    s = fit(X, 5, init, algorithm=alg)
    d = fit(X.toarray(), 5, init, algorithm=alg)
    assert np.array_equal(s.labels_, d.labels_)
    assert s.n_iter_ == d.n_iter_
    assert s.inertia_ == pytest.approx(d.inertia_, rel=1e-6)
    np.testing.assert_allclose(s.cluster_centers_, d.cluster_centers_, rtol=1e-9, atol=1e-12)
    assert isinstance(s.cluster_centers_, np.ndarray) and s.cluster_centers_.dtype == np.float64
    Y = sparse_blobs(n=90, d=150, k=5, seed=9)
    assert np.array_equal(s.predict(Y), d.predict(Y.toarray()))
    np.testing.assert_allclose(s.transform(Y), d.transform(Y.toarray()), rtol=1e-7, atol=1e-9)
    assert s.score(Y) == pytest.approx(d.score(Y.toarray()), rel=1e-9)


def test_dense_and_sparse_agree_float32():
    X = sparse_blobs(n=700, d=150, k=5, dtype=np.float32)
    init = init_rows(X, 5)
    s, d = fit(X, 5, init), fit(X.toarray(), 5, init)
    assert np.array_equal(s.labels_, d.labels_)
    assert s.cluster_centers_.dtype == np.float32
    assert s.inertia_ == pytest.approx(d.inertia_, rel=1e-5)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_threads_bitwise_identical(alg):
    X = tfidf_like(n=1500, d=3000, seed=4)
    init = init_rows(X, 24)
    runs = [fit(X, 24, init, algorithm=alg, n_threads=t, tol=0, max_iter=15) for t in (1, 2, 3)]
    assert same_result(runs[0], runs[1]) and same_result(runs[0], runs[2])
    default = [KMeans(12, random_state=0, n_threads=t, algorithm=alg).fit(X) for t in (1, 3)]
    assert same_result(*default)


def test_kmeans_plusplus_threads_and_dense_draws():
    X = tfidf_like(n=900, seed=5)
    outs = [kmeans_plusplus(X, 15, random_state=3, n_threads=t) for t in (1, 2, 3)]
    for c, i in outs[1:]:
        assert np.array_equal(c, outs[0][0]) and np.array_equal(i, outs[0][1])
    c_dense, i_dense = kmeans_plusplus(X.toarray(), 15, random_state=3)
    assert np.array_equal(outs[0][1], i_dense)
    assert np.array_equal(outs[0][0], c_dense)
    w = np.random.RandomState(0).uniform(0.5, 2.0, X.shape[0])
    assert np.array_equal(kmeans_plusplus(X, 15, sample_weight=w, random_state=3)[1],
                          kmeans_plusplus(X.toarray(), 15, sample_weight=w, random_state=3)[1])


def test_sample_weight_is_repetition():
    X = sparse_blobs(n=300, d=80, k=4)
    w = np.random.RandomState(0).randint(1, 4, X.shape[0])
    init = init_rows(X, 4)
    a = KMeans(4, init=init, n_init=1).fit(X, sample_weight=w)
    rep = sp.csr_matrix(np.repeat(X.toarray(), w, axis=0))
    b = fit(rep, 4, init)
    assert np.array_equal(a.labels_, b.labels_[np.cumsum(w) - 1])
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-9)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-9)


# --------------------------------------------------------------------------- scikit-learn

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_sklearn(dtype):
    skc = pytest.importorskip("sklearn.cluster")
    X = tfidf_like(n=1000, seed=6).astype(dtype)
    init = init_rows(X, 10)
    ours = fit(X, 10, init)
    ref = skc.KMeans(10, init=init, n_init=1).fit(X)
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4 if dtype == np.float32 else 1e-9)
    c1, i1 = kmeans_plusplus(X, 10, random_state=0)
    c2, i2 = skc.kmeans_plusplus(X, 10, random_state=0)
    assert np.array_equal(i1, i2)
    ours = KMeans(10, random_state=0, n_init=2, init="random").fit(X)
    ref = skc.KMeans(10, random_state=0, n_init=2, init="random").fit(X)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)


def test_empty_cluster_relocation_matches_dense_and_sklearn():
    X = sparse_blobs(n=200, d=40, k=3, seed=2)
    init = init_rows(X, 4)
    init[3] = 1e3  # far from every row: empty after the first assignment
    s = fit(X, 4, init, algorithm="lloyd")
    d = fit(X.toarray(), 4, init, algorithm="lloyd")
    assert np.array_equal(s.labels_, d.labels_)
    # (the dense fit subtracts the moved row from its old cluster's sum: a few
    # 1e-17 where the sparse sums, taken again without it, are exactly 0)
    np.testing.assert_allclose(s.cluster_centers_, d.cluster_centers_, rtol=1e-9, atol=1e-12)
    assert len(np.unique(s.labels_)) == 4
    skc = pytest.importorskip("sklearn.cluster")
    ref = skc.KMeans(4, init=init, n_init=1).fit(X)
    assert np.array_equal(s.labels_, ref.labels_)
    for alg in ALGORITHMS[1:]:
        assert same_result(s, fit(X, 4, init, algorithm=alg))


def test_tol_uses_column_variance_with_zeros():
    X = sparse_blobs(n=300, d=60, k=3)
    expected = np.var(X.toarray(), axis=0).mean()
    assert _sparse_core.tolerance(check_csr(X), 1.0) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- formats

def test_formats_and_index_types_give_the_same_result():
    X = sparse_blobs(n=250, d=90, k=4)
    init = init_rows(X, 4)
    ref = fit(X, 4, init)
    X64 = X.copy()
    X64.indices = X64.indices.astype(np.int64)
    X64.indptr = X64.indptr.astype(np.int64)
    variants = [X.tocsc(), X.tocoo(), X.tolil(), X.todok(), X.tobsr(), X64]
    if hasattr(sp, "csr_array"):
        variants += [sp.csr_array(X), sp.csc_array(X)]
    for V in variants:
        assert same_result(ref, fit(V, 4, init)), type(V).__name__
    assert X64.indices.dtype == np.int64  # not converted in place


def test_unsorted_and_duplicate_indices_fixed_on_a_copy():
    rng = np.random.RandomState(0)
    X = sparse_blobs(n=120, d=50, k=3)
    data, indices, indptr = [], [], [0]
    for i in range(X.shape[0]):
        row = X.getrow(i)
        cols, vals = row.indices.copy(), row.data.copy()
        # split every value into two entries, then shuffle the row
        cols = np.concatenate([cols, cols])
        vals = np.concatenate([vals * 0.25, vals * 0.75])
        p = rng.permutation(cols.size)
        indices.append(cols[p])
        data.append(vals[p])
        indptr.append(indptr[-1] + cols.size)
    U = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.array(indptr)),
                      shape=X.shape)
    before = (U.data.copy(), U.indices.copy(), U.indptr.copy())
    init = init_rows(X, 3)
    a, b = fit(U, 3, init), fit(X, 3, init)
    assert np.array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-12)
    for x, y in zip(before, (U.data, U.indices, U.indptr)):
        assert np.array_equal(x, y)
    a.predict(U)
    for x, y in zip(before, (U.data, U.indices, U.indptr)):
        assert np.array_equal(x, y)


def test_explicit_zeros_are_fine():
    X = sparse_blobs(n=150, d=40, k=3)
    Z = X.copy()
    Z.data[::3] = 0.0  # stored zeros
    Y = Z.copy()
    Y.eliminate_zeros()
    init = init_rows(Y, 3)
    a, b = fit(Z, 3, init), fit(Y, 3, init)
    assert np.array_equal(a.labels_, b.labels_)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-12)


def test_input_not_modified_and_copy_x_false():
    X = sparse_blobs(n=200, d=60, k=3).astype(np.float32)
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    KMeans(3, random_state=0, copy_x=False).fit(X)
    k_means(X, 3, random_state=0)
    for x, y in zip(before, (X.data, X.indices, X.indptr)):
        assert np.array_equal(x, y)


def test_integer_and_bool_values_become_float64():
    X = sp.csr_matrix(np.random.RandomState(0).randint(0, 3, (80, 20)))
    km = KMeans(3, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == np.float64
    km2 = KMeans(3, random_state=0).fit(X.astype(np.float64))
    assert same_result(km, km2)


def test_api_paths():
    X = sparse_blobs(n=300, d=70, k=4)
    km = KMeans(4, random_state=0)
    labels = km.fit_predict(X)
    assert np.array_equal(labels, km.labels_)
    D = KMeans(4, random_state=0).fit_transform(X)
    np.testing.assert_allclose(D, km.transform(X))
    assert np.array_equal(D.argmin(axis=1), km.labels_)
    centers, lab, inertia, n_iter = k_means(X, 4, random_state=0, return_n_iter=True)
    assert np.array_equal(centers, km.cluster_centers_) and inertia == km.inertia_
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-12)
    assert km.algorithm_ in ALGORITHMS
    # a sparse init array, a callable init that sees the CSR matrix
    km2 = KMeans(4, init=X[:4], n_init=1).fit(X)
    assert km2.cluster_centers_.shape == (4, 70)
    seen = []

    def init(M, k, random_state):
        seen.append(M.format)
        return M[:k]

    KMeans(4, init=init, n_init=2).fit(X)
    assert seen == ["csr", "csr"]
    # dense prediction from a sparse fit and back
    assert np.array_equal(km.predict(X.toarray()), km.predict(X))


def test_all_zero_rows():
    X = sparse_blobs(n=100, d=30, k=3).tolil()
    X[5:15] = 0
    X = X.tocsr()
    init = init_rows(X, 3)
    s, d = fit(X, 3, init), fit(X.toarray(), 3, init)
    assert np.array_equal(s.labels_, d.labels_)


# --------------------------------------------------------------------------- bad input

def test_bad_sparse_input():
    X = sparse_blobs(n=50, d=20, k=2)
    nan = X.copy()
    nan.data[3] = np.nan
    inf = X.copy().astype(np.float32)
    inf.data[0] = np.inf
    with pytest.raises(ValueError, match="contains NaN"):
        KMeans(2).fit(nan)
    with pytest.raises(ValueError, match="infinity"):
        KMeans(2).fit(inf)
    with pytest.raises(ValueError, match="0 sample"):
        KMeans(1).fit(sp.csr_matrix((0, 5)))
    with pytest.raises(ValueError, match="0 feature"):
        KMeans(1).fit(sp.csr_matrix((5, 0)))
    with pytest.raises(ValueError, match="non-negative"):
        KMeans(2).fit(X, sample_weight=-np.ones(50))
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 21 features, but KMeans is expecting 20"):
        km.predict(sp.csr_matrix((3, 21)))
    with pytest.raises(ValueError, match="X has 19 features"):
        km.transform(sp.csr_matrix((3, 19)))
    with pytest.raises(ValueError, match="contains NaN"):
        km.predict(nan)
    with pytest.raises(ValueError, match="Complex"):
        KMeans(2).fit(X.astype(np.complex128))
    with pytest.raises(ValueError, match="0 sample"):
        kmeans_plusplus(sp.csr_matrix((0, 5)), 1)
    with pytest.raises(ValueError, match="'k-means\\|\\|' does not take sparse input"):
        KMeans(2, init="k-means||").fit(X)


def test_column_indices_beyond_int32():
    big = sp.csr_matrix((np.ones(2), (np.array([0, 1]), np.array([0, 2**31 + 4]))),
                        shape=(2, 2**31 + 5))
    assert big.indices.dtype == np.int64
    with pytest.raises(ValueError, match="below 2\\*\\*31"):
        KMeans(1).fit(big)


def test_malformed_csr():
    X = sparse_blobs(n=20, d=10, k=2)
    bad = X.copy()
    bad.indices[0] = 99  # out of range (scipy does not check on assignment)
    with pytest.raises(ValueError, match="column index is outside"):
        KMeans(2).fit(bad)
    bad = X.copy()
    bad.indptr[3] = bad.indptr[4] + 1
    with pytest.raises(ValueError, match="row pointers"):
        KMeans(2).fit(bad)


def test_memory_error_before_allocating(monkeypatch):
    X = sparse_blobs(n=100, d=50, k=2)
    monkeypatch.setattr(_sparse_core, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="n_clusters=20 on 50 features needs about"):
        KMeans(20, random_state=0).fit(X)
    need, parts = _sparse_core.fit_bytes(20_000, 100_000, 10_000, 8, "lloyd", 1)
    assert need > 24 * 10_000 * 100_000  # tiles, float64 sums and the dense centers
    assert "float64 center sums" in parts


def test_elkan_memory_cap_falls_back_to_hamerly(monkeypatch):
    from fastkm.kmeans import _policy

    monkeypatch.setattr(_policy, "ELKAN_MAX_BYTES", 1000)
    X = sparse_blobs(n=200, d=40, k=3)
    with pytest.warns(RuntimeWarning, match="using 'hamerly' instead"):
        km = KMeans(3, random_state=0, algorithm="elkan").fit(X)
    assert km.algorithm_ == "hamerly"


# --------------------------------------------------------------------------- packaging

def test_scipy_not_imported_by_dense_use():
    # scikit-learn itself imports scipy, so it is blocked here: what is checked
    # is that fastkm's own code never does for dense input
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import numpy as np, fastkm\n"
        "X = np.random.RandomState(0).rand(300, 12)\n"
        "km = fastkm.KMeans(4, random_state=0).fit(X); km.predict(X); km.transform(X)\n"
        "fastkm.k_means(X, 3, random_state=0); fastkm.kmeans_plusplus(X, 3, random_state=0)\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr


def test_auto_rule():
    from fastkm.kmeans import _policy

    choose = _policy.choose_sparse_algorithm
    assert choose("auto", 20_000, 100_000, 1, 4_000_000) == "lloyd"
    assert choose("auto", 5_000, 20_000, 5, 1_000_000) == "lloyd"   # little work per iteration
    assert choose("auto", 20_000, 100_000, 100, 4_000_000) == "elkan"
    assert choose("auto", 10**7, 10**5, 100, 10**9) == "hamerly"   # n x k bounds past the cap
    assert choose("hamerly", 20_000, 100_000, 100, 4_000_000) == "hamerly"
    X = tfidf_like(n=3000, d=2000, seed=8)
    assert KMeans(30, random_state=0).fit(X).algorithm_ == choose("auto", 3000, 2000, 30, X.nnz)
