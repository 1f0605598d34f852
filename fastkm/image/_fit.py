"""Fitting a palette: presets, the coarse-to-fine k-means schedule, the fit on pixels."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastkm._validation import check_random_state, effective_n_threads
from fastkm.image import _color
from fastkm.image._histogram import _BinPyramid, _histogram_of
from fastkm.image._io import _add_alpha
from fastkm.image._palette import Palette, _sorted_by, _with_transparency
from fastkm.image._params import _check_choice, _check_n_colors, _check_preset
from fastkm.image._remap import _nearest_colors, _remap_pixels

# preset -> (coarse levels as (bits per channel, most Lloyd iterations): k-means++ at
# the first level with enough bins, then Lloyd level by level; most Lloyd iterations on
# the exact histogram afterwards). The quality of the result follows the total work (in
# iterations over the full histogram), whichever level it is spent on.
_PRESET_PARAMS = {
    "fast": (((4, 300), (5, 300)), 0),
    "default": (((5, 300), (6, 30)), 20),
    "converged": ((), 300),
}
_TOL = 1e-4                        # KMeans' relative tolerance at every level
_REFINE_WORK = 1 << 31             # cap on point-center distances of the refinement on huge
                                   # histograms (iterations x distinct colors x colors)
_MIN_BINS_PER_CLUSTER = 4          # seeding needs enough bins for every cluster


def _kmeans(n_clusters, X, w, random_state, n_threads, *, tol, max_iter, init="k-means++"):
    """Cluster centers of float32 points X with float32 weights w: the compiled fit
    ``KMeans`` runs, without the estimator (so scikit-learn is never imported)."""
    from fastkm.kmeans import _core

    return _core.fit(X, w, n_clusters, init=init, n_init=1, max_iter=max_iter, tol=tol,
                     random_state=random_state, algorithm="auto", copy_x=True, verbose=0,
                     n_threads=n_threads).centers


def _cluster(pyramid, levels, full, refine_iter, n_clusters, random_state, n_threads):
    """k-means centers: seeded by k-means++ at the first level of ``levels`` with
    enough bins, refined by Lloyd on each finer level, then by up to
    ``refine_iter`` Lloyd iterations on ``full`` = (X, w), the exact histogram."""
    centers = None
    for bits, max_iter in levels:
        pts, w = pyramid.level(bits)
        if full is not None and pts.shape[0] >= full[0].shape[0]:
            break  # this level is no coarser than the histogram itself
        if centers is None:
            if pts.shape[0] < _MIN_BINS_PER_CLUSTER * n_clusters:
                continue
            centers = _kmeans(n_clusters, pts, w, random_state, n_threads, tol=_TOL,
                              max_iter=max_iter)
        else:
            # tol=0: the iteration cap binds first anyway, and KMeans then skips the
            # variance of X its relative tolerance needs
            centers = _kmeans(n_clusters, pts, w, random_state, n_threads, init=centers,
                              tol=0.0, max_iter=max_iter)
    if full is None:
        return centers
    X, w = full
    if centers is None:
        return _kmeans(n_clusters, X, w, random_state, n_threads, tol=_TOL,
                       max_iter=max(refine_iter, 300))
    if refine_iter > 0:
        refine_iter = min(refine_iter, max(1, _REFINE_WORK // (X.shape[0] * n_clusters)))
        centers = _kmeans(n_clusters, X, w, random_state, n_threads, init=centers,
                          max_iter=refine_iter, tol=0.0)
    return centers


class _FitResult(NamedTuple):
    """What :func:`_fit_pixels` found.

    ``palette``: unsorted, possibly with unused entries. ``histogram``: the histogram
    of the pixels, or None when the preset clustered color bins straight from the
    pixels ('fast' in RGB). ``colors``, ``weights``: the distinct colors that were
    clustered and their pixel counts (fully transparent pixels are one of them only
    when n_colors == 1); None without a histogram.
    """

    palette: Palette
    histogram: object | None  # _ColorHistogram or _DenseHistogram
    colors: np.ndarray | None
    weights: np.ndarray | None


def _fit_pixels(pixels, n_colors, color_space, preset, random_state, n_threads):
    """Fit on (H, W, C) arrays (alpha already dropped where opaque): a _FitResult."""
    n_colors = _check_n_colors(n_colors)
    space = _check_choice(color_space, "color_space", _color.COLOR_SPACES)
    preset = _check_preset(preset)
    random_state = check_random_state(random_state)
    n_threads = effective_n_threads(n_threads)
    if len({a.shape[2] for a in pixels}) > 1:  # some with alpha: give all an alpha
        pixels = [a if a.shape[2] == 4 else _add_alpha(a) for a in pixels]
    n_channels = pixels[0].shape[2]
    levels, refine_iter = _PRESET_PARAMS[preset]
    if n_channels == 4:  # RGBA bins: 4 channels, one bit less each
        levels = tuple((b - 1, it) for b, it in levels)
    finest = max((b for b, _ in levels), default=None)

    if refine_iter == 0 and space == "rgb" and len(pixels) == 1:
        # no pass over the exact histogram: bin the pixels directly
        pyramid, n_transparent = _BinPyramid.from_pixels(
            pixels[0].reshape(-1, n_channels), finest, n_threads)
        n_clusters = n_colors - int(n_transparent > 0 and n_colors >= 2)
        if pyramid.n_bins >= _MIN_BINS_PER_CLUSTER * n_clusters:
            centers = _cluster(pyramid, levels, None, 0, n_clusters, random_state,
                               n_threads)
            entries = _color.features_to_colors(centers, space, n_channels)
            pal = _with_transparency(entries, n_transparent, n_colors, space)
            return _FitResult(pal, None, None, None)

    hist = _histogram_of(pixels, n_threads=n_threads)
    colors, weights = hist.colors, hist.weights
    if hist.n_transparent > 0 and n_colors == 1:
        # one color only: fully transparent pixels are clustered like any other
        colors = np.concatenate([colors, np.zeros((1, 4), np.uint8)])
        weights = np.concatenate([weights, np.array([hist.n_transparent], np.uint32)])
    n_clusters = n_colors - int(hist.n_transparent > 0 and n_colors >= 2)
    if colors.shape[0] <= n_clusters:
        entries = colors.copy()  # lossless
    else:
        if space == "rgb" and n_channels == 3:
            X = colors.astype(np.float32)
            pyramid = _BinPyramid.from_pixels(colors, finest, 1, weights=weights)[0] \
                if levels else None
        else:
            X64 = _color.color_features(colors, space)
            pyramid = _BinPyramid.from_colors(colors, weights, X64, finest) if levels else None
            X = X64.astype(np.float32)
        full = (X, weights.astype(np.float32))
        centers = _cluster(pyramid, levels, full, refine_iter, n_clusters, random_state,
                           n_threads)
        entries = _color.features_to_colors(centers, space, n_channels)
    pal = _with_transparency(entries, hist.n_transparent, n_colors, space)
    return _FitResult(pal, hist, colors, weights)


def _fit_palette(pixels, n_colors, color_space, preset, random_state, n_threads):
    """One palette for (H, W, C) arrays (alpha already dropped where opaque), entries
    by popularity over the pooled pixels."""
    fit = _fit_pixels(pixels, n_colors, color_space, preset, random_state, n_threads)
    pal = fit.palette
    # popularity over the pooled pixels
    n_threads = effective_n_threads(n_threads)
    if fit.histogram is None:  # one image, binned directly
        _, counts = _remap_pixels(pal, pixels[0], None, n_threads)
    else:  # each distinct color's nearest entry
        _, counts = _nearest_colors(pal, fit.colors, fit.weights, n_threads)
        if pal.transparent_index is not None:
            counts[pal.transparent_index] += fit.histogram.n_transparent
    return _sorted_by(pal, counts)[0]
