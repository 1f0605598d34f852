"""Initial centers for sparse input: greedy k-means++ on CSR rows without
densifying them (``kmeans_plusplus_csr``), 'random', a callable or an array
(``init_centers_csr``). Centers come back dense, (n_clusters, n_features) in
X's dtype.

k-means++ draws the same random numbers in the same order as the dense path
(and scikit-learn): the first center by weight, then ``n_local_trials``
candidates per center by D^2 sampling, the one that lowers the potential most
kept. Squared distances are computed in float64 from sparse dot products, so
the draws are the dense path's wherever rounding does not move a draw across
a row boundary.
"""
import numpy as np

from fastkm import _threads
from fastkm._dispatch import seeding, sparse_seeding
from fastkm._kernels import layout
from fastkm.kmeans import _policy
from fastkm.kmeans._sparse_solver import aligned_empty


class _Candidates:
    """Candidate rows as float64 lanes of a (d, LANES) tile with a bitmap of
    their columns, and the D^2 state. Each pass keeps the candidates' D^2 when
    that fits (``_policy.SPARSE_SEED_KEEP_BYTES``), so that choosing one needs
    no second pass; the result is the same bits either way."""

    def __init__(self, X, w, n_trials, n_threads):
        n, d = X.shape
        self.X, self.w = X, w
        self.n_threads = n_threads
        self.tile = aligned_empty((d, sparse_seeding.LANES), np.float64, zero=True)
        self.bits = np.zeros(-(-d // 64), dtype=np.uint64)
        self.n_blocks, self.rows_per_block = layout.block_layout(n)
        self.closest = np.full(n, np.inf)
        self.block_pot = np.empty(self.n_blocks)
        self.sq = X.sq_norms
        keep = 8 * n * n_trials <= _policy.SPARSE_SEED_KEEP_BYTES
        self.d2 = np.empty((n_trials, n)) if keep else None
        self.cand_pot = None

    def _fill(self, rows, clear=False):
        sparse_seeding.fill_lanes(self.X.rows, np.ascontiguousarray(rows, dtype=np.intp),
                                  self.tile, self.bits, clear)

    def potentials(self, cand_ids):
        """(n_candidates, n_blocks) per-block potentials of the candidates."""
        m = cand_ids.shape[0]
        out = np.empty((m, self.n_blocks))
        lanes = sparse_seeding.LANES
        for g in range(0, m, lanes):
            ids = cand_ids[g:g + lanes]
            self._fill(ids)
            cc = np.zeros(lanes)
            cc[:ids.shape[0]] = self.sq[ids]
            r = _threads.region("sparse-seed", self.X.nnz * lanes, self.n_blocks,
                                self.n_threads)
            sparse_seeding.candidate_potentials(
                self.X.rows, self.w, self.closest, self.tile, self.bits, cc, ids.shape[0],
                out[g:g + lanes], self.rows_per_block, r,
                None if self.d2 is None else self.d2[g:g + lanes])
            _threads.record(r)
            self._fill(ids, clear=True)
        self.cand_pot = out
        return out

    def choose(self, row, t=None):
        """Lower D^2 to row ``row`` of X (candidate ``t`` of the last pass, if
        any); returns the new total potential."""
        if t is not None and self.d2 is not None:
            return sparse_seeding.lower_to_stored(self.closest, self.d2[t], self.cand_pot[t],
                                                  self.block_pot)
        ids = np.array([row], dtype=np.intp)
        self._fill(ids)
        r = _threads.region("sparse-seed-lower", self.X.nnz, self.n_blocks, self.n_threads)
        pot = sparse_seeding.lower_closest(self.X.rows, self.w, self.closest, self.tile,
                                           self.bits, 0, float(self.sq[row]), self.block_pot,
                                           self.rows_per_block, r)
        _threads.record(r)
        self._fill(ids, clear=True)
        return pot


def kmeans_plusplus_csr(X, n_clusters, sample_weight, random_state, n_local_trials, n_threads):
    """Greedy k-means++ on a ``SparseX``. Returns (dense centers, row indices)."""
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    state = _Candidates(X, sample_weight, n_local_trials, n_threads)
    indices = np.full(n_clusters, -1, dtype=np.intp)
    cand_ids = np.empty(n_local_trials, dtype=np.intp)
    p = sample_weight.astype(np.float64)
    center_id = random_state.choice(X.shape[0], p=p / p.sum())
    indices[0] = center_id
    pot = state.choose(center_id)
    for c in range(1, n_clusters):
        targets = random_state.uniform(size=n_local_trials) * pot
        seeding.sample_d2(sample_weight, state.closest, state.block_pot, state.rows_per_block,
                          targets, cand_ids)
        pots = state.potentials(cand_ids).sum(axis=1)  # n_blocks values each, fixed order
        best = int(np.argmin(pots))
        indices[c] = cand_ids[best]
        pot = state.choose(indices[c], best)
    return X.row_subset(indices, aligned_empty((n_clusters, X.shape[1]), X.dtype)), indices


def init_centers_csr(X, sample_weight, n_clusters, init, random_state, n_threads):
    """Initial (dense) centers for one run of a sparse fit."""
    if isinstance(init, str) and init == "k-means++":
        centers, _ = kmeans_plusplus_csr(X, n_clusters, sample_weight, random_state, None,
                                         n_threads)
    elif isinstance(init, str) and init == "random":
        p = sample_weight.astype(np.float64)
        seeds = random_state.choice(X.shape[0], size=n_clusters, replace=False, p=p / p.sum())
        centers = X.row_subset(seeds, aligned_empty((n_clusters, X.shape[1]), X.dtype))
    elif callable(init):
        from fastkm._validation import check_init_result

        centers = check_init_result(init(X.matrix, n_clusters, random_state=random_state),
                                    n_clusters, X.shape[1], X.dtype)
    elif isinstance(init, str):
        raise ValueError(f"init={init!r} does not take sparse input yet; use 'k-means++' "
                         "(it reads the CSR rows directly), 'random', a callable or an array.")
    else:
        centers = init
    out = aligned_empty(np.shape(centers), X.dtype)
    out[...] = centers
    return out
