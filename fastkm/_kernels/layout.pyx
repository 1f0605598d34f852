"""Row blocks, tiles and center packing: the shapes every kernel agrees on, and
the constants the Python layer mirrors (one definition each, here or in
``layout.pxd``).

``block_layout`` fixes the reduction blocks from the data shape alone: every
block-ordered sum in fastkm is therefore the same for any thread count.
"""
from cython cimport floating
from cython.parallel cimport prange

import numpy as np

from fastkm._kernels.numerics cimport rounding_scale as _rounding_scale
from fastkm._kernels.tiles cimport transpose_chunk

CHUNK_ROWS = CHUNK
FEW_FEATURES = DIRECT_MAX_D   # distances as sums of (x - c)^2 up to this many features
CENTER_PAD = CENTER_TILE
BALL = BALL_SIZE               # Exponion's nearest-center lists, per center
BLOCK_SUMS_BUDGET = 64 * 2**20  # bytes of per-block float64 center sums
MAX_BLOCK_COUNT = MAX_BLOCKS    # reduction blocks of a layout, at most


def rounding_scale(Py_ssize_t d):
    """8 (d + 4): the kernels' relative rounding margin of a d-term squared
    distance, in units of the dtype's eps (``numerics.rounding_bound``)."""
    return _rounding_scale(d)


def block_layout(Py_ssize_t n_samples, Py_ssize_t n_clusters=1, Py_ssize_t n_features=1):
    """Split ``n_samples`` rows into reduction blocks.

    Returns ``(n_blocks, rows_per_block)``; ``rows_per_block`` is a multiple of
    the tile height. The layout depends only on the arguments, which is what
    makes block-ordered reductions independent of the thread count.
    """
    cdef Py_ssize_t n_chunks = (n_samples + CHUNK - 1) // CHUNK
    cdef Py_ssize_t per_block_bytes = 8 * n_clusters * (n_features + 1)
    cdef Py_ssize_t cap = max(1, BLOCK_SUMS_BUDGET // per_block_bytes)
    cdef Py_ssize_t n_blocks = max(1, min(n_chunks, MAX_BLOCKS, cap))
    cdef Py_ssize_t chunks_per_block = (n_chunks + n_blocks - 1) // n_blocks
    cdef Py_ssize_t rows_per_block = max(1, chunks_per_block) * CHUNK
    n_blocks = max(1, (n_samples + rows_per_block - 1) // rows_per_block)
    return int(n_blocks), int(rows_per_block)


def transpose_chunks(
    const floating[:, ::1] X,      # IN  (n_samples, n_features)
    floating[:, :, ::1] out,       # OUT (n_chunks, n_features, CHUNK)
    int n_threads,
):
    """X in tile layout (each CHUNK rows transposed): what the few-feature
    kernels read, made once for a whole fit instead of once per kernel call."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], ch, start
    for ch in prange(out.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        start = ch * CHUNK
        transpose_chunk(&X[start, 0], min(<Py_ssize_t>CHUNK, n - start), d, &out[ch, 0, 0])


def dot_operands(centers):
    """Transposed centers and 0.5*||c||^2, padded to a multiple of CENTER_PAD centers.

    Padding centers are zero with a half-norm of the dtype's max: never the argmin.
    """
    c = np.asarray(centers)
    k, d = c.shape
    k_pad = -(-k // CENTER_TILE) * CENTER_TILE
    ct = np.zeros((d, k_pad), dtype=c.dtype)
    ct[:, :k] = c.T
    hn = np.full(k_pad, np.finfo(c.dtype).max, dtype=c.dtype)
    hn[:k] = 0.5 * np.einsum("ij,ij->i", c, c)
    return ct, hn


def dot_tiles(centers, Py_ssize_t dot_ct):
    """Centers packed for ``tiles.argmin_chunk_dot``: (n_tiles * d, dot_ct) and
    the half norms (n_tiles * dot_ct,), from ``dot_operands`` (so the half norms
    are the bounded algorithms', bit for bit). Padding centers are zero with a
    half norm of the dtype's max: never the argmin."""
    ct, hn = dot_operands(centers)
    d, k_pad = ct.shape
    n_tiles = -(-k_pad // dot_ct)
    cpack = np.zeros((n_tiles * dot_ct, d), dtype=ct.dtype)
    cpack[:k_pad] = ct.T
    cpack = np.ascontiguousarray(cpack.reshape(n_tiles, dot_ct, d).transpose(0, 2, 1))
    hnp = np.full(n_tiles * dot_ct, np.finfo(ct.dtype).max, dtype=ct.dtype)
    hnp[:k_pad] = hn
    return cpack.reshape(n_tiles * d, dot_ct), hnp
