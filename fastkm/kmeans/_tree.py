"""Sums over canonical row blocks in a tree fixed by block index: the reduction
that makes a fit split into pieces (chunks of a Dask array, memory windows)
give the same bits however the rows are split.

Rows are grouped into canonical blocks of ``block_rows(...)`` rows, counted
from row 0 of the whole data set; each block's partial (a float64 array) is
computed from its own rows in a fixed order. The total is the value of the
root of a binary tree over the block indices: node (level L, index j) covers
blocks [j 2^L, (j + 1) 2^L); its value is left child + right child, or the left
child alone when the right child starts past the last block. A piece that
holds blocks [a, b) completes every node inside [a, b) (``TreeSum``), and
the total of the nodes of all pieces is computed from the root down
(``tree_total``): every addition is the same whichever piece made it, so the
total is the same bits for any split on block boundaries, any number of
workers and any order of arrival.
"""
import numpy as np

BLOCK_ROWS = 1 << 16        # canonical block, at least (a multiple of the tile height)
SUMS_SHARE = 32             # per-block center sums at most 1/SUMS_SHARE of the block's rows


def block_rows(n_clusters=1, n_features=1):
    """Rows of a canonical block: ``BLOCK_ROWS``, doubled while a block's float64
    center sums (k x (d + 1)) would take more than 1/SUMS_SHARE of its rows'
    bytes (as float32). Depends on the model's shape only, never on the data's
    size or split."""
    rows = BLOCK_ROWS
    while SUMS_SHARE * 8 * n_clusters * (n_features + 1) > rows * n_features * 4:
        rows *= 2
    return rows


class TreeSum:
    """The tree nodes that consecutive blocks complete, with O(log n) of them
    kept: blocks are added in increasing index order, from any first index."""

    def __init__(self):
        self.stack = []          # [(level, index, value)], the open nodes

    def add(self, index, value):
        """Add block ``index`` (one more than the last one added, if any)."""
        level, value = 0, np.asarray(value, dtype=np.float64)
        while self.stack:
            top_level, top_index, top_value = self.stack[-1]
            if top_level != level or top_index != index - 1 or top_index % 2:
                break
            self.stack.pop()
            level, index, value = level + 1, top_index // 2, top_value + value
        self.stack.append((level, index, value))

    def nodes(self):
        return list(self.stack)


def tree_nodes(parts, first=0):
    """The nodes of blocks first, first + 1, ... with partials ``parts``."""
    acc = TreeSum()
    for j, part in enumerate(parts):
        acc.add(first + j, part)
    return acc.nodes()


def tree_total(nodes, n_blocks):
    """The root of the tree over ``n_blocks`` blocks from the nodes of every
    piece (an iterable of (level, index, value)); raises if a block is missing."""
    have = {(level, index): value for level, index, value in nodes}
    top = max(0, int(n_blocks - 1).bit_length())

    def node(level, index):
        value = have.get((level, index))
        if value is not None:
            return value
        if level == 0:
            raise ValueError(f"the partial of block {index} is missing")
        left = node(level - 1, 2 * index)
        if (2 * index + 1) << (level - 1) >= n_blocks:
            return left
        return left + node(level - 1, 2 * index + 1)

    return node(top, 0)


def tree_sum(parts):
    """Total of per-block partials of all blocks, in the fixed tree."""
    parts = list(parts)
    return tree_total(tree_nodes(parts), len(parts))
