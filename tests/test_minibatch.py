"""MiniBatchKMeans: the compiled step against NumPy, determinism across thread
counts (fit and partial_fit streams), scikit-learn's semantics, bad input,
and the scikit-learn estimator checks."""
import doctest
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastkm
from fastkm import MiniBatchKMeans, _threads
from fastkm._dispatch import lloyd, minibatch
from fastkm._kernels.runtime import Region

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def blobs(n, d, k, seed=0, dtype=np.float64, spread=10.0):
    rng = np.random.RandomState(seed)
    C = rng.uniform(-spread, spread, size=(k, d))
    return (C[rng.randint(0, k, n)] + rng.normal(size=(n, d))).astype(dtype)


@pytest.fixture
def forced_threads(monkeypatch):
    """Every parallel region gets the thread count asked for (the policy would
    give small regions one thread)."""
    monkeypatch.setattr(_threads.POLICY, "threads", lambda kind, units, n_threads: n_threads)


# --------------------------------------------------------------------------- the kernel

def _reference_step(X, rows, w, C, counts, adaptive):
    """One mini-batch step in NumPy float64 (labels given by lloyd)."""
    Xb = np.ascontiguousarray(X if rows is None else X[rows])
    labels = np.empty(Xb.shape[0], dtype=np.int32)
    lloyd.assign_labels(Xb, C, labels, Region(1))
    Xd, wd = Xb.astype(np.float64), w.astype(np.float64)
    new, cnt = C.astype(np.float64), counts.copy()
    for j in range(C.shape[0]):
        m = labels == j
        wj = wd[m].sum()
        if wj > 0:
            s = (wd[m, None] * Xd[m]).sum(axis=0)
            if adaptive:
                a = np.sqrt(wj / wd.sum())
                new[j] = (1 - a) * C[j] + a * s / wj
            else:
                new[j] = (C[j] * counts[j] + s) / (counts[j] + wj)
            cnt[j] += wj
    inertia = (wd * ((Xd - C[labels].astype(np.float64)) ** 2).sum(axis=1)).sum()
    return labels, new, cnt, inertia


@pytest.mark.parametrize("d, dtype", [(1, np.float32), (3, np.float64), (8, np.float32),
                                      (12, np.float64), (32, np.float32)])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("gather", [True, False])
def test_step_matches_numpy(d, dtype, adaptive, gather):
    rng = np.random.RandomState(d)
    X = blobs(3000, d, 10, seed=d, dtype=dtype)
    k, b = 23, 700
    C = X[rng.choice(3000, k, replace=False)].copy()
    rows = rng.randint(0, 3000, b).astype(np.intp)
    w = rng.uniform(0.5, 2.0, b).astype(dtype)
    w[:50] = 0.0                                    # zero weights count for nothing
    counts = rng.randint(0, 4, k).astype(np.float64)
    src, r = (X, rows) if gather else (np.ascontiguousarray(X[rows]), None)
    buf = minibatch.StepBuffers(b, k, d, dtype)
    new, cnt = np.empty_like(C), counts.copy()
    inertia = minibatch.minibatch_step(src, r, w, C, np.einsum("ij,ij->i", C, C), new, cnt, buf,
                                       adaptive, gather, Region(2))
    labels, ref, ref_cnt, ref_inertia = _reference_step(X, rows, w, C, counts, adaptive)
    np.testing.assert_array_equal(buf.labels[:b], labels)   # lloyd's labels, bit for bit
    if gather:
        np.testing.assert_array_equal(buf.batch[:b], X[rows])
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(new, ref, rtol=0, atol=4 * eps * (1 + np.abs(ref).max()))
    np.testing.assert_allclose(cnt, ref_cnt, rtol=1e-15)
    np.testing.assert_allclose(inertia, ref_inertia, rtol=1e-12)
    moved = ((new.astype(np.float64) - C) ** 2).sum(axis=1)
    np.testing.assert_allclose(buf.shift2, moved, rtol=1e-12, atol=1e-300)
    untouched = np.setdiff1d(np.arange(k), labels[w > 0])
    np.testing.assert_array_equal(new[untouched], C[untouched])


@pytest.mark.parametrize("d, dtype", [(3, np.float64), (32, np.float32)])
def test_step_same_bits_for_any_thread_count(d, dtype):
    X = blobs(20_000, d, 40, seed=1, dtype=dtype)
    k, b = 40, 3000                                 # 12 chunks of 256 rows
    rs = np.random.RandomState(0)
    batches = [rs.randint(0, X.shape[0], b).astype(np.intp) for _ in range(5)]
    out = []
    for n_threads in (1, 2, 3):
        C, cnt = X[:k].copy(), np.zeros(k)
        buf = minibatch.StepBuffers(b, k, d, dtype)
        spare, inertias = np.empty_like(C), []
        for rows in batches:
            inertias.append(minibatch.minibatch_step(
                X, rows, np.ones(b, dtype), C, np.einsum("ij,ij->i", C, C), spare, cnt, buf,
                False, True, Region(n_threads)))
            C, spare = spare, C
        relabelled = np.empty(b, dtype=np.int32)
        minibatch.relabel(buf.batch[:b], C, np.einsum("ij,ij->i", C, C), buf, relabelled,
                          Region(n_threads))
        out.append((C.tobytes(), cnt.tobytes(), inertias, buf.labels.tobytes(),
                    relabelled.tobytes()))
    assert out[0] == out[1] == out[2]


@pytest.mark.parametrize("d, dtype", [(1, np.float32), (2, np.float64), (3, np.float32),
                                      (8, np.float64), (16, np.float32), (40, np.float64)])
@pytest.mark.parametrize("k", [1, 2, 17, 64])
def test_relabel_is_assign_labels(d, dtype, k):
    """relabel's labels on the moved centers are lloyd.assign_labels's, bit for
    bit, from a first step (large moves, many rows searched) to late steps
    (small moves, few searched), with a reassignment-like jump, on data with
    exact ties (integer grid), on blobs, and on blobs far from the origin (where
    the dot values' rounding leaves most rows to the search)."""
    rng = np.random.RandomState(d * 100 + k)
    grid = rng.randint(0, 4, size=(2000, d)).astype(dtype)
    near = blobs(2000, d, 12, seed=k, dtype=dtype)
    far = (blobs(2000, d, 12, seed=k, dtype=np.float64) + 300.0).astype(dtype)
    for X in (grid, near, far):
        b = 600
        C = X[rng.choice(X.shape[0], k, replace=False)].copy()
        cnt = np.zeros(k)
        buf = minibatch.StepBuffers(b, k, d, dtype)
        spare = np.empty_like(C)
        searched = []
        for step in range(12):
            rows = rng.randint(0, X.shape[0], b).astype(np.intp)
            minibatch.minibatch_step(X, rows, np.ones(b, dtype), C, np.einsum("ij,ij->i", C, C),
                                     spare, cnt, buf, False, True, Region(2))
            C, spare = spare, C
            if step == 5 and k > 1:   # a reassignment: one center jumps onto a row
                C[1] = X[rows[0]]
                buf.shift2[1] = ((C[1].astype(np.float64) - spare[1]) ** 2).sum()
            got = np.empty(b, dtype=np.int32)
            searched.append(minibatch.relabel(buf.batch[:b], C, np.einsum("ij,ij->i", C, C), buf,
                                              got, Region(2)))
            want = np.empty(b, dtype=np.int32)
            lloyd.assign_labels(np.ascontiguousarray(X[rows]), C, want, Region(1))
            np.testing.assert_array_equal(got, want)
        if X is near and k > 1:
            assert searched[-1] < b   # late steps settle rows by their bounds
    minibatch.minibatch_step(X, rows, np.ones(b, dtype), C, np.einsum("ij,ij->i", C, C),
                             spare, cnt, buf, False, False, Region(1))
    with pytest.raises(ValueError, match="keep_bounds"):
        minibatch.relabel(buf.batch[:b], C, np.einsum("ij,ij->i", C, C), buf, got, Region(1))


def test_step_rejects_mismatched_buffers():
    X = blobs(100, 3, 4)
    C = X[:4].copy()
    buf = minibatch.StepBuffers(50, 4, 3, np.float64)
    with pytest.raises(ValueError, match="buffers"):
        minibatch.minibatch_step(X, None, np.ones(100), C, np.einsum("ij,ij->i", C, C),
                                 np.empty_like(C), np.zeros(4), buf, False, False, Region(1))


def test_weighted_sampler_is_numpys_choice():
    from fastkm.kmeans._minibatch_core import BatchSampler

    w = np.random.RandomState(0).uniform(0, 3, 1000)
    w[::7] = 0.0
    got = BatchSampler(w, 256).draw(np.random.RandomState(5))
    want = np.random.RandomState(5).choice(1000, 256, p=w / w.sum(), replace=True)
    np.testing.assert_array_equal(got, want)
    assert not np.isin(got, np.flatnonzero(w == 0)).any()
    uniform = BatchSampler(np.ones(1000), 256).draw(np.random.RandomState(5))
    np.testing.assert_array_equal(uniform, np.random.RandomState(5).randint(0, 1000, 256))


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("d, dtype", [(3, np.float64), (32, np.float32)])
def test_fit_same_bits_for_any_thread_count(forced_threads, d, dtype):
    X = blobs(30_000, d, 30, seed=2, dtype=dtype)
    w = np.random.RandomState(3).uniform(0.2, 2.0, X.shape[0])
    for sample_weight in (None, w):
        fits = [MiniBatchKMeans(30, random_state=0, n_threads=t, max_no_improvement=None,
                                max_iter=2).fit(X, sample_weight=sample_weight)
                for t in (1, 2, 3)]
        for f in fits[1:]:
            assert f.cluster_centers_.tobytes() == fits[0].cluster_centers_.tobytes()
            np.testing.assert_array_equal(f.labels_, fits[0].labels_)
            assert f.inertia_ == fits[0].inertia_ and f.n_steps_ == fits[0].n_steps_


def _stream(X, size):
    for start in range(0, X.shape[0], size):
        yield X[start:start + size]


@pytest.mark.parametrize("d, dtype", [(3, np.float64), (32, np.float32)])
def test_partial_fit_stream_same_bits_for_any_thread_count(forced_threads, d, dtype):
    X = blobs(40_000, d, 25, seed=4, dtype=dtype)
    results = []
    for t in (1, 2, 3):
        est = MiniBatchKMeans(25, random_state=0, n_threads=t)
        for chunk in _stream(X, 2000):
            est.partial_fit(chunk)
        results.append((est.cluster_centers_.tobytes(), est._counts.tobytes(), est.n_steps_,
                        est.inertia_))
    assert results[0] == results[1] == results[2]
    assert results[0][2] == 20


def test_partial_fit_memmap_stream_equals_array_stream(tmp_path):
    X = blobs(12_000, 6, 8, seed=5, dtype=np.float32)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = MiniBatchKMeans(8, random_state=1)
    b = MiniBatchKMeans(8, random_state=1)
    for start in range(0, X.shape[0], 1024):
        a.partial_fit(X[start:start + 1024])
        b.partial_fit(mm[start:start + 1024])
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    assert b.cluster_centers_.dtype == np.float32
    # fit reads a memmap in place, too
    f1 = MiniBatchKMeans(8, random_state=0, max_iter=3).fit(X)
    f2 = MiniBatchKMeans(8, random_state=0, max_iter=3).fit(mm)
    assert f1.cluster_centers_.tobytes() == f2.cluster_centers_.tobytes()


def test_stream_resumes_after_pickle():
    """A stream interrupted, pickled and resumed (another process could load it)
    gives the centers of the uninterrupted stream."""
    X = blobs(20_000, 4, 10, seed=6)
    chunks = list(_stream(X, 1000))
    whole = MiniBatchKMeans(10, random_state=3)
    for c in chunks:
        whole.partial_fit(c)
    half = MiniBatchKMeans(10, random_state=3)
    for c in chunks[:7]:
        half.partial_fit(c)
    resumed = pickle.loads(pickle.dumps(half))
    for c in chunks[7:]:
        resumed.partial_fit(c)
    assert resumed.cluster_centers_.tobytes() == whole.cluster_centers_.tobytes()
    assert resumed.n_steps_ == whole.n_steps_ == len(chunks)


def test_fit_is_repeatable_and_seed_matters():
    X = blobs(5000, 5, 12, seed=7)
    a = MiniBatchKMeans(12, random_state=0, batch_size=256).fit(X)
    b = MiniBatchKMeans(12, random_state=0, batch_size=256).fit(X)
    c = MiniBatchKMeans(12, random_state=1, batch_size=256).fit(X)
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    assert a.cluster_centers_.tobytes() != c.cluster_centers_.tobytes()


# --------------------------------------------------------------------------- semantics


def test_attributes_and_methods():
    X = blobs(4000, 3, 6, seed=8, dtype=np.float32)
    est = MiniBatchKMeans(6, random_state=0, batch_size=200)
    labels = est.fit_predict(X)
    assert est.cluster_centers_.shape == (6, 3) and est.cluster_centers_.dtype == np.float32
    assert labels.dtype == np.int32 and labels.shape == (4000,)
    np.testing.assert_array_equal(labels, est.labels_)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    assert est.n_features_in_ == 3
    assert est.n_iter_ == int(np.ceil(est.n_steps_ * 200 / 4000))
    np.testing.assert_allclose(-est.score(X), est.inertia_, rtol=1e-10)
    D = est.transform(X[:10])
    assert D.shape == (10, 6) and D.dtype == np.float32
    np.testing.assert_array_equal(D.argmin(axis=1), labels[:10])
    assert est.fit_transform(X).shape == (4000, 6)
    assert list(est.get_feature_names_out()) == [f"minibatchkmeans{i}" for i in range(6)]


def test_compute_labels_false():
    X = blobs(3000, 3, 5, seed=9)
    est = MiniBatchKMeans(5, random_state=0, compute_labels=False, batch_size=100).fit(X)
    assert not hasattr(est, "labels_")
    full = -est.score(X)
    assert 0.5 * full < est.inertia_ < 2.0 * full   # EWA of batch inertia x total weight
    np.testing.assert_array_equal(est.fit_predict(X), est.predict(X))
    est.partial_fit(X[:100])
    assert not hasattr(est, "labels_") and not hasattr(est, "inertia_")


def test_n_steps_without_early_stopping():
    X = blobs(2000, 2, 4, seed=10)
    est = MiniBatchKMeans(4, random_state=0, batch_size=300, max_iter=7,
                          max_no_improvement=None).fit(X)
    assert est.n_steps_ == (7 * 2000) // 300
    assert est.n_iter_ == 7


def test_early_stopping_on_inertia_and_on_tol():
    X = blobs(50_000, 4, 8, seed=11)
    never = MiniBatchKMeans(8, random_state=0, batch_size=256, max_iter=3,
                            max_no_improvement=None).fit(X)
    ewa = MiniBatchKMeans(8, random_state=0, batch_size=256, max_iter=3).fit(X)
    tol = MiniBatchKMeans(8, random_state=0, batch_size=256, max_iter=3,
                          max_no_improvement=None, tol=1e-2).fit(X)
    assert never.n_steps_ == 3 * 50_000 // 256
    assert 2 <= ewa.n_steps_ < never.n_steps_
    assert 2 <= tol.n_steps_ < never.n_steps_
    # stopping early costs little here: the blobs are well separated
    assert ewa.inertia_ < 1.05 * never.inertia_


def test_stops_like_scikit_learn():
    """Unweighted batches are drawn differently from scikit-learn's, so compare
    in distribution: steps until early stopping and the inertia reached."""
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = blobs(30_000, 8, 20, seed=12)
    ours = [MiniBatchKMeans(20, random_state=s, batch_size=512).fit(X) for s in range(6)]
    theirs = [SKMiniBatchKMeans(20, random_state=s, batch_size=512).fit(X) for s in range(6)]
    steps_o = np.median([e.n_steps_ for e in ours])
    steps_t = np.median([e.n_steps_ for e in theirs])
    assert 0.5 * steps_t <= steps_o <= 2.0 * steps_t
    inertia_o = np.mean([e.inertia_ for e in ours])
    inertia_t = np.mean([e.inertia_ for e in theirs])
    assert inertia_o <= 1.05 * inertia_t


@pytest.mark.parametrize("params", [
    {}, {"init": "random"}, {"tol": 1e-3}, {"batch_size": 100, "reassignment_ratio": 0.2},
    {"max_no_improvement": None, "max_iter": 3}, {"n_init": 3, "init_size": 300},
])
def test_weighted_fit_is_scikit_learns(params):
    """With unequal weights the batches are scikit-learn's draws: the whole fit
    (init, batches, reassignments, early stopping) follows scikit-learn's step
    for step; only rounding differs (float64)."""
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = blobs(5000, 5, 20, seed=13)
    w = np.random.RandomState(14).uniform(0.5, 2.0, X.shape[0])
    ours = MiniBatchKMeans(20, random_state=1, **params).fit(X, sample_weight=w)
    theirs = SKMiniBatchKMeans(20, random_state=1, **params).fit(X, sample_weight=w)
    assert ours.n_steps_ == theirs.n_steps_ and ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_is_scikit_learns(weighted):
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X = blobs(8000, 4, 15, seed=15)
    w = np.random.RandomState(16).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    ours = MiniBatchKMeans(15, random_state=2)
    theirs = SKMiniBatchKMeans(15, random_state=2)
    for start in range(0, 8000, 400):
        sw = None if w is None else w[start:start + 400]
        ours.partial_fit(X[start:start + 400], sample_weight=sw)
        theirs.partial_fit(X[start:start + 400], sample_weight=sw)
    assert ours.n_steps_ == theirs.n_steps_ == 20
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_first_partial_fit_initialises_from_its_rows():
    X = blobs(500, 3, 4, seed=17)
    init = X[[0, 100, 200, 300]]
    est = MiniBatchKMeans(4, init=init, reassignment_ratio=0.0).partial_fit(X[:50])
    assert est.n_steps_ == 1
    # one step from the given centers with all of the batch's rows
    _, ref, _, _ = _reference_step(X[:50], None, np.ones(50), init, np.zeros(4), False)
    np.testing.assert_allclose(est.cluster_centers_, ref, atol=1e-12)


def test_reassignment_moves_starved_centers():
    """Centers that get (almost) no rows are moved onto batch rows; without
    reassignment they stay where they started."""
    rng = np.random.RandomState(18)
    X = np.concatenate([rng.normal(size=(3000, 2)) + c for c in ([0, 0], [20, 0], [0, 20])])
    X = X[rng.permutation(len(X))]
    init = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [500.0, 500.0], [-500.0, 500.0]])
    kw = dict(init=init, batch_size=200, max_no_improvement=None, max_iter=2, random_state=0)
    stuck = MiniBatchKMeans(5, reassignment_ratio=0.0, **kw).fit(X)
    np.testing.assert_array_equal(stuck.cluster_centers_[3:], init[3:])
    moved = MiniBatchKMeans(5, reassignment_ratio=0.01, **kw).fit(X)
    assert np.abs(moved.cluster_centers_[3:]).max() < 50
    assert len(np.unique(moved.labels_)) == 5
    assert moved.inertia_ < stuck.inertia_


def test_reassignment_is_reported(capsys):
    X = blobs(2000, 2, 3, seed=19)
    init = np.vstack([X[:3], [[1e3, 1e3]]])
    MiniBatchKMeans(4, init=init, batch_size=100, max_iter=1, verbose=1,
                    random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Reassigning 1 cluster centers" in out and "Minibatch step" in out


def test_adaptive_lr():
    X = blobs(20_000, 6, 10, seed=20)
    plain = MiniBatchKMeans(10, random_state=0).fit(X)
    adaptive = MiniBatchKMeans(10, random_state=0, adaptive_lr=True).fit(X)
    assert adaptive.cluster_centers_.tobytes() != plain.cluster_centers_.tobytes()
    assert adaptive.inertia_ < 1.1 * plain.inertia_


def test_n_init_keeps_the_best_initialisation():
    X = blobs(5000, 2, 30, seed=21)
    kw = dict(init="random", max_iter=1, max_no_improvement=None, random_state=0,
              reassignment_ratio=0.0, batch_size=50)
    one = MiniBatchKMeans(30, n_init=1, **kw).fit(X)
    ten = MiniBatchKMeans(30, n_init=10, **kw).fit(X)
    assert one.n_steps_ == ten.n_steps_
    assert ten.cluster_centers_.tobytes() != one.cluster_centers_.tobytes()


def test_float32_vs_float64_close():
    X = blobs(10_000, 5, 8, seed=22)
    a = MiniBatchKMeans(8, random_state=0).fit(X)
    b = MiniBatchKMeans(8, random_state=0).fit(X.astype(np.float32))
    assert b.cluster_centers_.dtype == np.float32
    np.testing.assert_allclose(b.inertia_, a.inertia_, rtol=1e-3)


def test_partial_fit_converts_to_the_centers_dtype():
    X = blobs(1000, 3, 3, seed=23, dtype=np.float32)
    est = MiniBatchKMeans(3, random_state=0).partial_fit(X[:500])
    est.partial_fit(X[500:].astype(np.float64))
    assert est.cluster_centers_.dtype == np.float32


def test_partial_fit_continues_fit():
    X = blobs(4000, 3, 4, seed=24)
    est = MiniBatchKMeans(4, random_state=0).fit(X)
    n = est.n_steps_
    est.partial_fit(X[:100])
    assert est.n_steps_ == n + 1 and est.labels_.shape == (100,)


def test_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(blobs(500, 2, 2, seed=25), columns=["a", "b"])
    est = MiniBatchKMeans(2, random_state=0).fit(X)
    assert list(est.feature_names_in_) == ["a", "b"]
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.partial_fit(X.to_numpy()[:50])
    with pytest.raises(ValueError, match="feature names should match"):
        est.partial_fit(X.rename(columns={"a": "c"}))


def test_docstring_examples_run():
    from fastkm.kmeans import _minibatch

    result = doctest.testmod(_minibatch, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("params, error, match", [
    ({"n_clusters": 0}, ValueError, "n_clusters"),
    ({"n_clusters": 2.5}, TypeError, "n_clusters"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": "big"}, TypeError, "batch_size"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"compute_labels": "yes"}, TypeError, "compute_labels"),
    ({"random_state": "seed"}, ValueError, "random_state"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"max_no_improvement": -1}, ValueError, "max_no_improvement"),
    ({"init_size": 0}, ValueError, "init_size"),
    ({"n_init": 0}, ValueError, "n_init"),
    ({"n_init": "twice"}, ValueError, "n_init"),
    ({"reassignment_ratio": -0.1}, ValueError, "reassignment_ratio"),
    ({"adaptive_lr": 1}, TypeError, "adaptive_lr"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"init": "k-means||"}, ValueError, "init"),
    ({"init": np.zeros((3, 2))}, ValueError, "number of clusters"),
    ({"init": np.zeros((4, 5))}, ValueError, "number of features"),
])
def test_bad_parameters(params, error, match):
    X = blobs(100, 2, 4, seed=26)
    est = MiniBatchKMeans(**{"n_clusters": 4, **params})
    with pytest.raises(error, match=match):
        est.fit(X)
    with pytest.raises(error, match=match):
        MiniBatchKMeans(**{"n_clusters": 4, **params}).partial_fit(X)


def test_bad_input():
    X = blobs(100, 2, 4, seed=27)
    # sparse input: tests/test_minibatch_sparse.py
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        MiniBatchKMeans(4).fit(X[:3])
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        MiniBatchKMeans(4).partial_fit(X[:3])
    bad = X.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MiniBatchKMeans(4).fit(bad)
    with pytest.raises(ValueError, match="2D"):
        MiniBatchKMeans(4).fit(X[:, 0])
    with pytest.raises(ValueError, match="non-negative"):
        MiniBatchKMeans(4).fit(X, sample_weight=-np.ones(100))
    with pytest.raises(ValueError, match="sample_weight"):
        MiniBatchKMeans(4).fit(X, sample_weight=np.ones(99))
    est = MiniBatchKMeans(4, random_state=0).partial_fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but MiniBatchKMeans is expecting 2"):
        est.partial_fit(np.ones((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(bad)
    with pytest.raises(fastkm._compat.NotFittedError):
        MiniBatchKMeans(4).predict(X)


def test_warnings():
    X = blobs(200, 2, 5, seed=28)
    with pytest.warns(RuntimeWarning, match="init_size=3 should be larger than n_clusters=5"):
        MiniBatchKMeans(5, init_size=3, random_state=0).fit(X)
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        MiniBatchKMeans(5, init=X[:5], n_init=3).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MiniBatchKMeans(5, init=X[:5], random_state=0).fit(X)


# --------------------------------------------------------------------------- packaging

def test_import_fastkm_does_not_import_sklearn():
    code = ("import sys, fastkm; assert 'sklearn' not in sys.modules; "
            "assert 'MiniBatchKMeans' in fastkm.__all__ and 'MiniBatchKMeans' in dir(fastkm); "
            "print('ok')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_works_without_sklearn(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("sklearn hidden for this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from fastkm import MiniBatchKMeans
        X = np.random.RandomState(0).normal(size=(3000, 3))
        est = MiniBatchKMeans(4, random_state=0).fit(X)
        assert (est.predict(X) == est.labels_).all()
        est.partial_fit(X[:500])
        assert "n_clusters=4" in repr(est)
        assert "sklearn" not in sys.modules
        print("ok")
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_minibatch_kernels_are_built_per_isa():
    from fastkm import _dispatch  # tests/test_layout.py checks setup.py lists the same

    assert "minibatch" in _dispatch.HOT


# --------------------------------------------------------------------------- scikit-learn

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# Checks MiniBatchKMeans fails on purpose, with the reason (scikit-learn lists
# the same one for its own MiniBatchKMeans).
EXPECTED_FAILED_CHECKS = {
    "MiniBatchKMeans": {
        # Weighted batches are drawn by weight, repeated rows by count: different
        # random streams, equal only in distribution. (A weighted fit is tested
        # step for step against scikit-learn's in test_weighted_fit_is_scikit_learns.)
        "check_sample_weight_equivalence_on_dense_data": (
            "batches are drawn by weight: not equivalent to repeating rows"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "batches are drawn by weight: not equivalent to repeating rows"
        ),
    }
}


def _expected_failed_checks(est):
    return EXPECTED_FAILED_CHECKS.get(type(est).__name__, {})


@parametrize_with_checks(
    [MiniBatchKMeans(n_clusters=2, n_init=2, max_iter=5, batch_size=10, random_state=0),
     MiniBatchKMeans(n_clusters=3, init="random", random_state=0),
     MiniBatchKMeans(n_clusters=2, adaptive_lr=True, random_state=0)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_pipeline_gridsearch():
    X = blobs(600, 4, 3, seed=29)
    est = MiniBatchKMeans(3, random_state=0, n_threads=1)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    pipe = make_pipeline(StandardScaler(), MiniBatchKMeans(3, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (600,)
    assert pipe.transform(X).shape == (600, 3)
    gs = GridSearchCV(MiniBatchKMeans(random_state=0), {"n_clusters": [2, 3, 5]}, cv=3).fit(X)
    assert gs.best_params_["n_clusters"] == 5   # -inertia: more clusters score higher
    assert "n_clusters=3" in repr(MiniBatchKMeans(3))


def test_same_parameters_as_sklearn():
    from inspect import signature

    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    theirs = signature(SKMiniBatchKMeans).parameters
    ours = signature(MiniBatchKMeans).parameters
    extra = {"n_threads"} | ({"adaptive_lr"} - set(theirs))
    assert set(ours) - extra == set(theirs)
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
