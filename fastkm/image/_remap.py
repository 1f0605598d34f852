"""Nearest palette entries of colors and pixels: cell candidates, exact remap, dithering."""
import numpy as np

from fastkm import _threads
from fastkm.image import _color, _kernels
from fastkm.image._histogram import _DENSE_MIN_PIXELS, _histogram_of
from fastkm.image._io import _match_channels
from fastkm.image._params import _index_dtype

_DITHER_ERROR_LIMIT = 48.0         # largest error (per channel, 0..255 units) diffused on
_DITHER_MAX_COLORS = 4096          # the dithering search keeps a (k, k) table


def _int_features(colors):
    """Integer features of uint8 colors (n, 3 or 4) as the remap kernel uses them:
    RGB, or 255 x premultiplied RGBA; padded to 4 columns, int64."""
    colors = np.asarray(colors, dtype=np.int64)
    out = np.zeros((colors.shape[0], 4), dtype=np.int64)
    if colors.shape[1] == 3:
        out[:, :3] = colors
    else:
        out[:, :3] = colors[:, :3] * colors[:, 3:4]
        out[:, 3] = 255 * colors[:, 3]
    return out


def _pad4(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros((x.shape[0], 4))
    out[:, :x.shape[1]] = x
    return out


def _pixel_threads(n_pixels, n_threads):
    """Threads for a compiled pass over ``n_pixels`` pixels (``fastkm._threads``)."""
    return _threads.threads_for("pixels", 8 * n_pixels, n_threads)


def _cells(palette, colors, n_threads):
    """Candidate lists of the cells that ``colors`` (n, C) occupy, for the
    features of ``palette``'s color space (or the integer RGB features)."""
    c = colors.shape[1]
    shift = 3 if c == 3 else 4
    bits = 8 - shift
    flags = np.zeros((n_threads, 1 << (c * bits)), dtype=np.uint8)
    _kernels.mark_cells(colors, shift, flags, n_threads)
    occupied = np.flatnonzero(flags.any(axis=0) if n_threads > 1 else flags[0])
    cell_row = np.full(flags.shape[1], -1, dtype=np.int32)
    cell_row[occupied] = np.arange(occupied.size, dtype=np.int32)
    lo = np.empty((occupied.size, c), dtype=np.int64)
    for ch in range(c):
        lo[:, ch] = ((occupied >> (ch * bits)) & ((1 << bits) - 1)) << shift
    hi = lo + ((1 << shift) - 1)
    if palette.color_space == "rgb":
        box_lo, box_hi = _int_features(lo), _int_features(hi)
        pal = palette._int_features[0]
    else:
        box_lo, box_hi = _color.feature_box(lo, hi, palette.color_space)
        pal = palette._features
    box_lo = _pad4(box_lo).astype(np.float32)
    box_hi = _pad4(box_hi).astype(np.float32)
    palette_t = np.ascontiguousarray(_pad4(pal).T, dtype=np.float32)
    counts = np.empty(occupied.size, dtype=np.int64)
    dummy = np.zeros(1, dtype=np.int64)
    _kernels.cell_candidates(box_lo, box_hi, palette_t, dummy, counts,
                             np.empty(0, np.uint16), False, n_threads)
    offsets = np.zeros(occupied.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    candidates = np.empty(int(offsets[-1]), dtype=np.uint16)
    _kernels.cell_candidates(box_lo, box_hi, palette_t, offsets, counts, candidates,
                             True, n_threads)
    return shift, cell_row, offsets, candidates


def _nearest_colors(palette, colors, weights, n_threads):
    """Nearest entry of ``palette`` for each distinct color (uint16 labels) and the
    total weight mapped to each entry (int64)."""
    colors = np.ascontiguousarray(colors)
    n_threads = _pixel_threads(colors.shape[0] * len(palette) // 8, n_threads)
    counts = np.zeros((n_threads, len(palette)), dtype=np.int64)
    labels = np.empty(colors.shape[0], dtype=np.uint16)
    if colors.shape[0] == 0:
        return labels, counts.sum(axis=0)
    colors = _match_channels(colors[None], palette.n_channels)[0]
    shift, cell_row, offsets, candidates = _cells(palette, colors, n_threads)
    if palette.color_space == "rgb":
        feats, gap2 = palette._int_features
        _kernels.remap_cells(colors, weights, feats, gap2, shift, cell_row, offsets,
                             candidates, -1, palette._out_map(np.uint16), labels, counts,
                             n_threads)
    else:
        X = np.ascontiguousarray(_color.color_features(colors, palette.color_space))
        _kernels.nearest_cells_float(colors, X, weights, palette._features, shift, cell_row,
                                     offsets, candidates, labels, counts, n_threads)
        labels = palette._out_map(np.uint16)[labels]
    return labels, counts.sum(axis=0)[palette._canon_rank]


def _remap_pixels(palette, arr, dither, n_threads, hist=None):
    """Indices (H, W) into ``palette`` and per-entry pixel counts of (H, W, C) pixels;
    ``hist``, the histogram of these pixels if there is one, saves counting them."""
    arr = _match_channels(arr, palette.n_channels)
    h, w, c = arr.shape
    dtype = _index_dtype(len(palette))
    tindex = -1 if palette.transparent_index is None else palette.transparent_index
    tcanon = -1 if tindex < 0 else int(palette._canon_rank[tindex])
    if dither is not None:
        if len(palette) > _DITHER_MAX_COLORS:
            raise ValueError(f"dithering supports palettes of at most {_DITHER_MAX_COLORS} "
                             f"colors; this one has {len(palette)}")
        feats, order, order_d2 = palette._dither_features
        out = np.empty((h, w), dtype=dtype)
        counts = np.zeros(len(palette), dtype=np.int64)
        _kernels.dither_floyd_steinberg(
            arr, feats, order, order_d2, tcanon, palette._out_map(dtype), _DITHER_ERROR_LIMIT,
            1.0, np.empty((w + 2, 4)), np.empty((w + 2, 4)), out, counts)
        return out, counts[palette._canon_rank]
    flat = arr.reshape(-1, c)
    n_threads = _pixel_threads(flat.shape[0], n_threads)
    if hist is not None and (hist.n_channels != c or (hist.n_transparent and tindex < 0)):
        hist = None  # not the histogram of these pixels as this palette maps them
    if palette.color_space == "rgb" and hist is None and flat.shape[0] < _DENSE_MIN_PIXELS:
        # every pixel on its own (the previous pixel's answer, then its cell)
        shift, cell_row, offsets, candidates = _cells(palette, flat, n_threads)
        feats, gap2 = palette._int_features
        out = np.empty(flat.shape[0], dtype=dtype)
        counts = np.zeros((n_threads, len(palette)), dtype=np.int64)
        _kernels.remap_cells(flat, np.empty(0, np.uint32), feats, gap2, shift, cell_row,
                             offsets, candidates, tcanon, palette._out_map(dtype), out, counts,
                             n_threads)
        return out.reshape(h, w), counts.sum(axis=0)[palette._canon_rank]
    # the nearest entry of each distinct color, then a table lookup per pixel
    if hist is None:
        hist = _histogram_of([arr], skip_transparent=tindex >= 0, n_threads=n_threads)
    labels, counts = _nearest_colors(palette, hist.colors, hist.weights, n_threads)
    if tindex >= 0:
        counts[tindex] += hist.n_transparent
    out = hist.lookup(flat, labels.astype(dtype), tindex, n_threads)
    return out.reshape(h, w), counts
