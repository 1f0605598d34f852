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

    The distinct colors of the image, weighted by their pixel counts, are
    clustered (exactly k-means on all the pixels, far cheaper), the centers
    rounded to 8 bits become the palette, and every pixel is mapped to its
    exactly nearest entry. Entries are sorted by popularity, unused ones dropped.

    Parameters
    ----------
    image : PIL.Image, ndarray or path
        A Pillow image of any mode (RGB, RGBA, L, LA, P, I;16, CMYK, ...), a uint8
        array of shape (H, W) or (H, W, C) with C = 1 (gray), 2 (gray + alpha),
        3 (RGB) or 4 (RGBA), or the path of an image file. Not modified.
    n_colors : int, default=64
        Largest palette size, 1..65536 (at most 256 for ``.image`` and ``save``).
        An image with no more distinct colors than this is kept exactly.
    color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
        Space of the clustering and of the nearest-entry search. The perceptual
        spaces (OKLab, CIELab) convert the centers back to sRGB.
    dither : bool or 'floyd-steinberg', default=False
        Serpentine Floyd-Steinberg error diffusion (in premultiplied sRGB, error
        clamped), deterministic.
    preset : {'default', 'fast', 'converged'}, default='default'
        The speed/quality trade-off of the clustering (the mapping of the pixels
        is exact in all three):

        - 'default': k-means++ on 5-bit color bins, Lloyd on 6-bit bins, then up
          to 20 Lloyd iterations on the exact histogram;
        - 'fast': the coarse bins only (4- and 5-bit): several times faster,
          a few tenths of a dB lower PSNR;
        - 'converged': k-means++ and Lloyd to convergence on the exact
          histogram (what scikit-learn's KMeans on all the pixels computes):
          1.5-5x slower than 'default' for at most a few hundredths of a dB.

        The README has the measured table. ('best', the old name of
        'converged', still works and warns.)
    random_state : int, RandomState instance or None, default=0
        Seed of k-means++. The same image and seed give the same bytes for any
        number of threads.
    n_threads : int, default=None
        Threads of the compiled passes (as in ``fastkm.KMeans``).

    Returns
    -------
    QuantizedImage
        ``palette`` (most used first), ``indices``, ``image`` (a Pillow 'P'
        image), ``to_array()``, ``save(path)``, and the quality ``mse``,
        ``psnr`` and ``delta_e``.

    See Also
    --------
    Palette : one palette for several images, or a palette of your own.

    Notes
    -----
    Alpha: fully transparent pixels share one transparent entry (0, 0, 0, 0),
    which takes one of the ``n_colors``; partly transparent pixels are
    clustered with the colors in premultiplied form. An alpha channel that is
    opaque everywhere is dropped.

    Examples
    --------
    >>> import numpy as np
    >>> import fastkm
    >>> img = np.zeros((4, 6, 3), np.uint8)
    >>> img[:, :3] = (255, 0, 0); img[:, 3:] = (0, 0, 255); img[0, 0] = (250, 5, 5)
    >>> q = fastkm.quantize(img, 2)
    >>> q
    QuantizedImage(6x4, 2 colors, color_space='rgb', dither=None)
    >>> q.palette
    array([[255,   0,   0],
           [  0,   0, 255]], dtype=uint8)
    >>> q.indices[0]
    array([0, 0, 0, 1, 1, 1], dtype=uint8)
    >>> round(q.psnr, 2)
    47.95
    >>> q.save("small.png")          # doctest: +SKIP
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
