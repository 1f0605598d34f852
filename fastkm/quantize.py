"""Image color quantization by weighted k-means: ``quantize``, ``Palette``.

    >>> import fastkm
    >>> result = fastkm.quantize("photo.jpg", 64)            # doctest: +SKIP
    >>> result.save("photo.png"); result.psnr                # doctest: +SKIP

How it works:

1. Histogram: the distinct colors of the image and their pixel counts, in a
   compiled hash table (a 24-bit RGB or 32-bit RGBA key per pixel; a dense table
   of 2**24 counts for large RGB images).
2. Clustering: ``fastkm.KMeans`` on the distinct colors weighted by their counts,
   which is exactly k-means on all the pixels. It is seeded cheaply: k-means++
   on the weighted means of coarse color bins (5 bits per channel), Lloyd on
   finer bins (6 bits), then up to 20 Lloyd iterations on the exact histogram
   (the default preset). ``preset='best'`` runs k-means++ and Lloyd to
   convergence on the histogram itself (what scikit-learn computes on all the
   pixels); ``preset='fast'`` stops after the coarse bins.
3. Palette: the centers rounded to 8 bits (converted back from OKLab or CIELab
   when clustering there).
4. Remap, exact and parallel: the nearest entry of every distinct color, then a
   table lookup per pixel (or, without a histogram, every pixel on its own: the
   previous pixel's answer when it has the same color, or when it is nearer to
   that entry than half the gap to the entry's nearest neighbour (triangle
   inequality), else the few entries that can be nearest anywhere in its color
   cell). Ties between equally near entries go to the smallest color, so the
   result depends neither on the order of the palette nor on the thread count.
5. Entries are sorted by popularity (pixel count), which also makes PNG files
   smaller; unused entries are dropped.

Alpha: fully transparent pixels map to one transparent entry (0, 0, 0, 0);
partly transparent pixels are clustered with the colors in premultiplied form.
An alpha channel that is opaque everywhere is dropped.
"""
import numbers
import os
import secrets
import warnings
from functools import cached_property

import numpy as np

from fastkm.image import _color
from fastkm.image import _kernels as _quantize
from fastkm._validation import check_random_state, effective_n_threads

__all__ = ["quantize", "Palette", "QuantizedImage"]

MAX_COLORS = 65536
PRESETS = ("default", "fast", "best")

# preset -> (coarse levels as (bits per channel, most Lloyd iterations): k-means++ at
# the first level with enough bins, then Lloyd level by level; most Lloyd iterations on
# the exact histogram afterwards). Measured on china.jpg and flower.jpg: the quality of
# the result follows the total work (in iterations over the full histogram), whichever
# level it is spent on; the default spends about 26 (china.jpg, 64 colors: 32.36 dB).
_PRESET_PARAMS = {
    "fast": (((4, 300), (5, 300)), 0),
    "default": (((5, 300), (6, 30)), 20),
    "best": ((), 300),
}
_TOL = 1e-4                        # KMeans' relative tolerance at every level
_REFINE_WORK = 1 << 31             # cap on point-center distances of the refinement on huge
                                   # histograms (iterations x distinct colors x colors)
_DENSE_MIN_PIXELS = 1 << 21        # RGB images this large count colors in a dense table
_MIN_BINS_PER_CLUSTER = 4          # seeding needs enough bins for every cluster
_DITHER_ERROR_LIMIT = 48.0         # largest error (per channel, 0..255 units) diffused on
_METRIC_CHUNK = 1 << 20            # pixels per chunk when metrics are computed per pixel
_DITHER_MAX_COLORS = 4096          # the dithering search keeps a (k, k) table


# --------------------------------------------------------------------------- input

def _gray_to_rgb(gray):
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _pil_to_array(im):
    """(H, W, 3 or 4) uint8 pixels of a PIL image of any common mode."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        arr = np.asarray(im)
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit gray: 0..65535 scaled to 0..255; a 32-bit 'I' image whose values
        # fit in 0..255 (e.g. converted from 'L') is taken as 8-bit
        a = np.asarray(im).astype(np.int64)
        if mode == "I" and a.size and a.min() >= 0 and a.max() <= 255:
            arr = _gray_to_rgb(a.astype(np.uint8))
        else:
            a = np.clip(a, 0, 65535)
            arr = _gray_to_rgb(((a * 255 + 32767) // 65535).astype(np.uint8))
    elif mode == "F":
        arr = _gray_to_rgb(np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255)
                           .astype(np.uint8))
    elif mode in ("LA", "La", "PA", "RGBa"):
        arr = np.asarray(im.convert("RGBA"))
    elif mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None
                                                  and im.palette.mode == "RGBA")
        arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        arr = np.asarray(im.convert("RGB"))
    else:
        raise ValueError(f"unsupported image mode {mode!r}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def open_image(path):
    """Read an image file into (H, W, 3 or 4) uint8 pixels.

    Raises the errors of ``PIL.Image.open`` (``FileNotFoundError``,
    ``PIL.UnidentifiedImageError``, ...), ``OSError`` for a truncated file and
    ``ValueError`` for an unsupported mode.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return _pil_to_array(im)


def _as_pixels(image):
    """(H, W, 3 or 4) uint8 C-contiguous pixels from a PIL image, an array or a path."""
    if isinstance(image, (str, bytes, os.PathLike)):
        arr = open_image(image)
    elif isinstance(image, np.ndarray):
        arr = _array_pixels(image)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow is a dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            arr = _pil_to_array(image)
        elif hasattr(image, "__array_interface__") or hasattr(image, "__array__"):
            arr = _array_pixels(np.asarray(image))
        else:
            raise TypeError(
                "image must be a PIL.Image, a uint8 NumPy array (H, W), (H, W, 3) or "
                f"(H, W, 4), or a path; got {type(image).__name__}"
            )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"the image has no pixels (shape {arr.shape})")
    return arr


def _array_pixels(a):
    if a.dtype != np.uint8:
        raise TypeError(
            f"image arrays must have dtype uint8; got {a.dtype} (scale to 0..255 and use "
            "np.uint8, e.g. np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))"
        )
    if a.ndim == 2:
        return _gray_to_rgb(a)
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        if a.shape[2] == 1:
            return _gray_to_rgb(a[:, :, 0])
        if a.shape[2] == 2:  # gray + alpha
            return np.ascontiguousarray(np.concatenate([np.repeat(a[:, :, :1], 3, axis=2),
                                                        a[:, :, 1:]], axis=2))
        return np.ascontiguousarray(a)
    raise ValueError(
        f"image arrays must have shape (H, W), (H, W, 3) or (H, W, 4); got {a.shape}"
    )


def _drop_opaque_alpha(arr):
    """RGBA pixels whose alpha is 255 everywhere carry no alpha: return RGB."""
    if arr.shape[2] == 4 and int(arr[:, :, 3].min()) == 255:
        return np.ascontiguousarray(arr[:, :, :3])
    return arr


# --------------------------------------------------------------------------- parameters

def _check_n_colors(n_colors):
    if isinstance(n_colors, bool) or not isinstance(n_colors, numbers.Integral):
        raise TypeError(f"n_colors must be an int; got {n_colors!r}")
    if not 1 <= n_colors <= MAX_COLORS:
        raise ValueError(f"n_colors must be in [1, {MAX_COLORS}]; got {n_colors}")
    return int(n_colors)


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value.lower()


def _check_dither(dither):
    if dither is None or dither is False or (isinstance(dither, str) and dither.lower() == "none"):
        return None
    if dither is True:
        return "floyd-steinberg"
    if isinstance(dither, str) and dither.lower() in ("floyd-steinberg", "fs"):
        return "floyd-steinberg"
    raise ValueError(f"dither must be False, True or 'floyd-steinberg'; got {dither!r}")


def _index_dtype(n):
    return np.uint8 if n <= 256 else np.uint16


# --------------------------------------------------------------------------- histogram

class _Histogram:
    """Distinct colors of a set of pixels and their counts; subclasses fill
    ``_distinct`` = (table slots, colors, counts)."""

    @property
    def colors(self):
        """(n_distinct, n_channels) uint8, in table order."""
        return self._distinct[1]

    @property
    def weights(self):
        """(n_distinct,) uint32 pixel count of each distinct color."""
        return self._distinct[2]


class _ColorHistogram(_Histogram):
    """Distinct colors of uint8 pixels and their counts, in a compiled hash table.

    Pixels with alpha 0 (4 channels) are not stored: they are counted in
    ``n_transparent``.
    """

    _MAX_LOAD = 0.5
    dense = False

    def __init__(self, n_channels, size_hint=1 << 16, skip_transparent=True):
        self.n_channels = n_channels
        self.skip_transparent = bool(skip_transparent) and n_channels == 4
        size = 1 << 10
        while size < min(int(size_hint), 1 << 20):
            size <<= 1
        self._alloc(size)
        self.fill = 0
        self.n_pixels = 0
        self.n_transparent = 0

    def _alloc(self, size):
        self.keys = np.zeros(size, dtype=np.uint32)
        self.counts = np.zeros(size, dtype=np.uint32)
        self.max_fill = int(size * self._MAX_LOAD)

    def _grow(self):
        old_keys, old_counts = self.keys, self.counts
        self._alloc(old_keys.size * (4 if old_keys.size < (1 << 22) else 2))
        _quantize.histogram_rehash(old_keys, old_counts, self.keys, self.counts)

    def add(self, pixels):
        """Count the pixels of an (n, n_channels) uint8 C-contiguous array."""
        n = pixels.shape[0]
        if self.n_pixels + n >= 2**32:
            raise ValueError("at most 2**32 - 1 pixels can be counted in one histogram")
        start = 0
        while start < n:
            start, self.fill = _quantize.histogram_insert(
                pixels, start, self.keys, self.counts, self.fill, self.max_fill,
                self.skip_transparent)
            if start < n or self.fill >= self.max_fill:
                self._grow()
        if self.skip_transparent:
            self.n_transparent += int(np.count_nonzero(pixels[:, 3] == 0))
        self.n_pixels += n
        self.__dict__.pop("_distinct", None)

    @cached_property
    def _distinct(self):
        slots = np.flatnonzero(self.counts)
        keys = self.keys[slots].astype("<u4")
        colors = np.ascontiguousarray(keys.view(np.uint8).reshape(-1, 4)[:, :self.n_channels])
        return slots, colors, self.counts[slots]

    def lookup(self, pixels, values, transparent_value, n_threads):
        """Value of every pixel's color: ``values`` has one entry per distinct color."""
        dtype = values.dtype
        slot_values = np.zeros(self.keys.size, dtype=dtype)
        slot_values[self._distinct[0]] = values
        out = np.empty(pixels.shape[0], dtype=dtype)
        _quantize.histogram_lookup(pixels, self.keys, self.counts, slot_values,
                                   transparent_value, out, n_threads)
        return out


class _DenseHistogram(_Histogram):
    """Distinct colors of RGB pixels and their counts in a dense table of 2**24
    counts (64 MB): faster than the hash table for large images."""

    n_channels = 3
    n_transparent = 0
    dense = True

    def __init__(self, n_threads):
        self.counts = np.zeros(1 << 24, dtype=np.uint32)
        self.n_pixels = 0
        self.n_threads = n_threads

    def add(self, pixels):
        n = pixels.shape[0]
        if self.n_pixels + n >= 2**32:
            raise ValueError("at most 2**32 - 1 pixels can be counted in one histogram")
        _quantize.dense_histogram(pixels, self.counts, self.n_threads)
        self.n_pixels += n
        self.__dict__.pop("_distinct", None)

    @cached_property
    def _distinct(self):
        keys = np.flatnonzero(self.counts)
        colors = np.empty((keys.size, 3), dtype=np.uint8)
        for c in range(3):
            colors[:, c] = (keys >> (8 * c)) & 255
        return keys, colors, self.counts[keys]

    def lookup(self, pixels, values, transparent_value, n_threads):
        table = np.zeros(1 << 24, dtype=values.dtype)
        table[self._distinct[0]] = values
        out = np.empty(pixels.shape[0], dtype=values.dtype)
        _quantize.dense_lookup(pixels, table, out, n_threads)
        return out


def _histogram(images_pixels, skip_transparent=True, n_threads=1):
    n_channels = images_pixels[0].shape[2]
    total = sum(a.shape[0] * a.shape[1] for a in images_pixels)
    if n_channels == 3 and total >= _DENSE_MIN_PIXELS:
        hist = _DenseHistogram(n_threads)
    else:
        hist = _ColorHistogram(n_channels, size_hint=total // 2,
                               skip_transparent=skip_transparent)
    for arr in images_pixels:
        hist.add(arr.reshape(-1, n_channels))
    return hist


# --------------------------------------------------------------------------- k-means

def _kmeans(n_clusters, X, w, random_state, n_threads, **params):
    from fastkm._compat import ConvergenceWarning
    from fastkm._kmeans import KMeans

    with warnings.catch_warnings():
        # duplicate colors can leave fewer distinct clusters than asked: harmless here
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters, random_state=random_state, n_threads=n_threads,
                      **params).fit(X, sample_weight=w)


class _BinPyramid:
    """Color bins at several bit depths (the top bits of each channel): weighted
    mean features and total weight of each occupied bin. The base is the finest
    level (its occupied bins, with their weight and weighted feature sums); every
    coarser level sums base bins, so all the means are exact weighted means of
    the pixels' features."""

    def __init__(self, q, bits, weights, sums):
        self.q = q                  # (m, C) int: the base bins' channel values
        self.bits = bits            # bits per channel of the base
        self.weights = weights      # (m,) float64
        self.sums = sums            # (m, d) float64: weight x features
        self._levels = {}

    @staticmethod
    def _bin_ids(q, shift, bits):
        ids = np.zeros(q.shape[0], dtype=np.intp)
        for c in range(q.shape[1]):
            ids |= (q[:, c].astype(np.intp) >> shift) << (c * bits)
        return ids

    @staticmethod
    def _unpack(ids, bits, n_channels):
        return np.stack([(ids >> (c * bits)) & ((1 << bits) - 1) for c in range(n_channels)],
                        axis=1)

    @classmethod
    def from_colors(cls, colors, weights, X, bits):
        """From distinct colors (m, C) with their weights and features X (m, d),
        binned at ``bits`` bits per channel."""
        n_channels = colors.shape[1]
        ids = cls._bin_ids(colors, 8 - bits, bits)
        n_bins = 1 << (bits * n_channels)
        w = np.asarray(weights, dtype=np.float64)
        wsum = np.bincount(ids, weights=w, minlength=n_bins)
        occupied = np.flatnonzero(wsum)
        sums = np.empty((occupied.size, X.shape[1]))
        for f in range(X.shape[1]):
            sums[:, f] = np.bincount(ids, weights=w * X[:, f], minlength=n_bins)[occupied]
        return cls(cls._unpack(occupied, bits, n_channels), bits, wsum[occupied], sums)

    @classmethod
    def from_pixels(cls, pixels, bits, n_threads, weights=None):
        """From RGB(A) pixels (n, C), or distinct colors and their ``weights``,
        binned at ``bits`` in one compiled pass (RGB features). Also returns the
        number of fully transparent pixels (not binned; only without weights)."""
        n_channels = pixels.shape[1]
        n_bins = 1 << (bits * n_channels)
        thread_sums = np.zeros((n_threads, n_bins, n_channels + 1), dtype=np.int64)
        _quantize.bin_histogram(pixels, np.empty(0, np.uint32) if weights is None else weights,
                                8 - bits, weights is None, thread_sums, n_threads)
        total = thread_sums.sum(axis=0) if n_threads > 1 else thread_sums[0]
        occupied = np.flatnonzero(total[:, 0])
        sums = total[occupied, 1:].astype(np.float64)
        if n_channels == 4:
            sums /= 255.0  # the kernel's features are 255 x premultiplied
        n_transparent = 0
        if n_channels == 4 and weights is None:
            n_transparent = pixels.shape[0] - int(total[:, 0].sum())
        pyramid = cls(cls._unpack(occupied, bits, n_channels), bits,
                      total[occupied, 0].astype(np.float64), sums)
        return pyramid, n_transparent

    @property
    def n_bins(self):
        return self.q.shape[0]

    def level(self, bits):
        """Weighted mean features (float32, m x d) and weights (float32) of the
        occupied bins at ``bits`` (<= the base's) bits per channel."""
        if bits not in self._levels:
            if bits == self.bits:
                w, s = self.weights, self.sums
            else:
                ids = self._bin_ids(self.q, self.bits - bits, bits)
                n_bins = 1 << (bits * self.q.shape[1])
                if n_bins <= (1 << 22):  # dense counts: no sort
                    w = np.bincount(ids, weights=self.weights, minlength=n_bins)
                    occupied = np.flatnonzero(w)
                    w = w[occupied]
                    inverse = np.zeros(n_bins, dtype=np.intp)
                    inverse[occupied] = np.arange(occupied.size)
                    inverse = inverse[ids]
                else:
                    occupied, inverse = np.unique(ids, return_inverse=True)
                    w = np.bincount(inverse, weights=self.weights)
                s = np.stack([np.bincount(inverse, weights=self.sums[:, f],
                                          minlength=occupied.size)
                              for f in range(self.sums.shape[1])], axis=1)
            self._levels[bits] = ((s / w[:, None]).astype(np.float32), w.astype(np.float32))
        return self._levels[bits]


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
            km = _kmeans(n_clusters, pts, w, random_state, n_threads, tol=_TOL,
                         max_iter=max_iter)
        else:
            # tol=0: the iteration cap binds first anyway, and KMeans then skips the
            # variance of X its relative tolerance needs
            km = _kmeans(n_clusters, pts, w, random_state, n_threads, init=centers, n_init=1,
                         tol=0.0, max_iter=max_iter)
        centers = km.cluster_centers_
    if full is None:
        return centers
    X, w = full
    if centers is None:
        return _kmeans(n_clusters, X, w, random_state, n_threads, tol=_TOL,
                       max_iter=max(refine_iter, 300)).cluster_centers_
    if refine_iter > 0:
        refine_iter = min(refine_iter, max(1, _REFINE_WORK // (X.shape[0] * n_clusters)))
        centers = _kmeans(n_clusters, X, w, random_state, n_threads, init=centers, n_init=1,
                          max_iter=refine_iter, tol=0.0).cluster_centers_
    return centers


# --------------------------------------------------------------------------- palette

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


class Palette:
    """A palette of up to 65536 colors, to quantize any number of images with.

    ``Palette.fit(images, n_colors)`` finds one palette for many images (the
    frames of an animation, a sprite sheet, a batch); ``palette.quantize(image)``
    maps an image onto it. ``Palette(colors)`` wraps a palette you already have.

    Parameters
    ----------
    colors : array-like of shape (n, 3) or (n, 4), uint8
        RGB or RGBA entries. With 4 columns, the first entry with alpha 0 is the
        one fully transparent pixels map to.
    color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
        Space in which "nearest entry" is measured when remapping.

    Attributes
    ----------
    colors : ndarray of shape (n, 3) or (n, 4), uint8 (read-only)
    counts : ndarray of shape (n,) or None
        Pixels of the fitted images nearest to each entry (None when the palette
        was given). Fitted palettes are sorted by decreasing count.
    transparent_index : int or None
        The entry of fully transparent pixels.
    color_space : str
    """

    def __init__(self, colors, *, color_space="rgb"):
        colors = np.array(colors, copy=True)
        if colors.ndim == 2 and colors.shape[0] == 0:
            raise ValueError("a palette needs at least one color")
        if colors.dtype != np.uint8:
            if colors.dtype.kind not in "iu" or colors.size and (colors.min() < 0
                                                                 or colors.max() > 255):
                raise ValueError("palette colors must be integers in 0..255")
            colors = colors.astype(np.uint8)
        if (colors.ndim != 2 or colors.shape[1] not in (3, 4)
                or not 1 <= colors.shape[0] <= MAX_COLORS):
            raise ValueError(
                f"palette colors must have shape (n, 3) or (n, 4) with 1 <= n <= {MAX_COLORS}; "
                f"got {colors.shape}"
            )
        colors.setflags(write=False)
        self.colors = colors
        self.color_space = _check_choice(color_space, "color_space", _color.COLOR_SPACES)
        self.counts = None
        self.transparent_index = None
        if colors.shape[1] == 4:
            clear = np.flatnonzero(colors[:, 3] == 0)
            if clear.size:
                self.transparent_index = int(clear[0])

    # ---- construction
    @classmethod
    def fit(cls, images, n_colors=64, *, color_space="rgb", preset="default", random_state=0,
            n_threads=None):
        """One palette for all of ``images`` (k-means on their pooled pixels).

        Parameters
        ----------
        images : image or sequence of images
            PIL images, uint8 arrays or paths (see :func:`quantize`).
        n_colors : int, default=64
            Largest palette size (1..65536); fewer when the images have fewer
            distinct colors (the palette is then exact).
        color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
        preset : {'default', 'fast', 'best'}, default='default'
        random_state : int, RandomState instance or None, default=0
        n_threads : int, default=None

        Returns
        -------
        Palette
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("images is empty: at least one image is needed")
        pixels = [_drop_opaque_alpha(_as_pixels(im)) for im in images]
        pal, hist = cls._fit_pixels(pixels, n_colors, color_space, preset, random_state,
                                    n_threads)
        # popularity over the pooled pixels
        n_threads = effective_n_threads(n_threads)
        if hist is None:  # one image, binned directly
            _, counts = pal._remap(pixels[0], None, n_threads)
        else:  # each distinct color's nearest entry
            _, counts = pal._nearest_colors(hist.fit_colors, hist.fit_weights, n_threads)
            if pal.transparent_index is not None:
                counts[pal.transparent_index] += hist.n_transparent
        return pal._sorted_by(counts)[0]

    @classmethod
    def _fit_pixels(cls, pixels, n_colors, color_space, preset, random_state, n_threads):
        """Fit on (H, W, C) arrays (alpha already dropped where opaque).

        Returns the palette (unsorted, possibly with unused entries) and the
        histogram of the pixels, or None when the preset clustered color bins
        straight from the pixels ('fast' in RGB).
        """
        n_colors = _check_n_colors(n_colors)
        space = _check_choice(color_space, "color_space", _color.COLOR_SPACES)
        preset = _check_choice(preset, "preset", PRESETS)
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
                return cls._with_transparency(entries, n_transparent, n_colors, space), None

        hist = _histogram(pixels, n_threads=n_threads)
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
        hist.fit_colors, hist.fit_weights = colors, weights
        return cls._with_transparency(entries, hist.n_transparent, n_colors, space), hist

    @classmethod
    def _with_transparency(cls, entries, n_transparent, n_colors, space):
        """The palette of ``entries``, plus the transparent entry if there are fully
        transparent pixels and room for it."""
        if n_transparent > 0 and n_colors >= 2:
            entries = np.concatenate([entries, np.zeros((1, 4), np.uint8)])
            pal = cls(entries, color_space=space)
            pal.transparent_index = entries.shape[0] - 1
            return pal
        return cls(entries, color_space=space)

    def _sorted_by(self, counts):
        """This palette with entries by decreasing count (ties: index), unused ones
        dropped; and the old -> new index table."""
        order = np.lexsort((np.arange(counts.size), -counts))
        order = order[counts[order] > 0]
        pal = Palette(self.colors[order], color_space=self.color_space)
        pal.counts = counts[order].astype(np.int64)
        pal.transparent_index = None
        if self.transparent_index is not None:
            where = np.flatnonzero(order == self.transparent_index)
            pal.transparent_index = int(where[0]) if where.size else None
        lut = np.zeros(counts.size, dtype=_index_dtype(counts.size))
        lut[order] = np.arange(order.size)
        return pal, lut

    # ---- properties
    def __len__(self):
        return self.colors.shape[0]

    def __repr__(self):
        kind = "RGBA" if self.colors.shape[1] == 4 else "RGB"
        return f"Palette({len(self)} {kind} colors, color_space={self.color_space!r})"

    @property
    def n_channels(self):
        return self.colors.shape[1]

    # The kernels search the entries in "canonical" order, sorted by color (stable):
    # ties between equally near entries go to the smallest color, so the nearest
    # entry of a color does not depend on the order of the palette (sorting it by
    # popularity changes no pixel). Kernel outputs are mapped back to positions.
    @cached_property
    def _canon(self):
        """Positions of the entries sorted by color (RGBA packed little-endian)."""
        c = self.colors.astype(np.int64)
        key = sum(c[:, i] << (8 * i) for i in range(c.shape[1]))
        return np.argsort(key, kind="stable")

    @cached_property
    def _canon_rank(self):
        rank = np.empty(len(self), dtype=np.intp)
        rank[self._canon] = np.arange(len(self))
        return rank

    def _out_map(self, dtype):
        return self._canon.astype(dtype)

    @cached_property
    def _canon_colors(self):
        return np.ascontiguousarray(self.colors[self._canon])

    @cached_property
    def _features(self):
        """Features of the entries in the color space (float64, n x d), canonical order."""
        return np.ascontiguousarray(_color.color_features(self._canon_colors, self.color_space))

    @cached_property
    def _int_features(self):
        """Integer features (n, 4) and each entry's squared distance to its nearest
        other entry (0 when alone), canonical order."""
        feats = _int_features(self._canon_colors)
        n = len(self)
        gap2 = np.zeros(n, dtype=np.int64)
        if n > 1:
            for start in range(0, n, 512):
                block = feats[start:start + 512]
                d2 = ((block[:, None, :] - feats[None, :, :]) ** 2).sum(axis=2)
                d2[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = \
                    np.iinfo(np.int64).max
                gap2[start:start + block.shape[0]] = d2.min(axis=1)
        return feats, gap2

    @cached_property
    def _dither_features(self):
        """Premultiplied 0..255 features (n, 4) and, for each entry, every entry by
        increasing distance (for the search in the dithering kernel)."""
        feats = _pad4(_color.color_features(self._canon_colors, "rgb"))
        d2 = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(d2, axis=1, kind="stable").astype(np.int32)
        # each entry first in its own list, even when duplicated
        for a in range(len(self)):
            pos = int(np.flatnonzero(order[a] == a)[0])
            order[a, 1:pos + 1] = order[a, :pos].copy()
            order[a, 0] = a
        return feats, np.ascontiguousarray(order), np.ascontiguousarray(
            np.take_along_axis(d2, order, axis=1))

    # ---- cells
    def _cells(self, colors, n_threads):
        """Candidate lists of the cells that ``colors`` (n, C) occupy, for the
        features of this palette's color space (or the integer RGB features)."""
        c = colors.shape[1]
        shift = 3 if c == 3 else 4
        bits = 8 - shift
        flags = np.zeros((n_threads, 1 << (c * bits)), dtype=np.uint8)
        _quantize.mark_cells(colors, shift, flags, n_threads)
        occupied = np.flatnonzero(flags.any(axis=0) if n_threads > 1 else flags[0])
        cell_row = np.full(flags.shape[1], -1, dtype=np.int32)
        cell_row[occupied] = np.arange(occupied.size, dtype=np.int32)
        lo = np.empty((occupied.size, c), dtype=np.int64)
        for ch in range(c):
            lo[:, ch] = ((occupied >> (ch * bits)) & ((1 << bits) - 1)) << shift
        hi = lo + ((1 << shift) - 1)
        if self.color_space == "rgb":
            box_lo, box_hi = _int_features(lo), _int_features(hi)
            pal = self._int_features[0]
        else:
            box_lo, box_hi = _color.feature_box(lo, hi, self.color_space)
            pal = self._features
        box_lo = _pad4(box_lo).astype(np.float32)
        box_hi = _pad4(box_hi).astype(np.float32)
        palette_t = np.ascontiguousarray(_pad4(pal).T, dtype=np.float32)
        counts = np.empty(occupied.size, dtype=np.int64)
        dummy = np.zeros(1, dtype=np.int64)
        _quantize.cell_candidates(box_lo, box_hi, palette_t, dummy, counts,
                                  np.empty(0, np.uint16), False, n_threads)
        offsets = np.zeros(occupied.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        candidates = np.empty(int(offsets[-1]), dtype=np.uint16)
        _quantize.cell_candidates(box_lo, box_hi, palette_t, offsets, counts, candidates,
                                  True, n_threads)
        return shift, cell_row, offsets, candidates

    # ---- remapping
    def _check_pixels(self, arr):
        """Pixels with the palette's number of channels."""
        if arr.shape[2] == self.n_channels:
            return arr
        if self.n_channels == 4:
            return _add_alpha(arr)
        arr3 = _drop_opaque_alpha(arr)
        if arr3.shape[2] == 4:
            raise ValueError(
                "the image has transparent pixels but the palette has no alpha channel")
        return arr3

    def _nearest_colors(self, colors, weights, n_threads):
        """Nearest entry of each distinct color (uint16 labels) and the total weight
        mapped to each entry (int64)."""
        colors = np.ascontiguousarray(colors)
        counts = np.zeros((n_threads, len(self)), dtype=np.int64)
        labels = np.empty(colors.shape[0], dtype=np.uint16)
        if colors.shape[0] == 0:
            return labels, counts.sum(axis=0)
        colors = self._check_pixels(colors[None])[0]
        shift, cell_row, offsets, candidates = self._cells(colors, n_threads)
        if self.color_space == "rgb":
            feats, gap2 = self._int_features
            _quantize.remap_cells(colors, weights, feats, gap2, shift, cell_row, offsets,
                                  candidates, -1, self._out_map(np.uint16), labels, counts,
                                  n_threads)
        else:
            X = np.ascontiguousarray(_color.color_features(colors, self.color_space))
            _quantize.nearest_cells_float(colors, X, weights, self._features, shift, cell_row,
                                          offsets, candidates, labels, counts, n_threads)
            labels = self._out_map(np.uint16)[labels]
        return labels, counts.sum(axis=0)[self._canon_rank]

    def _remap(self, arr, dither, n_threads, hist=None):
        """Indices (H, W) and per-entry pixel counts of (H, W, C) pixels."""
        arr = self._check_pixels(arr)
        h, w, c = arr.shape
        dtype = _index_dtype(len(self))
        tindex = -1 if self.transparent_index is None else self.transparent_index
        tcanon = -1 if tindex < 0 else int(self._canon_rank[tindex])
        if dither is not None:
            if len(self) > _DITHER_MAX_COLORS:
                raise ValueError(f"dithering supports palettes of at most {_DITHER_MAX_COLORS} "
                                 f"colors; this one has {len(self)}")
            feats, order, order_d2 = self._dither_features
            out = np.empty((h, w), dtype=dtype)
            counts = np.zeros(len(self), dtype=np.int64)
            _quantize.dither_floyd_steinberg(
                arr, feats, order, order_d2, tcanon, self._out_map(dtype), _DITHER_ERROR_LIMIT,
                1.0, np.empty((w + 2, 4)), np.empty((w + 2, 4)), out, counts)
            return out, counts[self._canon_rank]
        flat = arr.reshape(-1, c)
        if hist is not None and (hist.n_channels != c or (hist.n_transparent and tindex < 0)):
            hist = None  # not the histogram of these pixels as this palette maps them
        if self.color_space == "rgb" and hist is None and flat.shape[0] < _DENSE_MIN_PIXELS:
            # every pixel on its own (the previous pixel's answer, then its cell)
            shift, cell_row, offsets, candidates = self._cells(flat, n_threads)
            feats, gap2 = self._int_features
            out = np.empty(flat.shape[0], dtype=dtype)
            counts = np.zeros((n_threads, len(self)), dtype=np.int64)
            _quantize.remap_cells(flat, np.empty(0, np.uint32), feats, gap2, shift, cell_row,
                                  offsets, candidates, tcanon, self._out_map(dtype), out, counts,
                                  n_threads)
            return out.reshape(h, w), counts.sum(axis=0)[self._canon_rank]
        # the nearest entry of each distinct color, then a table lookup per pixel
        if hist is None:
            hist = _histogram([arr], skip_transparent=tindex >= 0, n_threads=n_threads)
        labels, counts = self._nearest_colors(hist.colors, hist.weights, n_threads)
        if tindex >= 0:
            counts[tindex] += hist.n_transparent
        out = hist.lookup(flat, labels.astype(dtype), tindex, n_threads)
        return out.reshape(h, w), counts

    def quantize(self, image, *, dither=False, n_threads=None):
        """Map an image onto this palette (entries keep their order).

        Parameters
        ----------
        image : PIL.Image, uint8 array or path
        dither : bool or 'floyd-steinberg', default=False
        n_threads : int, default=None

        Returns
        -------
        QuantizedImage
        """
        arr = _as_pixels(image)
        dither = _check_dither(dither)
        n_threads = effective_n_threads(n_threads)
        arr = self._check_pixels(arr)
        indices, counts = self._remap(arr, dither, n_threads)
        return QuantizedImage(self, indices, counts, arr, dither)


def _add_alpha(arr):
    out = np.empty(arr.shape[:-1] + (4,), dtype=np.uint8)
    out[..., :3] = arr[..., :3]
    out[..., 3] = 255
    return out


# --------------------------------------------------------------------------- result

class QuantizedImage:
    """The result of :func:`quantize` or :meth:`Palette.quantize`.

    Attributes
    ----------
    palette : ndarray of shape (n, 3) or (n, 4), uint8
        The entries, most used first (for :func:`quantize`).
    indices : ndarray of shape (H, W), uint8 (n <= 256) or uint16
        Palette index of every pixel.
    counts : ndarray of shape (n,), int64
        Pixels mapped to each entry.
    transparent_index : int or None
        The entry of fully transparent pixels, if any.
    color_space : str
    dither : str or None
    """

    def __init__(self, palette, indices, counts, source, dither, hist=None, n_threads=1):
        self._palette = palette
        self.palette = palette.colors
        self.indices = indices
        self.counts = counts
        self.transparent_index = palette.transparent_index
        self.color_space = palette.color_space
        self.dither = dither
        self._source = source
        self._hist = hist  # the source's histogram: exact metrics without a pass over pixels
        self._n_threads = n_threads

    def __repr__(self):
        h, w = self.indices.shape
        return (f"QuantizedImage({w}x{h}, {self.n_colors} colors, "
                f"color_space={self.color_space!r}, dither={self.dither!r})")

    @property
    def n_colors(self):
        """Number of palette entries."""
        return self.palette.shape[0]

    @property
    def shape(self):
        return self.indices.shape + (self.palette.shape[1],)

    def to_array(self):
        """The quantized pixels: ndarray (H, W, 3 or 4), uint8."""
        return np.take(self.palette, self.indices, axis=0)

    @property
    def image(self):
        """A Pillow ``'P'`` image (at most 256 entries), ready to save as PNG or GIF.

        An RGBA palette is stored as such (PNG writes it as PLTE + tRNS).
        """
        return self._pil_image(rgba_palette=self.palette.shape[1] == 4)

    def _pil_image(self, rgba_palette):
        from PIL import Image

        if self.n_colors > 256:
            raise ValueError(
                f"an indexed image holds at most 256 colors; this one has {self.n_colors}")
        h, w = self.indices.shape
        idx = np.ascontiguousarray(self.indices, dtype=np.uint8)
        im = Image.frombytes("P", (w, h), idx.tobytes())
        if rgba_palette:
            im.putpalette(self.palette.tobytes(), rawmode="RGBA")
        else:
            im.putpalette(np.ascontiguousarray(self.palette[:, :3]).tobytes(), rawmode="RGB")
        return im

    def save(self, path, format=None, **params):
        """Write the indexed image (PNG, GIF, or any format Pillow writes from
        mode 'P'), atomically: a temporary file in the same directory is renamed
        into place, so a failure never leaves a partial file.

        GIF keeps the fully transparent entry as its transparent color; GIF has no
        partial alpha, so other entries are written opaque. Extra keyword
        arguments go to ``PIL.Image.save`` (e.g. ``optimize=True``).
        """
        from PIL import Image

        path = os.fspath(path)
        if format is None:
            ext = os.path.splitext(path)[1].lower()
            format = Image.registered_extensions().get(ext)
            if format is None:
                raise ValueError(f"cannot tell the image format from the file name {path!r}; "
                                 "pass format='PNG' or 'GIF'")
        fmt = format.upper()
        if fmt == "GIF":
            im = self._pil_image(rgba_palette=False)
            if self.transparent_index is not None:
                params.setdefault("transparency", self.transparent_index)
        else:
            im = self.image
        directory, base = os.path.split(os.path.abspath(path))
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as f:
                im.save(f, format=fmt, **params)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # ---- quality
    @cached_property
    def _errors(self):
        """(mse, mean CIEDE2000) against the source pixels, premultiplied."""
        if self._hist is not None and self.dither is None:
            # fully transparent pixels are not among the distinct colors: they map
            # to the transparent entry, without error
            colors, weights = self._hist.fit_colors, self._hist.fit_weights
            labels, _ = self._palette._nearest_colors(colors, weights, self._n_threads)
            w = weights.astype(np.float64)
            sq, de = _color_errors(colors, self.palette[labels])
            n = self._source.shape[0] * self._source.shape[1]
            return float(sq @ w) / (n * colors.shape[1]), float(de @ w) / n
        src = self._source.reshape(-1, self._source.shape[2])
        idx = self.indices.reshape(-1)
        sq_sum = de_sum = 0.0
        for start in range(0, src.shape[0], _METRIC_CHUNK):
            sq, de = _color_errors(src[start:start + _METRIC_CHUNK],
                                   self.palette[idx[start:start + _METRIC_CHUNK]])
            sq_sum += float(sq.sum())
            de_sum += float(de.sum())
        return sq_sum / (src.shape[0] * src.shape[1]), de_sum / src.shape[0]

    @property
    def mse(self):
        """Mean squared error per channel (0..255 units; RGBA premultiplied)."""
        return self._errors[0]

    @property
    def psnr(self):
        """Peak signal-to-noise ratio in dB (infinite when lossless)."""
        mse = self.mse
        return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

    @property
    def delta_e(self):
        """Mean CIEDE2000 color difference per pixel (RGBA composited over black)."""
        return self._errors[1]


def _color_errors(a, b):
    """Squared error summed over channels and CIEDE2000 of uint8 color rows."""
    fa = _color.color_features(a, "rgb")
    fb = _color.color_features(b, "rgb")
    sq = ((fa - fb) ** 2).sum(axis=1)
    de = _color.ciede2000(_color.srgb_to_lab(fa[:, :3]), _color.srgb_to_lab(fb[:, :3]))
    return sq, de


# --------------------------------------------------------------------------- entry point

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
    pal, hist = Palette._fit_pixels([arr], n_colors, color_space, preset, random_state,
                                    n_threads)
    n_threads = effective_n_threads(n_threads)
    arr = pal._check_pixels(arr)
    indices, counts = pal._remap(arr, dither, n_threads, hist=hist)
    # entries by popularity in the output, unused ones dropped
    sorted_pal, lut = pal._sorted_by(counts)
    if lut.size != len(sorted_pal) or np.any(lut != np.arange(lut.size)):
        _quantize.apply_lut(indices.reshape(-1), lut.astype(indices.dtype), n_threads)
        if indices.dtype != _index_dtype(len(sorted_pal)):
            indices = indices.astype(_index_dtype(len(sorted_pal)))
    return QuantizedImage(sorted_pal, indices, sorted_pal.counts, arr, dither, hist, n_threads)
