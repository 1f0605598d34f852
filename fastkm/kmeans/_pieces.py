"""A fit whose rows come in pieces: the memory windows of an out-of-core fit
(``_outofcore``) and the chunks of a Dask array (``fastkm.dask``).

A piece holds the rows of whole canonical blocks (``_tree.block_rows``); the
kernels sum each block from its own rows (``BlockSums`` with that block
size, ``partials``), and the blocks of all pieces are added in the tree fixed
by block index (``_tree``). So a fit in pieces gives the same bits for any
split on block boundaries, any number of workers or threads and any order of
arrival, and the out-of-core and the Dask fit of the same rows agree bit for
bit. ``run_pieces`` is ``_solver.run`` over such pieces: the same steps, the
same relocation of empty clusters, the same stopping rules.
"""
from typing import NamedTuple

import numpy as np

from fastkm._kernels import partials
from fastkm.kmeans._solver import converged
from fastkm.kmeans._tree import TreeSum, tree_total

FAR_ROWS = 16   # farthest rows each piece reports per iteration (candidates for empty clusters)


class Merged:
    """Center sums and weights of one iteration (as ``BlockSums.sums``/``weights``)."""

    def __init__(self, sums, weights):
        self.sums = sums
        self.weights = weights


class Far(NamedTuple):
    """Rows farthest from their assigned centers, farthest first (the lower
    global row first on ties)."""
    dist: np.ndarray      # (m,) float64 squared distances
    index: np.ndarray     # (m,) int64 global rows
    rows: np.ndarray      # (m, d) the rows, in the fit's dtype
    weights: np.ndarray   # (m,) their sample weights
    labels: np.ndarray    # (m,) their labels


class IterResult(NamedTuple):
    sums: Merged          # merged float64 center sums and weights
    inertia: object       # of the centers the labels came from (None: not asked for)
    far: object           # a Far of at least min(FAR_ROWS, n) farthest rows, or None
    changed: int          # labels changed; -1: unknown (a piece lost its state)


def merge_far(fars, m):
    """The m farthest of several ``Far`` (by distance, then global row)."""
    fars = [f for f in fars if f.dist.shape[0]]
    if not fars:
        return None
    dist = np.concatenate([f.dist for f in fars])
    index = np.concatenate([f.index for f in fars])
    order = np.lexsort((index, -dist))[:m]
    cat = (np.concatenate([getattr(f, name) for f in fars])[order]
           for name in ("rows", "weights", "labels"))
    return Far(dist[order], index[order], *cat)


def piece_far(X, sample_weight, labels, top_dist, top_row, start, m):
    """A piece's ``Far`` from its per-block candidates (``partials.assigned_stats``)."""
    ok = top_row >= 0
    rows = top_row[ok]
    dist = top_dist[ok]
    order = np.lexsort((rows, -dist))[:m]
    rows = rows[order]
    return Far(dist[order], rows.astype(np.int64) + start, np.array(X[rows]),
               np.array(sample_weight[rows]), np.array(labels[rows]))


def block_vectors(sums):
    """Per-block partials of a ``BlockSums`` as rows [sums | weights]."""
    s, w = sums.block_partials()
    nb = s.shape[0]
    return np.concatenate([s.reshape(nb, -1), w], axis=1)


def piece_partials(X, sample_weight, centers, labels, sums, first_block, n_threads,
                   stats=True, top=FAR_ROWS):
    """After a kernel call over a piece: tree nodes of [sums | weights | inertia]
    per block, and the piece's per-block ``top`` farthest rows (piece-local
    rows). Without ``stats`` (an O(rows x d) pass that most iterations do not
    need) the inertia is 0 and no rows are returned."""
    nb, rpb = sums.n_blocks, sums.rows_per_block
    inertia = np.zeros(nb)
    far = None
    if stats:
        top = max(1, min(top, X.shape[0]))
        far = (np.empty((nb, top)), np.empty((nb, top), dtype=np.intp))
        partials.assigned_stats(X, sample_weight, centers, labels, rpb, inertia, far[0],
                                far[1], n_threads)
    vec = np.concatenate([block_vectors(sums), inertia[:, None]], axis=1)
    acc = TreeSum()
    for j in range(nb):
        acc.add(first_block + j, vec[j])
    return acc.nodes(), far


def unpack(total, k, d):
    """(Merged, inertia) from a tree total of [sums | weights | inertia]."""
    return Merged(total[:k * d].reshape(k, d).copy(), total[k * d:k * d + k].copy()), \
        float(total[-1])


def column_nodes(X, center, rows_per_block, first_block, n_threads):
    """Tree nodes of a piece's per-block column sums (``center`` None) or
    squared deviations from ``center``."""
    nb = max(1, -(-X.shape[0] // rows_per_block))
    out = np.empty((nb, X.shape[1]))
    partials.column_block_sums(X, center, rows_per_block, out, n_threads)
    acc = TreeSum()
    for j in range(nb):
        acc.add(first_block + j, out[j])
    return acc.nodes()


def mean_from_nodes(nodes, n_blocks, n):
    return tree_total(nodes, n_blocks) / n


def variance_from_nodes(nodes, n_blocks, n):
    """Mean of the column variances from the nodes of squared deviations."""
    return float(np.mean(tree_total(nodes, n_blocks) / n))


def relocate(sums, far, empty):
    """Give each empty cluster one of the farthest rows, moving its weight
    between the float64 sums (``_solver.relocate_empty_clusters``'s rule)."""
    for new_id, x, w, old_id in zip(empty, far.rows, far.weights, far.labels):
        w = float(w)
        x = x.astype(np.float64)
        sums.sums[old_id] -= w * x
        sums.weights[old_id] -= w
        sums.sums[new_id] = w * x
        sums.weights[new_id] = w


def run_pieces(ops, centers_init, max_iter, tol, verbose):
    """One run from ``centers_init`` over the pieces of ``ops``: its
    ``iterate(centers, first, stats) -> IterResult`` (with ``stats``, also the
    inertia and the farthest rows), ``farthest(centers, m) -> Far``,
    ``centers_moved(old, new)`` and ``final(centers) -> inertia`` (labels of the
    final centers). The loop of ``_solver.run``. Returns (centers, inertia, n_iter)."""
    centers = np.array(centers_init, order="C")
    last = None
    strict = False
    for it in range(max_iter):
        res = ops.iterate(centers, it == 0, bool(verbose))
        sums = res.sums
        empty = np.flatnonzero(sums.weights <= 0)
        if empty.size:
            m = min(empty.size, ops.n_samples)
            far = res.far if res.far is not None and res.far.dist.shape[0] >= m else \
                ops.farthest(centers, m)
            relocate(sums, far, empty)
        filled = sums.weights > 0
        new_centers = centers.copy()
        new_centers[filled] = sums.sums[filled] / sums.weights[filled, None]
        shift = float(np.sum((new_centers.astype(np.float64) - centers) ** 2))
        if verbose:
            print(f"Iteration {it}, inertia {res.inertia}.")
        ops.centers_moved(centers, new_centers)
        last = (centers, res.inertia)
        centers = new_centers
        stop = converged(it, res.changed, shift, tol, verbose)
        if stop is not None:
            strict = stop == "strict"
            break
    if strict and last[1] is not None and np.array_equal(centers, last[0]):
        inertia = last[1]   # the labels are those of these very centers
    else:
        inertia = ops.final(centers)
    return centers, inertia, it + 1
