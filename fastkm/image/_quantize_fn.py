"""The ``quantize`` entry point: fit a palette to one image, map the image onto it."""
import numpy as np

from fastkm import _threads
from fastkm._validation import effective_n_threads
from fastkm.image import _kernels
from fastkm.image._fit import _fit_pixels
from fastkm.image._io import _as_pixels, _drop_opaque_alpha, _match_channels
from fastkm.image._palette import _sorted_by
from fastkm.image._params import _check_dither, _index_dtype
from fastkm.image._remap import _remap_pixels
from fastkm.image._result import QuantizedImage


def quantize(image, n_colors=64, *, color_space="rgb", dither=False, preset="default",
             random_state=0, n_threads=None):
    """Reduce an image to at most ``n_colors`` colors by weighted k-means.

    Parameters
    ----------
    image : PIL.Image, ndarray or path
        A Pillow image of any mode (RGB, RGBA, L, LA, P, I;16, CMYK, ...), a uint8
        array of shape (H, W), (H, W, 3) or (H, W, 4), or the path of an image file.
    n_colors : int, default=64
        Largest palette size, 1..65536 (at most 256 for ``.image`` and ``save``).
        An image with fewer distinct colors is kept exactly.
    color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
        Space of the clustering and of the nearest-entry search. The perceptual
        spaces convert the centers back to sRGB.
    dither : bool or 'floyd-steinberg', default=False
        Serpentine Floyd-Steinberg error diffusion (in premultiplied sRGB, error
        clamped), deterministic.
    preset : {'default', 'fast', 'best'}, default='default'
        'default': k-means on coarse color bins, then up to 20 Lloyd iterations
        on the exact histogram; 'fast': the coarse k-means only (the pixels are
        still mapped exactly); 'best': k-means++ and Lloyd to convergence on the
        exact histogram (what scikit-learn's KMeans on all pixels computes).
    random_state : int, RandomState instance or None, default=0
        Seed of k-means++. The same image and seed give the same bytes, for any
        number of threads.
    n_threads : int, default=None
        OpenMP threads (None: OpenMP's maximum; -1: every CPU).

    Returns
    -------
    QuantizedImage
        ``palette`` (sorted by popularity), ``indices``, ``image`` (a Pillow 'P'
        image), ``to_array()``, ``save(path)``, and ``mse``, ``psnr``, ``delta_e``.
    """
    arr = _drop_opaque_alpha(_as_pixels(image))
    dither = _check_dither(dither)
    fit = _fit_pixels([arr], n_colors, color_space, preset, random_state, n_threads)
    pal = fit.palette
    n_threads = effective_n_threads(n_threads)
    arr = _match_channels(arr, pal.n_channels)
    indices, counts = _remap_pixels(pal, arr, dither, n_threads, hist=fit.histogram)
    # entries by popularity in the output, unused ones dropped
    sorted_pal, lut = _sorted_by(pal, counts)
    if lut.size != len(sorted_pal) or np.any(lut != np.arange(lut.size)):
        _kernels.apply_lut(indices.reshape(-1), lut.astype(indices.dtype),
                           _threads.threads_for("pixels", indices.size, n_threads))
        if indices.dtype != _index_dtype(len(sorted_pal)):
            indices = indices.astype(_index_dtype(len(sorted_pal)))
    distinct = None if fit.histogram is None else (fit.colors, fit.weights)
    return QuantizedImage(sorted_pal, indices, sorted_pal.counts, arr, dither, distinct,
                          n_threads)
