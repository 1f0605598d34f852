"""``BlockSums``: the per-block float64 center sums of a fit and their merge.

A kernel fills one block's sums at a time (rows in order, ``accumulate.pxd``)
and calls ``block_done``; the blocks are added in block order, each element
from 0.0, by whichever thread holds the merge lock, while the other threads go
on labelling. The merged ``sums`` and ``weights`` are therefore the same bits
for any thread count and any schedule, and no second parallel region (with its
barrier) is needed to merge them.
"""
import numpy as np

from fastkm._kernels.layout import block_layout
from fastkm._kernels.layout cimport CHUNK


cdef class BlockSums:
    """Buffers of one fit's center sums: per block, and merged.

    Parameters
    ----------
    n_samples, n_clusters, n_features : int
        The block layout is ``layout.block_layout(n_samples, n_clusters, n_features)``.
    rows_per_block : int, optional
        A layout given instead: blocks of this many rows (a multiple of the
        tile height), so that a call over some rows of a larger fit sums the
        same blocks as a call over all of them (out-of-core and Dask fits).

    Attributes
    ----------
    sums : ndarray of shape (n_clusters, n_features), float64
        Weighted sum of the samples of each cluster, after a kernel call.
    weights : ndarray of shape (n_clusters,), float64
        Total weight of each cluster.
    n_blocks, rows_per_block : int
    """

    def __cinit__(self, Py_ssize_t n_samples, Py_ssize_t n_clusters, Py_ssize_t n_features,
                  Py_ssize_t rows_per_block=0):
        if rows_per_block > 0:
            if rows_per_block % CHUNK:
                raise ValueError(f"rows_per_block must be a multiple of {CHUNK}")
            rpb = rows_per_block
            nb = max(1, (n_samples + rpb - 1) // rpb)
        else:
            nb, rpb = block_layout(n_samples, n_clusters, n_features)
        self.n_blocks = nb
        self.rows_per_block = rpb
        self.n_clusters = n_clusters
        self.n_features = n_features
        self.block_sums = np.zeros((nb, n_clusters, n_features))
        self.block_weights = np.zeros((nb, n_clusters))
        self.block_changed = np.zeros(nb, dtype=np.intp)
        self.sums = np.zeros((n_clusters, n_features))
        self.weights = np.zeros(n_clusters)
        self.sums_v = self.sums
        self.weights_v = self.weights
        self.ready_v = np.zeros(nb, dtype=np.int32)
        self.merge.block_sums = &self.block_sums[0, 0, 0]
        self.merge.block_weights = &self.block_weights[0, 0]
        self.merge.sums = &self.sums_v[0, 0]
        self.merge.weights = &self.weights_v[0]
        self.merge.ready = &self.ready_v[0]
        self.merge.n_blocks = nb
        self.merge.k = n_clusters
        self.merge.d = n_features

    def block_partials(self):
        """(sums, weights): each block's own sums, shapes (n_blocks, k, d) and
        (n_blocks, k), as the last kernel call left them (views, not copies)."""
        return np.asarray(self.block_sums), np.asarray(self.block_weights)

    cdef Merge* start_merge(self) noexcept nogil:
        # before a kernel's region: no block final yet
        cdef Py_ssize_t b
        for b in range(self.n_blocks):
            self.ready_v[b] = 0
        self.merge.lock = 0
        self.merge.next = 0
        return &self.merge
